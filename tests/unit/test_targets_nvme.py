"""The driver side of NVMe-oF/TCP exports: names, connection info in
os-brick's format, configuration errors and what each call asks of the
storage host."""

import uuid

import ddt
from os_brick.initiator.connectors import nvmeof as brick_nvmeof

from cinder import exception as cinder_exception
from cinder import objects
from cinder.volume import driver as volume_driver

from cinder_zol import exception
from cinder_zol import targets
from cinder_zol.targets import nvme
from tests.unit import target_base

HOST_NQN = 'nqn.2014-08.org.nvmexpress:uuid:5c1f0a1e-0000-4000-8000-0000001'
OTHER_NQN = 'nqn.2014-08.org.nvmexpress:uuid:5c1f0a1e-0000-4000-8000-0000002'


@ddt.ddt
class NVMeTCPTargetTestCase(target_base.TargetTestBase):

    EXTRA_OPTS = (volume_driver.nvmet_opts,)
    CONF = {'zol_target_helper': 'nvmet', 'target_protocol': 'nvmet_tcp'}
    ANSWER = {'port_id': 1, 'nsid': 1, 'chap': None, 'changed': True,
              'initiators': [HOST_NQN]}

    def connector(self, nqn=HOST_NQN):
        return {'nqn': nqn, 'host': 'compute1',
                'initiator': 'iqn.1993-08.org.debian:01:compute1'}

    def attach(self, vol, *nqns):
        vol.volume_attachment = objects.VolumeAttachmentList(objects=[
            objects.VolumeAttachment(
                context=self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
                attach_status='attached', connector=self.connector(n))
            for n in nqns])
        return vol

    def exported(self, **kwargs):
        vol = self.volume(**kwargs)
        vol.update(self.target.create_export(vol, self.connector()))
        self.storage.target.reset_mock()
        return vol

    # -- configuration -------------------------------------------------

    def test_helper_and_protocol(self):
        self.assertIsInstance(self.target, nvme.NVMeTCPTarget)
        self.assertEqual('NVMe-TCP', self.target.storage_protocol)
        self.assertEqual('nvmet', self.target.helper)
        self.assertEqual(4420, self.target.port)

    @ddt.data('iscsi', 'nvmet_rdma', 'iser')
    def test_other_target_protocol_refused(self, protocol):
        self.set_conf(target_protocol=protocol)
        e = self.assertRaises(cinder_exception.InvalidConfigurationValue,
                              targets.get_target, self.configuration,
                              self.storage)
        self.assertIn('target_protocol = nvmet_tcp', str(e))

    # -- names -----------------------------------------------------------

    def test_nqn_from_volume_name_then_kept(self):
        vol = self.volume()
        self.assertEqual('nqn.2010-10.org.openstack:' + vol.name,
                         self.target.target_name(vol))
        self.set_conf(target_prefix='nqn.2024-01.com.example:zol-')
        self.assertEqual('nqn.2024-01.com.example:zol-' + vol.name,
                         self.target.target_name(vol))
        vol.provider_location = (
            '192.0.2.10:4420 tcp nqn.2010-10.org.openstack:old 1')
        self.assertEqual('nqn.2010-10.org.openstack:old',
                         self.target.target_name(vol))

    @ddt.data('192.0.2.10:4420 nqn.2010-10.org.openstack:v 1',
              '192.0.2.10:4420 rdma nqn.2010-10.org.openstack:v 1',
              '192.0.2.10:4420 tcp nqn.x;reboot 1',
              '192.0.2.10:4420 tcp nqn.2010-10.org.openstack:v one',
              None)
    def test_bad_provider_location(self, location):
        self.assertRaises(cinder_exception.InvalidInput,
                          nvme.parse_provider_location, location)

    # -- the flow ----------------------------------------------------------

    def test_create_export_allows_the_host_in_one_request(self):
        vol = self.volume()
        update = self.target.create_export(vol, self.connector())
        nqn = 'nqn.2010-10.org.openstack:' + vol.name
        self.storage.target.assert_called_once_with(
            'export', vol.name, 'nvmet',
            {'iqn': nqn, 'chap': None, 'port': 4420, 'ports': [4420],
             'serial': vol.name_id, 'wait': 30, 'initiators': [HOST_NQN]})
        self.assertEqual({'provider_location': '192.0.2.10:4420 tcp %s 1'
                          % nqn, 'provider_auth': None}, update)

    def test_secondary_portal_with_another_port_is_refused(self):
        self.set_conf(target_secondary_ip_addresses=['198.51.100.7:4430'])
        e = self.assertRaises(cinder_exception.InvalidConfigurationValue,
                              targets.get_target, self.configuration,
                              self.storage)
        self.assertIn('198.51.100.7:4430', str(e))
        self.assertIn('without a port', str(e))

    def test_initialize_connection_is_what_os_brick_reads(self):
        self.set_conf(target_secondary_ip_addresses=['198.51.100.7'],
                      target_port=4421)
        vol = self.exported()
        info = self.target.initialize_connection(vol, self.connector())
        nqn = 'nqn.2010-10.org.openstack:' + vol.name
        self.assertEqual({
            'driver_volume_type': 'nvmeof',
            'data': {'target_nqn': nqn, 'vol_uuid': vol.name_id,
                     'volume_nguid': vol.name_id, 'ns_id': 1,
                     'portals': [('192.0.2.10', '4421', 'tcp'),
                                 ('198.51.100.7', '4421', 'tcp')],
                     'host_nqn': HOST_NQN, 'discard': True,
                     'encrypted': False}}, info)
        self.storage.target.assert_not_called()
        # os-brick's own parser accepts it as one target with two portals
        props = brick_nvmeof.NVMeOFConnProps(info['data'],
                                             find_controllers=False)
        self.assertFalse(props.is_replicated)
        target = props.targets[0]
        self.assertEqual(nqn, target.nqn)
        self.assertEqual(vol.name_id, target.uuid)
        self.assertEqual(HOST_NQN, target.host_nqn)
        self.assertEqual([('192.0.2.10', '4421', 'tcp'),
                          ('198.51.100.7', '4421', 'tcp')],
                         [(p.address, p.port, p.transport)
                          for p in target.portals])

    def test_initialize_connection_not_exported(self):
        self.assertRaises(exception.TargetError,
                          self.target.initialize_connection, self.volume(),
                          self.connector())

    @ddt.data(None, {}, {'initiator': 'iqn.1993-08.org.debian:01:a'},
              {'nqn': 'nqn.2014-08.org.nvmexpress:uuid:x; rm -rf /'},
              {'nqn': 'nqn.2014-08.org.nvmexpress:uuid:../../x'},
              {'nqn': '*'})
    def test_bad_connector_refused_locally(self, connector):
        vol = self.exported()
        self.assertRaises((cinder_exception.InvalidConnectorException,
                           cinder_exception.InvalidInput),
                          self.target.initialize_connection, vol, connector)
        self.assertRaises((cinder_exception.InvalidConnectorException,
                           cinder_exception.InvalidInput),
                          self.target.create_export, self.volume(),
                          connector or {'nqn': ''})
        self.storage.target.assert_not_called()

    def test_last_attachment_detaches(self):
        vol = self.attach(self.exported(), HOST_NQN)
        self.assertFalse(self.target.terminate_connection(
            vol, self.connector()))
        self.storage.target.assert_called_once_with(
            'deny', vol.name, 'nvmet',
            {'iqn': self.target.target_name(vol), 'initiators': [HOST_NQN]})

    def test_other_host_still_attached(self):
        vol = self.attach(self.exported(), HOST_NQN, OTHER_NQN)
        self.assertTrue(self.target.terminate_connection(
            vol, self.connector()))
        self.storage.target.assert_called_once_with(
            'deny', vol.name, 'nvmet',
            {'iqn': self.target.target_name(vol), 'initiators': [HOST_NQN]})

    def test_ensure_export_with_attached_hosts(self):
        vol = self.attach(self.exported(), HOST_NQN, OTHER_NQN)
        self.target.ensure_export(vol)
        payload = self.storage.target.call_args[0][3]
        self.assertEqual([HOST_NQN, OTHER_NQN], payload['initiators'])
        self.assertEqual(vol.name_id, payload['serial'])

    def test_remove_export(self):
        vol = self.exported()
        self.target.remove_export(vol)
        self.storage.target.assert_called_once_with(
            'remove', vol.name, 'nvmet',
            {'iqn': self.target.target_name(vol)})

    def test_remove_export_of_never_exported_volume_does_nothing(self):
        self.target.remove_export(self.volume())
        self.storage.target.assert_not_called()

    def test_extend_revalidates_a_live_export(self):
        vol = self.exported()
        self.target.extend(vol)
        self.storage.target.assert_called_once_with(
            'resize', vol.name, 'nvmet',
            {'iqn': self.target.target_name(vol), 'serial': vol.name_id})
