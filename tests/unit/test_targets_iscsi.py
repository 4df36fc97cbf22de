"""The driver side of iSCSI exports: names, CHAP policy, portals,
connection info and what each call asks of the storage host."""

import uuid

import ddt
from oslo_config import cfg

from cinder import exception as cinder_exception
from cinder import objects
from cinder.volume import driver as volume_driver

from cinder_zol import exception
from cinder_zol import targets
from cinder_zol.targets import iscsi
from tests.unit import target_base

INITIATOR = 'iqn.1993-08.org.debian:01:compute1'
OTHER = 'iqn.1993-08.org.debian:01:compute2'
LOCATION = '192.0.2.10:3260,4 iqn.2010-10.org.openstack:volume-x 1'
AUTH = 'CHAP user0123456789abcdef secret0123456789'


@ddt.ddt
class ISCSITargetTestCase(target_base.TargetTestBase):

    EXTRA_OPTS = (volume_driver.iser_opts,)
    CONF = {'zol_target_helper': 'tgtadm'}
    ANSWER = {'tid': 4, 'lun': 1,
              'chap': ['user0123456789abcdef', 'secret0123456789'],
              'changed': True}

    def attach(self, vol, *initiators):
        vol.volume_attachment = objects.VolumeAttachmentList(objects=[
            objects.VolumeAttachment(
                context=self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
                attach_status='attached',
                connector={'initiator': i, 'host': i})
            for i in initiators])
        return vol

    # -- helpers and names ---------------------------------------------

    @ddt.data('tgtadm', 'lioadm')
    def test_helpers(self, helper):
        self.set_conf(zol_target_helper=helper)
        target = targets.get_target(self.configuration, self.storage)
        self.assertIsInstance(target, iscsi.ISCSITarget)
        self.assertEqual(3260, target.default_port)
        self.assertEqual('iSCSI', target.storage_protocol)

    def test_unknown_helper(self):
        self.configuration.safe_get = lambda name: 'scstadmin'
        self.assertRaises(cinder_exception.InvalidConfigurationValue,
                          targets.get_target, self.configuration,
                          self.storage)

    def test_iqn_from_prefix_then_kept(self):
        vol = self.volume()
        self.assertEqual('iqn.2010-10.org.openstack:' + vol.name,
                         self.target.target_name(vol))
        self.set_conf(target_prefix='iqn.2026-01.com.example:')
        vol.provider_location = LOCATION
        self.assertEqual('iqn.2010-10.org.openstack:volume-x',
                         self.target.target_name(vol))

    def test_bad_target_prefix(self):
        self.set_conf(target_prefix='iqn.bad prefix:')
        self.assertRaises(cinder_exception.InvalidInput,
                          self.target.target_name, self.volume())

    @ddt.data('', 'x', '1.2.3.4:3260,1 iqn.2010-10.org.openstack:a',
              '1.2.3.4:3260,x iqn.2010-10.org.openstack:a 1',
              '1.2.3.4:3260,1 iqn.x;y 1')
    def test_bad_provider_location(self, location):
        self.assertRaises(cinder_exception.InvalidInput,
                          iscsi.parse_provider_location, location)

    # -- portals ---------------------------------------------------------

    def test_portal_defaults_to_san_ip(self):
        self.assertEqual(['192.0.2.10:3260'], self.target.portals())

    def test_portal_my_ip_means_san_ip(self):
        self.set_conf(target_ip_address=cfg.CONF.my_ip)
        self.assertEqual(['192.0.2.10:3260'], self.target.portals())

    def test_portal_explicit_target_ip_and_secondaries(self):
        self.set_conf(target_ip_address='198.51.100.1', target_port=3261,
                      target_secondary_ip_addresses=['198.51.100.2',
                                                     '2001:db8::1'])
        self.assertEqual(['198.51.100.1:3261', '198.51.100.2:3261',
                          '[2001:db8::1]:3261'], self.target.portals())

    def test_secondary_portals_with_their_own_ports(self):
        self.set_conf(target_ip_address='127.0.0.1', target_port=3261,
                      target_secondary_ip_addresses=[
                          '127.0.0.1:3262', '[2001:db8::1]:3263',
                          '2001:db8::2', ' storage-b.example.com:3260 '])
        target = targets.get_target(self.configuration, self.storage)
        self.assertEqual(['127.0.0.1:3261', '127.0.0.1:3262',
                          '[2001:db8::1]:3263', '[2001:db8::2]:3261',
                          'storage-b.example.com:3260'], target.portals())
        self.assertEqual([3260, 3261, 3262, 3263], target.ports())

    @ddt.data('198.51.100.2:', '198.51.100.2:0', '198.51.100.2:65536',
              '198.51.100.2:32a', '198.51.100.2:-1', '[198.51.100.2]:3261',
              '[2001:db8::1', '[2001:db8::1]3261', '[2001:db8::1]:',
              '1.2.3.4:3260:1', 'bad host', 'bad_host!:3260', '', ':3260',
              '256.1.1.1', 'storage;reboot', '198.51.100.2:\u00b2',
              '198.51.100.2:003260')
    def test_bad_secondary_portal_refused(self, entry):
        self.set_conf(target_secondary_ip_addresses=[entry])
        e = self.assertRaises(cinder_exception.InvalidConfigurationValue,
                              targets.get_target, self.configuration,
                              self.storage)
        self.assertIn('target_secondary_ip_addresses entry %r' % entry,
                      str(e))

    @ddt.data(['192.0.2.10'], ['192.0.2.10:3260'],
              ['198.51.100.2:3261', '198.51.100.2:3261'])
    def test_same_portal_twice_refused(self, secondaries):
        self.set_conf(target_secondary_ip_addresses=secondaries)
        e = self.assertRaises(cinder_exception.InvalidConfigurationValue,
                              targets.get_target, self.configuration,
                              self.storage)
        self.assertIn('more than once', str(e))

    def test_portal_san_is_local(self):
        self.set_conf(san_is_local=True, target_ip_address='198.51.100.9')
        self.assertEqual(['198.51.100.9:3260'], self.target.portals())

    # -- CHAP ------------------------------------------------------------

    def test_chap_on_by_default_per_volume(self):
        a, b = self.target.chap(self.volume()), self.target.chap(
            self.volume())
        self.assertEqual(20, len(a[0]))
        self.assertEqual(16, len(a[1]))
        self.assertNotEqual(a, b)

    def test_chap_explicitly_off(self):
        self.set_conf(use_chap_auth=False)
        self.assertIsNone(self.target.chap(self.volume()))

    def test_existing_credentials_proposed_again(self):
        vol = self.volume(provider_auth=AUTH)
        self.assertEqual(['user0123456789abcdef', 'secret0123456789'],
                         self.target.chap(vol))

    def test_malformed_provider_auth_replaced(self):
        vol = self.volume(provider_auth='CHAP only-two')
        self.assertEqual(2, len(self.target.chap(vol)))

    # -- the flow --------------------------------------------------------

    def test_create_export_allows_the_connector_in_the_same_request(self):
        vol = self.volume()
        update = self.target.create_export(vol, {'initiator': INITIATOR})
        op, name, helper, payload = self.storage.target.call_args[0]
        self.assertEqual(('export', vol.name, 'tgtadm'), (op, name, helper))
        self.assertEqual([INITIATOR], payload['initiators'])
        self.assertEqual(vol.name_id, payload['serial'])
        self.assertEqual('iqn.2010-10.org.openstack:' + vol.name,
                         payload['iqn'])
        self.assertEqual('192.0.2.10:3260,4 iqn.2010-10.org.openstack:%s 1'
                         % vol.name, update['provider_location'])
        # the host's credentials win over the proposed ones
        self.assertEqual(AUTH, update['provider_auth'])

    def test_create_export_without_chap(self):
        self.set_conf(use_chap_auth=False)
        self.storage.target.return_value = {'tid': 4, 'lun': 1,
                                            'chap': None}
        update = self.target.create_export(self.volume(),
                                           {'initiator': INITIATOR})
        self.assertIsNone(update['provider_auth'])
        self.assertIsNone(self.storage.target.call_args[0][3]['chap'])

    def test_serial_follows_name_id_after_migration(self):
        vol = self.volume(_name_id=str(uuid.uuid4()))
        self.target.create_export(vol, {'initiator': INITIATOR})
        self.assertEqual(vol._name_id,
                         self.storage.target.call_args[0][3]['serial'])

    def test_ensure_export_recreates_with_attached_initiators(self):
        vol = self.attach(self.volume(provider_location=LOCATION,
                                      provider_auth=AUTH), INITIATOR, OTHER)
        self.target.ensure_export(vol)
        payload = self.storage.target.call_args[0][3]
        self.assertEqual([INITIATOR, OTHER], payload['initiators'])
        self.assertEqual('iqn.2010-10.org.openstack:volume-x', payload['iqn'])
        self.assertEqual(['user0123456789abcdef', 'secret0123456789'],
                         payload['chap'])

    def test_never_exported_volume_needs_no_target(self):
        vol = self.volume()
        self.target.ensure_export(vol)
        self.target.remove_export(vol)
        self.assertFalse(self.target.terminate_connection(
            vol, {'initiator': INITIATOR}))
        self.target.extend(vol)
        self.storage.target.assert_not_called()

    def test_initialize_connection_needs_no_request(self):
        vol = self.volume(provider_location=LOCATION, provider_auth=AUTH)
        info = self.target.initialize_connection(
            vol, {'initiator': INITIATOR})
        self.storage.target.assert_not_called()
        self.assertEqual('iscsi', info['driver_volume_type'])
        self.assertEqual({
            'target_discovered': False, 'target_portal': '192.0.2.10:3260',
            'target_iqn': 'iqn.2010-10.org.openstack:volume-x',
            'target_lun': 1, 'volume_id': vol.id, 'discard': True,
            'encrypted': False, 'auth_method': 'CHAP',
            'auth_username': 'user0123456789abcdef',
            'auth_password': 'secret0123456789'}, info['data'])

    @ddt.data(True, False)
    def test_initialize_connection_two_portals(self, multipath):
        # listed with or without multipath: os-brick fails over between
        # them on a single path (as with Cinder's own targets)
        self.set_conf(target_secondary_ip_addresses=['198.51.100.2:3261'])
        vol = self.volume(provider_location=LOCATION)
        data = self.target.initialize_connection(
            vol, {'initiator': INITIATOR, 'multipath': multipath})['data']
        self.assertEqual('192.0.2.10:3260', data['target_portal'])
        self.assertEqual(['192.0.2.10:3260', '198.51.100.2:3261'],
                         data['target_portals'])
        self.assertEqual(['iqn.2010-10.org.openstack:volume-x'] * 2,
                         data['target_iqns'])
        self.assertEqual([1, 1], data['target_luns'])
        self.assertNotIn('auth_method', data)

    def test_initialize_connection_one_portal_multipath(self):
        # the configured portal only: no sendtargets discovery, which
        # would report every address the storage host listens on
        vol = self.volume(provider_location=LOCATION)
        data = self.target.initialize_connection(
            vol, {'initiator': INITIATOR, 'multipath': True})['data']
        self.assertEqual(['192.0.2.10:3260'], data['target_portals'])
        self.assertEqual(['iqn.2010-10.org.openstack:volume-x'],
                         data['target_iqns'])
        self.assertEqual([1], data['target_luns'])

    def test_export_asks_for_every_portal_port(self):
        self.set_conf(target_port=3261, target_secondary_ip_addresses=[
            '198.51.100.2', '198.51.100.3:3262', '198.51.100.4:3262'])
        vol = self.volume()
        update = self.target.create_export(vol, {'initiator': INITIATOR})
        payload = self.storage.target.call_args[0][3]
        self.assertEqual(3261, payload['port'])
        self.assertEqual([3261, 3262], payload['ports'])
        # the primary portal only: secondaries are taken at each attach
        self.assertTrue(update['provider_location'].startswith(
            '192.0.2.10:3261,4 '))

    def test_initialize_connection_not_exported(self):
        self.assertRaises(exception.TargetError,
                          self.target.initialize_connection, self.volume(),
                          {'initiator': INITIATOR})

    @ddt.data(None, {}, {'initiator': ''}, {'host': 'x'},
              {'initiator': 'iqn.2010-10.org.x:a;reboot'},
              {'initiator': 'ALL'})
    def test_bad_connector_refused_locally(self, connector):
        self.assertRaises((cinder_exception.InvalidConnectorException,
                           cinder_exception.InvalidInput),
                          self.target.initialize_connection,
                          self.volume(provider_location=LOCATION), connector)
        self.storage.target.assert_not_called()

    # -- detach: what Cinder's manager does with the answer ------------

    def test_last_attachment_detaches(self):
        vol = self.attach(self.volume(provider_location=LOCATION), INITIATOR)
        self.assertFalse(self.target.terminate_connection(
            vol, {'initiator': INITIATOR}))
        self.assertEqual([INITIATOR], self.storage.target.call_args[0][3][
            'initiators'])

    def test_other_host_still_attached(self):
        vol = self.attach(self.volume(provider_location=LOCATION,
                                      multiattach=True), INITIATOR, OTHER)
        self.assertTrue(self.target.terminate_connection(
            vol, {'initiator': INITIATOR}))
        self.assertEqual('deny', self.storage.target.call_args[0][0])

    def test_same_host_still_attached_keeps_access(self):
        vol = self.attach(self.volume(provider_location=LOCATION,
                                      multiattach=True), INITIATOR, INITIATOR)
        self.assertTrue(self.target.terminate_connection(
            vol, {'initiator': INITIATOR}))
        self.storage.target.assert_not_called()

    def test_force_detach_without_connector(self):
        vol = self.attach(self.volume(provider_location=LOCATION), INITIATOR)
        self.assertFalse(self.target.terminate_connection(vol, None))
        self.assertIsNone(self.storage.target.call_args[0][3]['initiators'])

    def test_force_detach_without_connector_while_others_remain(self):
        vol = self.attach(self.volume(provider_location=LOCATION,
                                      multiattach=True), INITIATOR, OTHER)
        self.assertTrue(self.target.terminate_connection(vol, None))
        self.storage.target.assert_not_called()

    def test_extend_resizes_a_live_export(self):
        vol = self.volume(provider_location=LOCATION)
        self.target.extend(vol)
        op, _name, _helper, payload = self.storage.target.call_args[0]
        self.assertEqual('resize', op)
        self.assertEqual(vol.name_id, payload['serial'])
