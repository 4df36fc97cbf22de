"""Manage, unmanage and retype on the real host, as the driver's account.

The zfs delegation (``zfs allow``) must cover each of these: renaming a
zvol the account did not create, marking it, growing it, setting and
inheriting properties and refreservation. Data written before manage must
read back after it.
"""

from cinder import exception as cinder_exception
from cinder.tests.unit import fake_volume
from oslo_utils import units

from tests.functional import base

PATTERN = "printf 'cinder-zol manage %.0s' $(seq 1 4096)"


class ManageTestCase(base.LabTestCase):

    def foreign(self, name, size):
        """A zvol made by hand, as root, with known data at its start."""
        path = '%s/%s' % (self.parent, name)
        self.guest('zfs create -s -V %d %s && udevadm settle && '
                   '%s | dd of=/dev/zvol/%s conv=notrunc status=none'
                   % (size, path, PATTERN, path))
        return self.guest('%s | md5sum' % PATTERN).split()[0]

    def head_md5(self, name, length):
        return self.guest('udevadm settle; head -c %d /dev/zvol/%s/%s | md5sum'
                          % (length, self.parent, name)).split()[0]

    def test_manage_retype_unmanage(self):
        length = len('cinder-zol manage ') * 4096
        want = self.foreign('legacy', units.Gi + 4 * units.Mi)
        vol = self.volume(2)
        ref = {'source-name': 'legacy'}
        listed = {e['reference']['source-name']: e for e in
                  self.driver.get_manageable_volumes(
                      [], None, 100, 0, ['reference'], ['asc'])}
        self.assertTrue(listed['legacy']['safe_to_manage'])
        self.assertEqual(2, self.driver.manage_existing_get_size(vol, ref))

        self.driver.manage_existing(vol, ref)

        self.assertEqual(str(2 * units.Gi), self.zfs_get(vol.name, 'volsize'))
        self.assertEqual('yes', self.zfs_get(vol.name, 'cinder_zol:managed'))
        self.assertEqual(want, self.head_md5(vol.name, length))

        vol.host = 'cv@zol#zol'
        host = {'host': vol.host}
        self.assertEqual((True, None), self.driver.retype(
            self.ctxt, vol, {}, {'extra_specs': {
                'zfs:compression': (None, 'lz4'),
                'provisioning:type': ('thin', 'thick')}}, host))
        self.assertEqual('lz4', self.zfs_get(vol.name, 'compression'))
        # refreservation=auto: volsize plus the metadata a full zvol needs
        self.assertGreaterEqual(
            int(self.zfs_get(vol.name, 'refreservation')), 2 * units.Gi)
        self.assertEqual((True, None), self.driver.retype(
            self.ctxt, vol, {}, {'extra_specs': {
                'zfs:compression': ('lz4', None),
                'provisioning:type': ('thick', 'thin')}}, host))
        self.assertEqual('0', self.zfs_get(vol.name, 'refreservation'))
        self.assertNotEqual('local', self.guest(
            'zfs get -H -o source compression %s/%s'
            % (self.parent, vol.name)).strip())
        self.assertEqual((False, None), self.driver.retype(
            self.ctxt, vol, {}, {'extra_specs': {
                'zfs:volblocksize': (None, '64K')}}, host))

        self.driver.unmanage(vol)
        self.assertEqual('-', self.zfs_get(vol.name, 'cinder_zol:managed'))
        self.assertEqual(want, self.head_md5(vol.name, length))
        self.guest('zfs destroy %s/%s' % (self.parent, vol.name))

    def test_retype_dropping_a_spec_restores_the_backend_default(self):
        # as on a new volume of the new type; zfs inherit would give the
        # parent's value (logbias=latency, the ZFS default)
        self.driver = self.make_driver(zol_zvol_properties={
            'logbias': 'throughput', 'compression': 'lz4'})
        vtype = fake_volume.fake_volume_type_obj(self.ctxt, extra_specs={
            'zfs:logbias': 'latency', 'zfs:compression': 'off'})
        vol = self.volume(1, volume_type_id=vtype.id, host='cv@zol#zol')
        vol.volume_type = vtype
        self.driver.create_volume(vol)
        self.assertEqual('latency', self.zfs_get(vol.name, 'logbias'))

        self.assertEqual((True, None), self.driver.retype(
            self.ctxt, vol, {}, {'extra_specs': {
                'zfs:logbias': ('latency', None),
                'zfs:compression': ('off', None)}}, {'host': vol.host}))

        self.assertEqual('throughput\tlocal\nlz4\tlocal', self.guest(
            'zfs get -H -o value,source logbias,compression %s/%s'
            % (self.parent, vol.name)).strip())
        self.driver.delete_volume(vol)

    def test_hostile_reference_changes_nothing(self):
        self.foreign('legacy', units.Gi)
        before = self.zfs_names()
        for ref in ({'source-name': '../legacy'},
                    {'source-name': 'legacy; zfs destroy -r tank'},
                    {'source-name': self.parent + '/legacy'}):
            self.assertRaises(cinder_exception.ManageExistingInvalidReference,
                              self.driver.manage_existing, self.volume(1),
                              ref)
        self.assertEqual(before, self.zfs_names())
        self.guest('zfs destroy %s/legacy' % self.parent)
