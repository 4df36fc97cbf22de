"""The ZFS property rules (cinder_zol.host.props) and their one precedence."""

import ddt
from oslotest import base

from cinder_zol.host import errors
from cinder_zol.host import props


@ddt.ddt
class PrecedenceTestCase(base.BaseTestCase):
    """zol_zvol_properties < zol_volblocksize < the type's zfs:* specs."""

    @ddt.data(
        # (zol_zvol_properties, zol_volblocksize, extra specs, expected)
        ({}, None, {}, {}),
        ({'compression': 'lz4'}, None, {}, {'compression': 'lz4'}),
        ({'volblocksize': '8K'}, '16K', {}, {'volblocksize': '16K'}),
        ({'volblocksize': '8K'}, '16K', {'zfs:volblocksize': '64K'},
         {'volblocksize': '64K'}),
        ({'compression': 'lz4', 'sync': 'standard'}, None,
         {'zfs:compression': 'zstd', 'provisioning:type': 'thin',
          'capabilities:foo': 'x'},
         {'compression': 'zstd', 'sync': 'standard'}),
        (None, '', {'zfs:copies': 2}, {'copies': '2'}),
    )
    @ddt.unpack
    def test_merged(self, defaults, volblocksize, specs, expected):
        self.assertEqual(expected, props.merged(defaults, volblocksize,
                                                specs))

    def test_merged_does_not_change_the_options(self):
        defaults = {'compression': 'lz4'}
        props.merged(defaults, '16K', {'zfs:compression': 'off'})
        self.assertEqual({'compression': 'lz4'}, defaults)


@ddt.ddt
class RequestedTestCase(base.BaseTestCase):

    @ddt.data(*sorted(props.REQUESTABLE))
    def test_requestable(self, prop):
        self.assertEqual({prop: 'on'}, props.requested({prop: 'on'}))

    @ddt.data(('volsize', 'size is the volume'),
              ('refreservation', 'provisioning:type'),
              ('cinder_zol:managed', 'ownership'),
              ('cinder_zol:image_id', 'image cache'))
    @ddt.unpack
    def test_driver_own_refused_with_what_to_do(self, prop, hint):
        e = self.assertRaises(errors.Refused, props.requested,
                              {'compression': 'lz4', prop: 'x'})
        self.assertIn(prop, e.message)
        self.assertIn(hint, e.message)

    def test_volmode_is_the_hosts_own(self):
        e = self.assertRaises(errors.Refused, props.requested,
                              {'volmode': 'full'})
        self.assertIn('volmode=dev', e.message)
        self.assertNotIn('volmode', props.INHERITABLE)

    @ddt.data('mountpoint', 'recordsize', 'readonly', 'canmount')
    def test_unknown_refused_listing_what_can(self, prop):
        e = self.assertRaises(errors.Refused, props.requested, {prop: 'x'})
        self.assertIn(prop, e.message)
        self.assertIn('compression', e.message)

    @ddt.data({'compression': 'lz4;reboot'}, {'Compression': 'lz4'},
              {'compression': 4})
    def test_syntax_refused(self, bad):
        self.assertRaises(errors.Refused, props.requested, bad)


class RulesTestCase(base.BaseTestCase):

    def test_clone_drops_create_only(self):
        self.assertEqual({'compression': 'lz4'}, props.for_clone(
            {'compression': 'lz4', 'volblocksize': '16K'}))

    def test_retype_changes(self):
        changed, dropped, fixed = props.retype_changes({
            'zfs:compression': ('lz4', 'zstd'),
            'zfs:logbias': ('throughput', None),
            'zfs:sync': (None, 'always'),
            'zfs:copies': ('2', '2'),
            'provisioning:type': ('thin', 'thick'),
            'volume_backend_name': ('a', 'b')})
        self.assertEqual({'compression': 'zstd', 'sync': 'always'}, changed)
        self.assertEqual(['logbias'], dropped)
        self.assertEqual([], fixed)

    def test_retype_of_create_only_is_fixed(self):
        self.assertEqual(({}, [], ['volblocksize']), props.retype_changes(
            {'zfs:volblocksize': ('16K', '64K')}))

    def test_grammar_uses_the_same_sets(self):
        """What zfs may carry = what may be requested + the driver's own."""
        self.assertEqual(props.REQUESTABLE | set(props.OWN),
                         props.SETTABLE)
        self.assertTrue(props.INHERITABLE <= props.SETTABLE)
        self.assertFalse(props.CREATE_ONLY & props.INHERITABLE)
        self.assertNotIn('volsize', props.INHERITABLE)
        self.assertNotIn('refreservation', props.INHERITABLE)


@ddt.ddt
class PoolFeaturesTestCase(base.BaseTestCase):
    """Which property values change pool-wide state."""

    @ddt.data(
        ({'dedup': 'on'}, {'dedup': 'dedup=on'}),
        ({'dedup': 'verify'}, {'dedup': 'dedup=verify'}),
        ({'dedup': 'skein,verify'}, {'dedup': 'dedup=skein,verify',
                                     'skein': 'dedup=skein,verify'}),
        ({'checksum': 'sha512'}, {'sha512': 'checksum=sha512'}),
        ({'checksum': 'SKEIN'}, {'skein': 'checksum=SKEIN'}),
        ({'checksum': 'edonr'}, {'edonr': 'checksum=edonr'}),
        ({'checksum': 'blake3'}, {'blake3': 'checksum=blake3'}),
        ({'compression': 'zstd'}, {'zstd': 'compression=zstd'}),
        ({'compression': 'zstd-19'}, {'zstd': 'compression=zstd-19'}),
        ({'compression': 'zstd-fast-10'},
         {'zstd': 'compression=zstd-fast-10'}),
        ({'volblocksize': '256K'}, {'large_blocks': 'volblocksize=256K'}),
        ({'volblocksize': '1M'}, {'large_blocks': 'volblocksize=1M'}),
        ({'volblocksize': '0.25m'}, {'large_blocks': 'volblocksize=0.25m'}),
        ({'volblocksize': '131073'}, {'large_blocks': 'volblocksize=131073'}),
    )
    @ddt.unpack
    def test_needs_a_feature(self, requested, needed):
        self.assertEqual(needed, props.pool_features(requested))
        self.assertLessEqual(set(needed), set(props.POOL_FEATURES))

    @ddt.data({'dedup': 'off'}, {'checksum': 'on'}, {'checksum': 'sha256'},
              {'checksum': 'fletcher4'}, {'compression': 'lz4'},
              {'compression': 'on'}, {'compression': 'gzip-9'},
              {'volblocksize': '128K'}, {'volblocksize': '131072'},
              {'volblocksize': '16k'}, {'copies': '3'}, {'sync': 'always'})
    def test_needs_none(self, requested):
        self.assertEqual({}, props.pool_features(requested))

    @ddt.data('big', '1X', '', '1e6')
    def test_volblocksize_not_a_size_refused(self, value):
        self.assertRaises(errors.Refused, props.pool_features,
                          {'volblocksize': value})
