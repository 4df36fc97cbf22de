"""Dependency bookkeeping on the storage host: sweep, undo paths, and the
host lock that keeps concurrent requests apart."""

import json
import random
import threading
import time

from unittest import mock

import testtools

from cinder_zol.host import agent
from cinder_zol.host import dependents
from cinder_zol.host import errors
from cinder_zol.host import wire
from cinder_zol.host import zfs
from tests.unit import fake_zfs
from tests.unit import host_fixture

PARENT = host_fixture.PARENT
GiB = 2 ** 30


class HostTestBase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.zfs = fake_zfs.FakeZfsHost(PARENT)
        self.host = host_fixture.make_host(self.zfs)
        self.model = self.host.zfs(PARENT)

    def call(self, *argv, **payload):
        return agent.request(self.host, list(argv),
                             json.loads(json.dumps(payload)))

    def create(self, name, size=GiB):
        self.call('create', PARENT, name, str(size), sparse=True)

    def names(self):
        return [n[len(PARENT) + 1:] for n in self.zfs.names()
                if n.startswith(PARENT + '/')]


class SweepTestCase(HostTestBase):

    def test_leaked_clone_snapshot(self):
        self.create('volume-a')
        self.model.snapshot('volume-a', 'clone-volume-b')
        self.assertEqual(1, self.call('sweep', PARENT)['actions'])
        self.assertEqual(['volume-a'], self.names())

    def test_undeferred_clone_snapshot_gets_deferred(self):
        self.create('volume-a')
        self.model.snapshot('volume-a', 'clone-volume-b')
        self.model.clone('volume-a', 'clone-volume-b', 'volume-b', {})
        self.call('sweep', PARENT)
        snap = self.zfs.datasets[PARENT + '/volume-a@clone-volume-b']
        self.assertEqual('on', snap['defer_destroy'])

    def test_hidden_volume_without_dependents_collected(self):
        self.create('volume-a')
        self.model.rename('volume-a', 'deleted-volume-a-0001')
        self.call('sweep', PARENT)
        self.assertEqual([], self.names())

    def test_revert_interrupted_after_hiding_the_volume(self):
        self.create('volume-a')
        self.model.snapshot('volume-a', 'snapshot-s')
        self.model.clone('volume-a', 'snapshot-s', 'reverting-volume-a', {})
        self.model.rename('volume-a', 'deleted-volume-a-0001')
        self.call('sweep', PARENT)
        self.assertIn('volume-a', self.names())
        self.assertNotIn('reverting-volume-a', self.names())

    def test_revert_interrupted_before_promote(self):
        self.create('volume-a')
        self.model.snapshot('volume-a', 'snapshot-s')
        self.create('volume-c')
        self.model.snapshot('volume-a', 'clone-volume-c')
        self.model.clone('volume-a', 'clone-volume-c', 'volume-b', {})
        self.model.clone('volume-a', 'snapshot-s', 'reverting-volume-a', {})
        self.model.rename('volume-a', 'deleted-volume-a-0001')
        self.model.rename('reverting-volume-a', 'volume-a')
        self.call('sweep', PARENT)
        self.assertIsNone(self.model.get('volume-a').origin)

    def test_import_leftovers_destroyed(self):
        self.create('importing-image-x-01')
        self.create('volume-a')
        self.call('sweep', PARENT)
        self.assertEqual(['volume-a'], self.names())

    def test_foreign_datasets_untouched(self):
        self.zfs._add(PARENT + '/deleted-not-ours', 'volume', volsize=GiB)
        self.zfs._add(PARENT + '/reverting-x', 'volume', volsize=GiB)
        self.assertEqual(0, self.call('sweep', PARENT)['actions'])
        self.assertEqual(2, len(self.names()))


class UndoTestCase(HostTestBase):

    def _revert_failing_at_undo_step(self, step):
        """Promote fails; undo step ``step`` (1 = first) fails too."""
        self.create('volume-a')
        self.call('snapshot', PARENT, 'snapshot-s', 'volume-a')
        self.call('clone', PARENT, 'volume-a', 'volume-b', str(GiB))
        renames = []

        def fail(argv):
            if argv[1] == 'promote':
                self.zfs.fail['promote'] = 'cannot promote: out of space'
            if argv[1] == 'rename':
                renames.append(argv)
                if len(renames) == 2 + step:
                    self.zfs.fail['rename'] = 'cannot rename: pool I/O'
        self.zfs.before = fail
        with mock.patch.object(dependents.log, 'note') as note:
            e = self.assertRaises(errors.OutOfSpace, self.call, 'revert',
                                  PARENT, 'volume-a', 'snapshot-s', str(GiB))
        self.zfs.before = None
        self.assertIn('out of space', e.stderr)   # the real error
        self.assertTrue(any('Undoing revert' in c[0][0]
                            for c in note.call_args_list))
        return renames

    def test_revert_undo_fails_at_first_step_sweep_completes(self):
        renames = self._revert_failing_at_undo_step(1)
        self.assertEqual(3, len(renames))     # stopped there
        self.call('sweep', PARENT)
        ds = self.model.get('volume-a')
        self.assertIsNone(ds.origin)          # promoted: revert finished
        self.assertEqual(['snapshot-s'], [s.snapshot_name
                                          for s in ds.snapshots])

    def test_revert_undo_fails_at_second_step_sweep_restores(self):
        renames = self._revert_failing_at_undo_step(2)
        self.assertEqual(4, len(renames))
        self.assertIn('reverting-volume-a', self.names())   # sweep's marker
        self.assertNotIn('volume-a', self.names())
        self.call('sweep', PARENT)
        self.assertIn('volume-a', self.names())
        self.assertNotIn('reverting-volume-a', self.names())
        self.assertIn('volume-b', self.names())

    def test_clone_cleanup_failure_keeps_the_real_error(self):
        self.create('volume-a')
        self.zfs.fail['clone'] = "cannot create 'x': out of space"

        def fail_cleanup(argv):
            if argv[1:3] == ['destroy', '-d']:
                self.zfs.fail['destroy'] = 'cannot destroy: pool I/O'
        self.zfs.before = fail_cleanup
        e = self.assertRaises(errors.OutOfSpace, self.call, 'clone', PARENT,
                              'volume-a', 'volume-b', str(GiB))
        self.assertIn('out of space', e.stderr)

    def test_delete_survives_a_failing_collect(self):
        self.create('volume-a')
        self.call('clone', PARENT, 'volume-a', 'volume-b', str(GiB))
        self.call('delete', PARENT, 'volume-a')
        calls = []

        def fail_collect(argv):
            calls.append(argv)
            if argv[1] == 'list' and len(calls) > 2:
                self.zfs.fail['list'] = 'cannot open: pool I/O'
        self.zfs.before = fail_collect
        result = self.call('delete', PARENT, 'volume-b')
        self.assertEqual('destroyed', result['result'])
        self.zfs.before = None
        self.call('sweep', PARENT)
        self.assertEqual([], self.names())

    def test_delete_of_a_missing_volume(self):
        self.assertEqual('gone', self.call('delete', PARENT,
                                           'volume-x')['result'])


class ConcurrencyTestCase(HostTestBase):
    """Requests from several threads on one storage host.

    The threads stand for several cinder-volume workers or processes; the
    host lock serialises what depends on each other. Random pauses between
    zfs commands shuffle the interleavings; every schedule must end clean.
    """

    SCHEDULES = 25

    def shuffle(self, seed):
        rnd = random.Random(seed)
        lock = threading.Lock()

        def pause(argv):
            with lock:
                delay = rnd.random() * 0.004
            time.sleep(delay)
        self.zfs.before = pause

    def run_threads(self, requests):
        failures = []

        def run(argv):
            try:
                self.call(*argv)
            except errors.HostError as e:
                failures.append((argv, e))
        threads = [threading.Thread(target=run, args=(argv,))
                   for argv in requests]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return failures

    def test_golden_volume_and_clones_deleted_at_once(self):
        for seed in range(self.SCHEDULES):
            self.setUp_clean()
            self.create('volume-g')
            clones = ['volume-c%d' % i for i in range(3)]
            for c in clones:
                self.call('clone', PARENT, 'volume-g', c, str(GiB))
            self.call('snapshot', PARENT, 'snapshot-s', 'volume-g')
            self.call('clone-snapshot', PARENT, 'volume-g', 'snapshot-s',
                      'volume-v', str(GiB))
            self.shuffle(seed)
            failures = self.run_threads(
                [('delete-snapshot', PARENT, 'volume-g', 'snapshot-s')] +
                [('delete', PARENT, n) for n in ['volume-g', 'volume-v'] +
                 clones])
            self.assertEqual([], failures, 'schedule %d' % seed)
            self.assertEqual([], self.names(), 'schedule %d' % seed)

    def test_revert_against_clone_and_clone_delete(self):
        for seed in range(self.SCHEDULES):
            self.setUp_clean()
            self.create('volume-a')
            self.call('snapshot', PARENT, 'snapshot-s', 'volume-a')
            self.call('clone', PARENT, 'volume-a', 'volume-b', str(GiB))
            self.shuffle(seed)
            failures = self.run_threads([
                ('revert', PARENT, 'volume-a', 'snapshot-s', str(GiB)),
                ('clone', PARENT, 'volume-a', 'volume-c', str(GiB)),
                ('delete', PARENT, 'volume-b')])
            self.assertEqual([], failures, 'schedule %d' % seed)
            self.zfs.before = None
            for name in ('volume-c', 'volume-a'):
                self.call('delete-snapshot', PARENT, name, 'snapshot-s')
            for name in ('volume-a', 'volume-c'):
                self.call('delete', PARENT, name)
            self.assertEqual([], self.names(), 'schedule %d' % seed)

    def test_sweep_of_a_starting_service_waits_for_work_in_flight(self):
        for seed in range(self.SCHEDULES):
            self.setUp_clean()
            self.create('volume-a')
            self.call('snapshot', PARENT, 'snapshot-s', 'volume-a')
            self.call('clone', PARENT, 'volume-a', 'volume-b', str(GiB))
            self.shuffle(seed)
            failures = self.run_threads([
                ('clone', PARENT, 'volume-a', 'volume-c', str(GiB)),
                ('revert', PARENT, 'volume-a', 'snapshot-s', str(GiB)),
                ('sweep', PARENT)])
            self.assertEqual([], failures, 'schedule %d' % seed)
            names = self.names()
            self.assertIn('volume-c', names)
            self.assertFalse([n for n in names if 'reverting-' in n])

    def test_without_the_lock_the_golden_case_leaks(self):
        """The scenario above is a real race.

        Without the host lock some schedules leak the hidden golden zvol
        or fail a delete.
        """
        bad = 0
        with mock.patch.dict(wire.OPERATIONS):
            for name in ('delete', 'delete-snapshot'):
                wire.OPERATIONS[name] = wire.OPERATIONS[name]._replace(
                    lock=None)
            for seed in range(self.SCHEDULES):
                self.setUp_clean()
                self.create('volume-g')
                for i in range(3):
                    self.call('clone', PARENT, 'volume-g', 'volume-c%d' % i,
                              str(GiB))
                self.shuffle(seed)
                failures = self.run_threads(
                    [('delete', PARENT, 'volume-g')] +
                    [('delete', PARENT, 'volume-c%d' % i) for i in range(3)])
                if failures or self.names():
                    bad += 1
        self.assertGreater(bad, 0)

    def setUp_clean(self):
        self.zfs.before = None
        for name in list(self.zfs.datasets):
            if name.startswith(PARENT + '/'):
                del self.zfs.datasets[name]


class SweepItemsTestCase(HostTestBase):
    """One leftover the sweep cannot finish leaves the others to it."""

    def leftovers(self):
        """A hidden zvol ahead of two leftovers in the sweep's order."""
        self.create('volume-a')
        self.model.rename('volume-a', 'deleted-volume-a-0001')
        self.create('volume-b')
        self.model.snapshot('volume-b', 'clone-volume-x')
        self.create('volume-c')
        self.model.rename('volume-c', 'deleted-volume-c-0001')

    def test_busy_hidden_zvol(self):
        self.leftovers()
        self.zfs.busy.add(PARENT + '/deleted-volume-a-0001')
        with mock.patch.object(zfs.ZfsHost.destroy, '__defaults__', (0,)), \
                mock.patch.object(dependents.log, 'note') as note:
            result = self.call('sweep', PARENT)
        self.assertEqual(['deleted-volume-a-0001', 'volume-b'], self.names())
        self.assertEqual(2, result['actions'])
        self.assertEqual(['deleted-volume-a-0001'], list(result['left']))
        self.assertIn('is busy', result['left']['deleted-volume-a-0001'])
        notes = ' '.join(c[0][0] for c in note.call_args_list)
        self.assertIn(PARENT + '/deleted-volume-a-0001', notes)
        self.assertIn('is busy', notes)

    def test_failing_promote(self):
        self.create('volume-a')
        self.model.snapshot('volume-a', 'snapshot-s')
        self.model.clone('volume-a', 'snapshot-s', 'reverting-volume-a', {})
        self.model.rename('volume-a', 'deleted-volume-a-0001')
        self.model.rename('reverting-volume-a', 'volume-a')
        self.create('volume-b')
        self.model.snapshot('volume-b', 'clone-volume-x')
        self.zfs.fail['promote'] = "cannot promote 'x': out of space"
        result = self.call('sweep', PARENT)
        self.assertEqual(['volume-a'], list(result['left']))
        self.assertIsNone(self.zfs.datasets.get(
            PARENT + '/volume-b@clone-volume-x'))
        self.call('sweep', PARENT)            # the next sweep finishes it
        self.assertIsNone(self.model.get('volume-a').origin)


class RevertCrashTestCase(HostTestBase):
    """The storage host crashes in the middle of a swap-revert.

    cinder-volume keeps running; Cinder then deletes what it knows, and
    nothing is left after the next sweep.
    """

    def revert_cut_at(self, renames):
        """Revert volume-a (which has a clone), stopped after ``renames``."""
        self.create('volume-a')
        self.call('snapshot', PARENT, 'snapshot-s', 'volume-a')
        self.call('clone', PARENT, 'volume-a', 'volume-b', str(GiB))
        done = []

        class PowerLoss(Exception):
            pass

        def crash(argv):
            if argv[1] in ('rename', 'promote'):
                if len(done) == renames:
                    raise PowerLoss()
                done.append(argv)
        self.zfs.before = crash
        self.assertRaises(PowerLoss, self.call, 'revert', PARENT,
                          'volume-a', 'snapshot-s', str(GiB))
        self.zfs.before = None

    def delete_everything(self):
        self.call('delete-snapshot', PARENT, 'volume-a', 'snapshot-s')
        self.call('delete', PARENT, 'volume-a')
        self.call('delete', PARENT, 'volume-b')
        self.call('sweep', PARENT)
        self.assertEqual([], self.names())

    def test_before_the_renames(self):
        self.revert_cut_at(0)
        self.assertIn('reverting-volume-a', self.names())
        self.delete_everything()

    def test_between_the_renames(self):
        self.revert_cut_at(1)
        self.assertNotIn('volume-a', self.names())
        self.delete_everything()

    def test_before_the_promote(self):
        self.revert_cut_at(2)
        self.delete_everything()

    def test_between_the_renames_then_revert_again(self):
        self.revert_cut_at(1)
        self.call('revert', PARENT, 'volume-a', 'snapshot-s', str(GiB))
        self.assertFalse([n for n in self.names() if 'reverting' in n])
        self.delete_everything()
