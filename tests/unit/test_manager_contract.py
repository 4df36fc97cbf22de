"""The driver under Cinder's own volume manager code paths.

Cinder 29's ``VolumeManager.attachment_delete`` calls ``remove_export``
unless ``terminate_connection`` returns True, and ``attachment_update``
runs ``create_export`` then ``initialize_connection``. These tests run
those manager methods (not copies of them) with the real driver over the
in-process storage host and check what reached the storage host's target.
"""

import threading
import uuid

from unittest import mock

from cinder import objects
from cinder.volume import manager

from tests.unit import test_driver

HOST_A = 'iqn.1993-08.org.debian:01:compute-a'
HOST_B = 'iqn.1993-08.org.debian:01:compute-b'


def connector(initiator, host):
    return {'initiator': initiator, 'host': host, 'ip': '192.0.2.50',
            'multipath': False, 'platform': 'x86_64', 'os_type': 'linux'}


class ManagerContractTestCase(test_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.driver._initialized = True
        self.manager = manager.VolumeManager.__new__(manager.VolumeManager)
        self.manager.driver = self.driver
        self.manager.db = mock.Mock()
        self.manager.host = 'cinder@zol'
        self.manager._notify_about_volume_usage = mock.Mock()
        self.mock_object(manager.volume_utils, 'require_driver_initialized')

    def attached_volume(self, connectors, multiattach=False):
        """A volume exported and attached as the manager would leave it."""
        vol = self.volume(1, multiattach=multiattach, status='in-use')
        self.driver.create_volume(vol)
        attachments = []
        for conn in connectors:
            att = objects.VolumeAttachment(
                context=self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
                attach_status='attached', connector=conn,
                attached_host=conn['host'], attach_mode='rw',
                instance_uuid=str(uuid.uuid4()))
            attachments.append(att)
            vol.volume_attachment = objects.VolumeAttachmentList(
                objects=list(attachments))
            vol.update(self.driver.create_export(self.ctxt, vol, conn))
            self.driver.initialize_connection(vol, conn)
        del self.backend.calls[:]
        return vol, attachments

    def detach(self, vol, attachment):
        with mock.patch.object(objects.VolumeAttachment, 'get_by_id',
                               return_value=attachment):
            self.manager.attachment_delete(self.ctxt, attachment.id, vol)
        vol.volume_attachment = objects.VolumeAttachmentList(objects=[
            a for a in vol.volume_attachment if a.id != attachment.id])

    def exported(self, vol):
        return self.backend.exports.get(vol.name)

    def test_multiattach_detach_one_host_keeps_the_other(self):
        vol, (att_a, att_b) = self.attached_volume(
            [connector(HOST_A, 'a'), connector(HOST_B, 'b')],
            multiattach=True)
        self.detach(vol, att_a)
        self.assertEqual([('deny', vol.name, [HOST_A])], self.backend.calls)
        self.assertEqual([HOST_B], self.exported(vol)['initiators'])
        self.detach(vol, att_b)
        self.assertIsNone(self.exported(vol))

    def test_live_migration_source_detach_keeps_destination(self):
        # nova: destination attachment exists before the source is deleted
        vol, (src, _dst) = self.attached_volume(
            [connector(HOST_A, 'src'), connector(HOST_B, 'dst')])
        self.detach(vol, src)
        self.assertNotIn(('remove', vol.name), self.backend.calls)
        self.assertEqual([HOST_B], self.exported(vol)['initiators'])

    def test_two_attachments_from_one_host(self):
        vol, (first, second) = self.attached_volume(
            [connector(HOST_A, 'a'), connector(HOST_A, 'a')],
            multiattach=True)
        self.detach(vol, first)
        self.assertEqual([], self.backend.calls)
        self.assertEqual([HOST_A], self.exported(vol)['initiators'])
        self.detach(vol, second)
        self.assertEqual([('deny', vol.name, [HOST_A]),
                          ('remove', vol.name)], self.backend.calls)

    def detach_concurrently(self, vol, attachments):
        """attachment_delete of each, all given the same volume.

        Cinder's API loads the volume for each request before its RPC
        call and drops the attachment only after it returns, so requests
        made at the same moment all list every attachment.
        """
        for att in attachments:
            with mock.patch.object(objects.VolumeAttachment, 'get_by_id',
                                   return_value=att):
                self.manager.attachment_delete(self.ctxt, att.id, vol)

    def test_concurrent_detaches_of_two_hosts_remove_the_export(self):
        vol, atts = self.attached_volume(
            [connector(HOST_A, 'a'), connector(HOST_B, 'b')],
            multiattach=True)
        self.detach_concurrently(vol, atts)
        self.assertIsNone(self.exported(vol))
        self.assertIn(('remove', vol.name), self.backend.calls)
        self.assertEqual({}, self.driver.target._claims)

    def test_concurrent_detaches_from_one_host_deny_it(self):
        vol, atts = self.attached_volume(
            [connector(HOST_A, 'a'), connector(HOST_A, 'a'),
             connector(HOST_B, 'b')], multiattach=True)
        self.detach_concurrently(vol, atts[:2])
        self.assertEqual([('deny', vol.name, [HOST_A])], self.backend.calls)
        self.assertEqual([HOST_B], self.exported(vol)['initiators'])
        self.detach_concurrently(vol, atts[2:])
        self.assertIsNone(self.exported(vol))

    def test_detach_after_another_finished_counts_afresh(self):
        # a claim ends when Cinder no longer lists the attachment
        vol, (att_a, att_b) = self.attached_volume(
            [connector(HOST_A, 'a'), connector(HOST_A, 'a')],
            multiattach=True)
        self.detach(vol, att_a)
        self.assertEqual([], self.backend.calls)
        att_c = objects.VolumeAttachment(
            context=self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
            attach_status='attached', connector=connector(HOST_A, 'a'),
            attached_host='a', attach_mode='rw',
            instance_uuid=str(uuid.uuid4()))
        vol.volume_attachment = objects.VolumeAttachmentList(
            objects=[att_b, att_c])
        self.detach(vol, att_b)
        self.assertEqual([], self.backend.calls)
        self.detach(vol, att_c)
        self.assertEqual([('deny', vol.name, [HOST_A]),
                          ('remove', vol.name)], self.backend.calls)

    def attach_in_flight(self, vol, conn):
        """An attachment exported but without a connector yet.

        As attachment_update leaves it between the driver's export and
        Cinder's recording of the connector: reserved, connector None.
        """
        att = objects.VolumeAttachment(
            context=self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
            attach_status='reserved', attach_mode='rw', connector=None,
            instance_uuid=str(uuid.uuid4()))
        vol.volume_attachment = objects.VolumeAttachmentList(
            objects=list(vol.volume_attachment) + [att])
        vol.save = mock.Mock()
        # the manager's own export step; the db (a mock) keeps no connector
        self.manager._connection_create(self.ctxt, vol, att, conn)
        self.assertIsNone(att.connector)
        del self.backend.calls[:]
        return att

    def test_detach_keeps_the_host_of_an_attach_in_flight(self):
        vol, (att_a,) = self.attached_volume([connector(HOST_A, 'a')],
                                             multiattach=True)
        att_new = self.attach_in_flight(vol, connector(HOST_A, 'a'))
        self.detach(vol, att_a)
        self.assertEqual([], self.backend.calls)
        self.assertEqual([HOST_A], self.exported(vol)['initiators'])
        # once Cinder recorded it, its detach is the last one
        att_new.update({'attach_status': 'attached',
                        'connector': connector(HOST_A, 'a')})
        self.detach(vol, att_new)
        self.assertEqual([('deny', vol.name, [HOST_A]),
                          ('remove', vol.name)], self.backend.calls)

    def test_attach_in_flight_from_another_host_keeps_the_export(self):
        # whose it is cannot be told yet: nobody is cut off
        vol, (att_a,) = self.attached_volume([connector(HOST_A, 'a')],
                                             multiattach=True)
        self.attach_in_flight(vol, connector(HOST_B, 'b'))
        self.detach(vol, att_a)
        self.assertNotIn(('remove', vol.name), self.backend.calls)
        self.assertEqual([HOST_A, HOST_B], self.exported(vol)['initiators'])

    def test_attach_made_while_the_last_detach_runs_keeps_its_export(self):
        # Cinder 29 reads the attachments when the detach starts; an attach
        # reserved after that exports while the detach denies and removes
        vol, (att_a,) = self.attached_volume([connector(HOST_A, 'a')],
                                             multiattach=True)
        real_request = self.driver.target._request
        attaches = []

        def request(op, volume, payload):
            if op == 'deny' and not attaches:
                attaches.append(threading.Thread(
                    target=self.attach_in_flight,
                    args=(vol, connector(HOST_A, 'a'))))
                attaches[0].start()
                attaches[0].join(0.5)   # done, or waiting for the detach
            return real_request(op, volume, payload)
        self.mock_object(self.driver.target, '_request',
                         side_effect=request)
        self.detach(vol, att_a)
        attaches[0].join(5)
        self.assertFalse(attaches[0].is_alive())
        self.assertEqual([HOST_A], self.exported(vol)['initiators'])
        # and the detach of that attachment removes the export as usual
        (att_new,) = vol.volume_attachment
        att_new.update({'attach_status': 'attached',
                        'connector': connector(HOST_A, 'a')})
        self.detach(vol, att_new)
        self.assertIsNone(self.exported(vol))

    def test_attachment_without_a_host_does_not_keep_access(self):
        # nova's attachment of a shelved offloaded server: attached, no
        # connector, never exported for anyone
        vol, (att_a, _att_b) = self.attached_volume(
            [connector(HOST_A, 'a'), connector(HOST_B, 'b')],
            multiattach=True)
        shelved = objects.VolumeAttachment(
            context=self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
            attach_status='attached', attach_mode='rw', connector=None,
            instance_uuid=str(uuid.uuid4()))
        vol.volume_attachment = objects.VolumeAttachmentList(
            objects=list(vol.volume_attachment) + [shelved])
        self.detach(vol, att_a)
        self.assertEqual([('deny', vol.name, [HOST_A])], self.backend.calls)
        self.assertEqual([HOST_B], self.exported(vol)['initiators'])

    def test_last_detach_removes_the_export(self):
        vol, (att,) = self.attached_volume([connector(HOST_A, 'a')])
        self.detach(vol, att)
        self.assertEqual([('deny', vol.name, [HOST_A]),
                          ('remove', vol.name)], self.backend.calls)

    def test_attach_is_one_request_to_the_storage_host(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        att = objects.VolumeAttachment(
            context=self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
            attach_status='reserved', attach_mode='rw')
        vol.save = mock.Mock()
        del self.runner.requests[:]
        info = self.manager._connection_create(self.ctxt, vol, att,
                                               connector(HOST_A, 'a'))
        self.assertEqual(['target-export'], self.runner.ops())
        self.assertEqual([HOST_A], self.exported(vol)['initiators'])
        self.assertEqual('iscsi', info['driver_volume_type'])
        self.assertEqual('CHAP', info['auth_method'])

    def test_concurrent_first_attaches_agree_on_chap(self):
        vol = self.volume(1, multiattach=True)
        self.driver.create_volume(vol)
        # both attachments see a volume without provider_auth yet
        first = self.driver.create_export(self.ctxt, vol,
                                          connector(HOST_A, 'a'))
        second = self.driver.create_export(self.ctxt, vol,
                                           connector(HOST_B, 'b'))
        self.assertEqual(first['provider_auth'], second['provider_auth'])
        self.assertEqual([HOST_A, HOST_B], self.exported(vol)['initiators'])

    def test_never_exported_volume_deletes_without_the_target(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.host.config.target_helpers = []   # target tool unusable
        del self.runner.requests[:]
        self.driver.remove_export(self.ctxt, vol)
        self.driver.delete_volume(vol)
        self.assertEqual(['delete'], self.runner.ops())
