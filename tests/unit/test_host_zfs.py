"""The ZFS host model: zfs's own messages (per OpenZFS release), parsed
output and names."""

import ddt
import testtools

from cinder_zol.host import errors
from cinder_zol.host import execute
from cinder_zol.host import grammar
from cinder_zol.host import props as zprops
from cinder_zol.host import zfs
from tests.unit import fake_zfs

PARENT = 'tank/cinder'

# Real stderr of each tested release, run on the lab guests (Debian 12 with
# 2.1.11, Debian 13 with 2.3.9, trixie-backports 2.4.4); None where the
# release says the same as 2.1.11.
MESSAGES = [
    # (case, 2.1.11, 2.3.9, 2.4.4, kind)
    ('missing', "cannot open 'tank/cinder/nope': dataset does not exist",
     None, None, errors.NotFound),
    ('destroy -d missing',
     'could not find any snapshots to destroy; check snapshot names.',
     None, None, errors.NotFound),
    ('exists', "cannot create 'tank/cinder/v1': dataset already exists",
     None, None, errors.Exists),
    ('rename onto existing',
     "cannot rename 'tank/cinder/c1': dataset already exists",
     None, None, errors.Exists),
    ('snapshot with clones',
     "cannot destroy 'tank/cinder/v1@s1': snapshot has dependent clones\n"
     "use '-R' to destroy the following datasets:\ntank/cinder/c1",
     None, None, errors.HasDependents),
    ('volume with snapshots',
     "cannot destroy 'tank/cinder/v1': volume has children\nuse '-r' to "
     "destroy the following datasets:\ntank/cinder/v1@s1",
     None, None, errors.HasDependents),
    ('rollback past newer',
     "cannot rollback to 'tank/cinder/v2@a': more recent snapshots or "
     "bookmarks exist\nuse '-r' to force deletion of the following "
     "snapshots and bookmarks:\ntank/cinder/v2@b", None, None,
     errors.HasDependents),
    ('thick create too big', "cannot create 'tank/cinder/big': out of space",
     None, None, errors.OutOfSpace),
    ('thick grow too big', "cannot set property for 'tank/cinder/v1': size "
     "is greater than available space", None, None, errors.OutOfSpace),
    ('open zvol', "cannot destroy 'tank/cinder/v2': dataset is busy",
     None, None, errors.Busy),
    ('held snapshot', 'cannot destroy snapshot tank/cinder/v2@c: dataset is '
     'busy', "cannot destroy snapshot tank/cinder/v2@c: it's being held. "
     "Run 'zfs holds -r tank/cinder/v2@c' to see holders.", None,
     errors.Busy),
    ('volsize not a multiple', "cannot set property for 'tank/cinder/v2': "
     "'volsize' must be a multiple of volume block size (8K)",
     "cannot set property for 'tank/cinder/v2': 'volsize' must be a "
     "multiple of volume block size (16K)", None, errors.Invalid),
    ('volsize zero', "cannot set property for 'tank/cinder/v2': 'volsize' "
     "cannot be zero", None, None, errors.Invalid),
    ('not a number', "cannot set property for 'tank/cinder/v2': bad numeric "
     "value 'abc'", None, None, errors.Invalid),
    ('bad volblocksize', "cannot create 'tank/cinder/v3': 'volblocksize' "
     "must be power of 2 from 512B to 1M", "cannot create 'tank/cinder/v3'"
     ": 'volblocksize' must be power of 2 from 512B to 16M", None,
     errors.Invalid),
    ('unknown property', "cannot create 'tank/cinder/v3': invalid property "
     "'nosuchprop'", None, None, errors.Invalid),
    ('bad value', "cannot create 'tank/cinder/y': 'compression' must be one "
     "of 'on | off | lzjb | gzip | gzip-[1-9] | zle | lz4 | zstd'",
     None, None, errors.Invalid),
    ('read-only property', "cannot set property for 'tank/cinder/v1': "
     "'used' is readonly", None, None, errors.Invalid),
    ('volblocksize of a clone', "cannot create 'tank/cinder/x4': "
     "'volblocksize' is readonly", None, None, errors.Invalid),
    ('promote a non-clone', "cannot promote 'tank/cinder/v1': not a cloned "
     "filesystem", None, None, errors.Invalid),
    ('delegation missing', "cannot destroy 'tank/cinder/d1r': permission "
     "denied", None, None, errors.PermissionDenied),
]


def _cases():
    for case, v21, v23, v24, kind in MESSAGES:
        for release, text in (('2.1.11', v21), ('2.3.9', v23 or v21),
                              ('2.4.4', v24 or v23 or v21)):
            yield ('%s on %s' % (case, release), text, kind)


class FailingExecutor(object):
    def __init__(self, stderr, rc=1):
        self.stderr, self.rc = stderr, rc

    def run(self, argv, input=None, timeout=None):
        return execute.Completed(argv, self.rc, '', self.stderr + '\n')


@ddt.ddt
class ClassifyTestCase(testtools.TestCase):

    @ddt.data(*_cases())
    @ddt.unpack
    def test_release_messages(self, case, stderr, kind):
        # zfs set exits 255 on 2.3+, 1 before: only the text decides
        for rc in (1, 255):
            host = zfs.ZfsHost(FailingExecutor(stderr, rc), PARENT)
            e = self.assertRaises(errors.HostError, host.destroy,
                                  'volume-a', busy_wait=0)
            self.assertIs(kind, type(e), case)
            self.assertEqual(stderr, e.stderr)
            self.assertIn('tank/cinder/volume-a', e.message)

    def test_unknown_message_is_a_plain_error(self):
        host = zfs.ZfsHost(FailingExecutor('pool I/O is currently '
                                           'suspended'), PARENT)
        e = self.assertRaises(errors.HostError, host.list)
        self.assertIs(errors.HostError, type(e))

    def test_zfs_missing(self):
        host = zfs.ZfsHost(FailingExecutor('zfs: not found', 127), PARENT)
        e = self.assertRaises(errors.Unavailable, host.parent_props)
        self.assertIn('zfsutils-linux', e.hint)

    def test_hints(self):
        host = zfs.ZfsHost(FailingExecutor("cannot destroy 'x': permission "
                                           "denied"), PARENT)
        e = self.assertRaises(errors.PermissionDenied, host.destroy, 'x',
                              busy_wait=0)
        self.assertIn('zfs allow', e.hint)

    @ddt.data(
        # (zfs subcommand, stderr, what the hint must say)
        ('destroy', "cannot destroy 'x': dataset is busy", 'Detach'),
        ('create', "cannot create 'x': dataset is busy", 'retry'),
        ('destroy', "cannot destroy snapshot x@s: it's being held. Run "
                    "'zfs holds -r x@s' to see holders.", 'zfs release'),
        ('destroy', "cannot destroy 'x': volume has children\nuse '-r' to "
                    "destroy the following datasets:\nx@s", 'userrefs'),
        ('destroy', "cannot destroy 'x@s': snapshot has dependent clones",
         'Clones still depend'),
        ('rollback', "cannot rollback to 'x@s': more recent snapshots or "
                     "bookmarks exist", 'newest snapshot'))
    @ddt.unpack
    def test_hint_follows_what_zfs_said(self, subcommand, stderr, says):
        host = zfs.ZfsHost(FailingExecutor(stderr), PARENT)
        call = {'create': lambda: host.create_volume('x', 2 ** 30, True, {}),
                'rollback': lambda: host.rollback('x', 's'),
                'destroy': lambda: host.destroy('x', busy_wait=0)}
        e = self.assertRaises(errors.HostError, call[subcommand])
        self.assertIn(says, e.hint)


class BusyForAMomentExecutor(object):
    """zfs answers "dataset is busy" BUSY times, then does the command."""

    def __init__(self, busy):
        self.busy, self.calls = busy, []

    def run(self, argv, input=None, timeout=None):
        self.calls.append(argv)
        if len(self.calls) <= self.busy:
            return execute.Completed(
                argv, 1, '', "cannot destroy 'tank/cinder/v9': dataset is "
                             "busy\n")
        return execute.Completed(argv, 0, '', '')


class HalfMadeCloneZfs(fake_zfs.FakeZfsHost):
    """zfs clone makes the clone, then says busy, BUSY times.

    As a freshly booted host did: the clone was made, setting its
    properties failed while its device was being made, and zfs could not
    take it back.
    """

    def __init__(self, busy):
        super().__init__(PARENT)
        self.left_busy = busy
        self._zfs_create(['-V', str(2 ** 30), 'tank/cinder/v1'])
        self._zfs_snapshot(['tank/cinder/v1@s1'])

    def _zfs_clone(self, args):
        super()._zfs_clone(args)
        if self.left_busy:
            self.left_busy -= 1
            self.datasets[args[-1]]['props'] = {}    # without our marks
            raise fake_zfs.ZfsFailure("cannot create '%s': dataset is busy"
                                      % args[-1])


class BusyRetryTestCase(testtools.TestCase):

    def test_half_made_clone_is_taken_back_and_made_again(self):
        fake = HalfMadeCloneZfs(busy=2)
        zfs.ZfsHost(fake, PARENT).clone('v1', 's1', 'v9', {}, busy_wait=5)
        self.assertEqual(3, len(fake.zfs_calls('clone')))
        self.assertEqual(2, len(fake.zfs_calls('destroy')))
        self.assertEqual('yes', fake.datasets['tank/cinder/v9']['props'][
            zprops.MANAGED])

    def test_clone_busy_past_the_wait_says_busy_and_leaves_nothing(self):
        fake = HalfMadeCloneZfs(busy=100)
        e = self.assertRaises(errors.Busy, zfs.ZfsHost(fake, PARENT).clone,
                              'v1', 's1', 'v9', {}, busy_wait=0)
        self.assertIn('dataset is busy', e.stderr)
        self.assertIn('setting up a device; retry', e.hint)
        self.assertEqual(1, len(fake.zfs_calls('clone')))
        self.assertNotIn('tank/cinder/v9', fake.names())

    def test_destroy_busy_for_a_moment_is_done(self):
        executor = BusyForAMomentExecutor(busy=1)
        zfs.ZfsHost(executor, PARENT).destroy('v9', busy_wait=5)
        self.assertEqual(['destroy', 'tank/cinder/v9'],
                         executor.calls[-1][1:])


@ddt.ddt
class ParseTestCase(testtools.TestCase):

    def test_rows_of_every_release(self):
        # 2.1.11 (8K default volblocksize) and 2.3/2.4 (16K) print the same
        # columns
        for vbs in ('8192', '16384'):
            out = ('tank/cinder\tfilesystem\t-\t98304\t9.8e9\tnone\t-\t-\t-\t'
                   '5\t-\t-\t-\n'.replace('9.8e9', '9881034752') +
                   'tank/cinder/v1\tvolume\t1073741824\t57344\t9881034752\t'
                   '0\t-\t-\t-\t8\t%s\tyes\t-\n' % vbs +
                   'tank/cinder/v1@s1\tsnapshot\t1073741824\t0\t-\t-\t-\t'
                   'tank/cinder/c1\toff\t9\t-\tyes\t-\n')

            class Out(object):
                def run(self, argv, input=None, timeout=None):
                    return execute.Completed(argv, 0, out, '')
            tree = zfs.ZfsHost(Out(), PARENT).children()
            v1 = tree['v1']
            self.assertEqual(1073741824, v1.volsize)
            self.assertEqual(int(vbs), v1.volblocksize)
            self.assertTrue(v1.managed)
            self.assertIsNone(v1.origin)
            self.assertEqual(['tank/cinder/c1'], v1.snapshots[0].clones)
            self.assertFalse(v1.snapshots[0].deferred)
            self.assertEqual(['v1'], list(tree))

    def test_unexpected_output(self):
        class Out(object):
            def run(self, argv, input=None, timeout=None):
                return execute.Completed(argv, 0, 'garbage\n', '')
        e = self.assertRaises(errors.HostError,
                              zfs.ZfsHost(Out(), PARENT).list)
        self.assertIn('unexpected output', str(e))

    @ddt.data(('zfs-2.1.11-1+deb12u1\nzfs-kmod-2.1.11-1+deb12u1', (2, 1, 11)),
              ('zfs-2.3.9-0+deb13u1\nzfs-kmod-2.3.9-0+deb13u1', (2, 3, 9)),
              ('zfs-2.4.4-1~bpo13+1\nzfs-kmod-2.4.4-1~bpo13+1', (2, 4, 4)),
              ('zfs-2.4.4-1\nzfs-kmod-2.3.9-1', (2, 3, 9)), ('', None))
    @ddt.unpack
    def test_version(self, text, expected):
        self.assertEqual(expected, grammar.parse_version(text))


class NamesTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = zfs.ZfsHost(fake_zfs.FakeZfsHost(PARENT), PARENT)

    def test_path(self):
        self.assertEqual('tank/cinder/v', self.host.path('v'))
        self.assertEqual('tank/cinder/v@s', self.host.path('v', 's'))
        self.assertRaises(errors.Refused, self.host.path, 'a/b')
        self.assertRaises(errors.Refused, self.host.path, 'v', 's@t')

    def test_child_name(self):
        self.assertEqual('v', self.host.child_name('tank/cinder/v@s'))
        for other in ('tank/cinder', 'tank/cinder/a/b', 'tank/cinderx/v',
                      'tank/other/v', None, ''):
            self.assertIsNone(self.host.child_name(other))

    def test_clone_rules(self):
        self.host.create_volume('v', 2 ** 30, True, {'volblocksize': '64K'})
        self.host.snapshot('v', 's')
        self.host.clone('v', 's', 'c', {'volblocksize': '64K',
                                        'compression': 'lz4'}, sparse=False)
        argv = self.host.executor.zfs_calls('clone')[-1]
        self.assertNotIn('volblocksize=64K', argv)
        self.assertIn('refreservation=auto', argv)
        self.assertIn('compression=lz4', argv)
        self.assertIn('cinder_zol:managed=yes', argv)


@ddt.ddt
class PoolWideTestCase(testtools.TestCase):
    """Every zvol is volmode=dev; pool features need the operator's yes."""

    def host(self, *features):
        return zfs.ZfsHost(fake_zfs.FakeZfsHost(PARENT), PARENT, features)

    def test_create_and_clone_are_volmode_dev(self):
        host = self.host()
        host.create_volume('v', 2 ** 30, True, {})
        host.snapshot('v', 's')
        host.clone('v', 's', 'c', {})
        for verb in ('create', 'clone'):
            self.assertIn('volmode=dev', host.executor.zfs_calls(verb)[-1])
        e = self.assertRaises(errors.Refused, host.set, 'v',
                              {'volmode': 'full'})
        self.assertIn('volmode', str(e))
        host.set('v', {'volmode': 'dev'})     # an adopted zvol

    @ddt.data(({'dedup': 'on'}, 'dedup'), ({'checksum': 'blake3'}, 'blake3'),
              ({'compression': 'zstd-3'}, 'zstd'),
              ({'checksum': 'sha512', 'compression': 'lz4'}, 'sha512'))
    @ddt.unpack
    def test_refused_everywhere_unless_enabled(self, props, feature):
        host = self.host()
        host.create_volume('v', 2 ** 30, True, {})
        host.snapshot('v', 's')
        before = list(host.executor.calls)
        for change in (
                lambda: host.create_volume('w', 2 ** 30, True, props),
                lambda: host.clone('v', 's', 'c', props),
                lambda: host.set('v', props)):
            e = self.assertRaises(errors.Refused, change)
            self.assertIn('"pool_features" in /etc/cinder-zol/host.conf',
                          e.hint)
            self.assertIn('--pool-feature %s' % feature, e.hint)
        self.assertEqual(before, host.executor.calls)

    def test_large_blocks_refused_unless_enabled(self):
        e = self.assertRaises(errors.Refused, self.host().create_volume, 'v',
                              2 ** 30, True, {'volblocksize': '256K'})
        self.assertIn('volblocksize=256K', str(e))
        self.assertIn('large_blocks', e.hint)

    def test_clone_of_a_large_block_zvol_needs_nothing(self):
        """A clone inherits volblocksize: it activates nothing new."""
        host = self.host('large_blocks')
        host.create_volume('v', 2 ** 30, True, {'volblocksize': '1M'})
        host.snapshot('v', 's')
        host = zfs.ZfsHost(host.executor, PARENT)
        host.clone('v', 's', 'c', {'volblocksize': '1M'})

    def test_enabled_feature_allowed(self):
        host = self.host('zstd')
        host.create_volume('v', 2 ** 30, True, {'compression': 'zstd'})
        host.set('v', {'compression': 'zstd-19'})
        self.assertIn('compression=zstd-19',
                      host.executor.zfs_calls('set')[-1])
