"""ZFS host model: names, parsing, error classification; startup sweep."""

import ddt
from oslo_concurrency import processutils
import testtools

from cinder_zol import dependents
from cinder_zol import exception
from cinder_zol import zfs
from tests.unit import fake_zfs


class _FailingRunner(object):
    host = 'h'

    def __init__(self, stderr, exit_code=1):
        self.stderr, self.exit_code = stderr, exit_code

    def run(self, argv, input=None):
        raise processutils.ProcessExecutionError(
            stderr=self.stderr, exit_code=self.exit_code, cmd=' '.join(argv))


@ddt.ddt
class NameTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.zfs = zfs.ZfsHost(fake_zfs.FakeZfsHost(), 'tank/cinder')

    def test_path(self):
        self.assertEqual('tank/cinder/volume-1', self.zfs.path('volume-1'))
        self.assertEqual('tank/cinder/volume-1@snapshot-2',
                         self.zfs.path('volume-1', 'snapshot-2'))
        self.assertEqual('/dev/zvol/tank/cinder/volume-1',
                         self.zfs.device('volume-1'))

    @ddt.data('../x', 'a/b', 'a@b', '-rf', '', '.', '..', 'a b', 'a;b',
              '$(id)', 'a\nb', 'x' * 300, 'a..b', None, 'a%b')
    def test_unsafe_names(self, name):
        self.assertRaises(exception.UnsafeName, self.zfs.path, name)
        if name is not None:  # path('v', None) is the zvol itself
            self.assertRaises(exception.UnsafeName, self.zfs.path, 'v', name)

    @ddt.data('', 'tank/', '/tank', 'tank//x', 'tank/-x', 'tank/a b',
              'tank/..', 'tank;x')
    def test_unsafe_parent(self, parent):
        self.assertRaises(exception.UnsafeName, zfs.ZfsHost, None, parent)

    def test_child_name(self):
        self.assertEqual('v', self.zfs.child_name('tank/cinder/v'))
        self.assertEqual('v', self.zfs.child_name('tank/cinder/v@s'))
        for outside in ('tank/other/v', 'tank/cinder', 'tank/cinder/v/x',
                        'tank/cinderx/v'):
            self.assertRaises(exception.UnsafeName, self.zfs.child_name,
                              outside)


@ddt.ddt
class ClassifyTestCase(testtools.TestCase):

    @ddt.data(
        ("cannot open 'tank/cinder/v': dataset does not exist",
         exception.ZfsNotFound),
        ("cannot destroy 'tank/cinder/v': dataset is busy",
         exception.ZfsBusy),
        ("cannot destroy 'tank/cinder/v@s': snapshot has dependent clones",
         exception.ZfsHasDependents),
        ("cannot destroy 'tank/cinder/v': volume has children",
         exception.ZfsHasDependents),
        ("cannot create 'tank/cinder/v': out of space",
         exception.ZfsOutOfSpace),
        ("cannot create 'tank/cinder/v': invalid property 'foo'",
         exception.ZfsInvalid),
        ("cannot create 'tank/cinder/v': dataset already exists",
         exception.ZfsExists),
        ("internal error: something new", exception.ZfsError))
    @ddt.unpack
    def test_classified_with_stderr(self, stderr, cls):
        host = zfs.ZfsHost(_FailingRunner(stderr), 'tank/cinder')
        e = self.assertRaises(exception.ZfsError, host.destroy, 'v')
        self.assertIs(cls, type(e))
        self.assertIn(stderr, str(e))
        self.assertEqual(stderr, e.stderr)

    def test_missing_zfs_binary(self):
        host = zfs.ZfsHost(_FailingRunner('sh: zfs: not found', 127),
                           'tank/cinder')
        e = self.assertRaises(exception.ZfsError, host.check_parent)
        self.assertIn('zfsutils-linux', str(e))

    def test_unexpected_list_output(self):
        fake = fake_zfs.FakeZfsHost()
        host = zfs.ZfsHost(fake, 'tank/cinder')
        fake._zfs_list = lambda args: 'garbage\n'
        self.assertRaises(exception.ZfsError, host.list)


class ParseTestCase(testtools.TestCase):

    def test_exact_bytes_and_dashes(self):
        fake = fake_zfs.FakeZfsHost()
        host = zfs.ZfsHost(fake, 'tank/cinder')
        host.create_volume('v', 3 * 2 ** 30 + 4096, sparse=True, props={})
        ds = host.get('v')
        self.assertEqual(3 * 2 ** 30 + 4096, ds['volsize'])
        self.assertIsNone(ds['origin'])
        self.assertEqual([], ds['snapshots'])
        self.assertTrue(ds.managed)
        self.assertIsNone(host.get('missing'))


class SweepTestCase(testtools.TestCase):
    """Recovery from a cinder-volume crash between two zfs commands."""

    def setUp(self):
        super().setUp()
        self.fake = fake_zfs.FakeZfsHost()
        self.zfs = zfs.ZfsHost(self.fake, 'tank/cinder')
        self.zfs.create_volume('volume-a', 2 ** 30, True, {})

    def test_nothing_to_do(self):
        self.assertEqual(0, dependents.sweep(self.zfs))

    def test_leaked_clone_snapshot(self):
        self.zfs.snapshot('volume-a', 'clone-volume-b')  # crash before clone
        self.assertEqual(1, dependents.sweep(self.zfs))
        self.assertEqual([], self.fake.snapshots('tank/cinder/volume-a'))

    def test_undeferred_clone_snapshot_gets_deferred(self):
        self.zfs.snapshot('volume-a', 'clone-volume-b')
        self.zfs.clone('volume-a', 'clone-volume-b', 'volume-b', {})
        dependents.sweep(self.zfs)
        snap = self.fake.datasets['tank/cinder/volume-a@clone-volume-b']
        self.assertEqual('on', snap['defer_destroy'])
        self.zfs.destroy('volume-b')
        self.assertEqual([], self.fake.snapshots('tank/cinder/volume-a'))

    def test_hidden_volume_without_dependents(self):
        self.zfs.rename('volume-a', 'deleted-volume-a-1')
        dependents.sweep(self.zfs)
        self.assertEqual(['tank', 'tank/cinder'], self.fake.names())

    def test_hidden_volume_with_dependents_kept(self):
        dependents.clone_volume(self.zfs, 'volume-a', 'volume-b', {})
        dependents.delete_volume(self.zfs, 'volume-a')
        before = self.fake.names()
        self.assertEqual(0, dependents.sweep(self.zfs))
        self.assertEqual(before, self.fake.names())

    def test_foreign_datasets_ignored(self):
        self.fake._add('tank/cinder/deleted-not-ours', 'volume', volsize=1)
        self.fake._add('tank/cinder/reverting-not-ours', 'volume', volsize=1)
        self.assertEqual(0, dependents.sweep(self.zfs))
        self.assertIn('tank/cinder/deleted-not-ours', self.fake.names())

    def _start_swap(self):
        self.zfs.snapshot('volume-a', 'snapshot-1')
        self.zfs.clone('volume-a', 'snapshot-1', 'reverting-volume-a', {})

    def test_revert_interrupted_after_clone(self):
        self._start_swap()
        dependents.sweep(self.zfs)
        self.assertNotIn('tank/cinder/reverting-volume-a', self.fake.names())
        self.assertIn('tank/cinder/volume-a@snapshot-1', self.fake.names())

    def test_revert_interrupted_after_hiding_the_volume(self):
        self._start_swap()
        self.zfs.rename('volume-a', 'deleted-volume-a-00000001')
        dependents.sweep(self.zfs)
        self.assertEqual(['tank', 'tank/cinder', 'tank/cinder/volume-a',
                          'tank/cinder/volume-a@snapshot-1'],
                         sorted(self.fake.names()))

    def test_revert_interrupted_before_promote(self):
        self._start_swap()
        self.zfs.rename('volume-a', 'deleted-volume-a-00000001')
        self.zfs.rename('reverting-volume-a', 'volume-a')
        dependents.sweep(self.zfs)
        self.assertIn('tank/cinder/volume-a@snapshot-1', self.fake.names())
        self.assertIsNone(self.fake.datasets['tank/cinder/volume-a']['origin'])
