"""The root helper binds each target to its zvol: targets that are not
cinder-zol's are refused for every operation, with each real backend (fake
tgtd, fake rtslib-fb, fake nvmet configfs) behind the real dispatch.

The foreign targets are the ones another tool or another Cinder backend on
the same storage host would leave: a tgt target on an LVM volume, a LIO
export made like Cinder's own lioadm (with its CHAP account), an nvmet
subsystem on an NVMe disk.
"""

import copy
import errno
import json
import os
from unittest import mock

import ddt
import fixtures
import testtools

from cinder_zol.host import agent
from cinder_zol.host import errors
from cinder_zol.host.root import exports
from cinder_zol.host.root import lio
from cinder_zol.host.root import records
from cinder_zol.host.root import streams
from cinder_zol.host.root import tgt
from cinder_zol.host import wire
from tests.unit import fake_nvmet
from tests.unit import fake_rtslib
from tests.unit import fake_tgtd
from tests.unit import host_fixture

PARENT = host_fixture.PARENT
NAME = 'volume-a'
SERIAL = '0123abcd-0000-1111-2222-333344445555'
OURS = 'iqn.2010-10.org.openstack:volume-a'
FOREIGN_DEVICE = '/dev/mapper/vg0-payroll'
# named like ours (Cinder's own LVM backend on the same host, or a name a
# key holder chose for a zvol it made), serving something else
LOOKALIKE = 'iqn.2010-10.org.openstack:volume-f'
OTHER = 'iqn.2003-01.org.linux-iscsi.backup:payroll'
ATTACKER = 'iqn.2024-01.com.evil:attacker'
VICTIM = 'iqn.1993-08.org.debian:01:victim'
INIT = 'iqn.1993-08.org.debian:01:compute'
CHAP = ['user0123456789abcdef', 'secret0123456789']
NQN_OURS = 'nqn.2010-10.org.openstack:volume-a'
NQN_LOOKALIKE = 'nqn.2010-10.org.openstack:volume-f'
HOST_NQN = 'nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-0001'
EVIL_NQN = 'nqn.2024-01.com.evil:host'

OPERATIONS = ('export', 'remove', 'allow', 'deny', 'resize', 'show')


class BindingBase(testtools.TestCase):
    """A storage host with zvols volume-a and volume-f, both managed."""

    helper = None

    def setUp(self):
        super().setUp()
        self.host = host_fixture.make_host(
            helpers=('tgtadm', 'lioadm', 'nvmet'))
        self.host.config.target_ports = [3260, 4420]
        for name in (NAME, 'volume-f'):
            self.host.zfs(PARENT).create_volume(name, 2 ** 30, True, {})

    def request(self, op, name=NAME, **payload):
        return agent.request(self.host, ['target-' + op, PARENT, name,
                                         self.helper],
                             json.loads(json.dumps(payload)))

    def payload(self, op, iqn, initiator):
        return {
            'export': {'iqn': iqn, 'chap': self.chap,
                       'initiators': [initiator], 'port': self.port,
                       'serial': SERIAL, 'wait': 5},
            'remove': {'iqn': iqn},
            'allow': {'iqn': iqn, 'initiator': initiator,
                      'chap': self.chap},
            'deny': {'iqn': iqn, 'initiators': None},
            'resize': {'iqn': iqn, 'serial': SERIAL},
            'show': {'iqn': iqn},
        }[op]

    def assert_every_operation_refused(self, iqn, initiator, name=NAME):
        before = self.state()
        for op in OPERATIONS:
            e = self.assertRaises(errors.HostError, self.request, op,
                                  name=name,
                                  **self.payload(op, iqn, initiator))
            self.assertIsInstance(e, errors.Refused, '%s: %s' % (op, e))
            self.assertEqual(before, self.state(), op)


@ddt.ddt
class TgtBindingTestCase(BindingBase):

    helper = 'tgtadm'
    chap = CHAP
    port = 3260

    def setUp(self):
        super().setUp()
        self.tgtd = fake_tgtd.FakeTgtd()
        self.host.executor.tools['tgtadm'] = self.tgtd
        conf_dir = self.useFixture(fixtures.TempDir()).path
        self.host.target_backends['tgtadm'] = tgt.Backend(
            self.host.executor, conf_dir=conf_dir)
        self.conf_dir = conf_dir
        self.tgtd.add_target(1, OTHER, device=FOREIGN_DEVICE,
                             names=[VICTIM])
        self.tgtd.add_target(2, LOOKALIKE, device=FOREIGN_DEVICE,
                             names=[VICTIM],
                             accounts=[('vmstoreUser', 'vmstoreSecret12')])
        # data on LUN 2 only: a LUN 1 of ours must not be slipped in
        self.tgtd.add_target(3, 'iqn.2010-10.org.openstack:volume-a-old')
        self.tgtd._lun_new(3, 2, FOREIGN_DEVICE)

    def state(self):
        return (self.tgtd.state(), sorted(os.listdir(self.conf_dir)),
                dict(self.tgtd.accounts))

    def test_a_foreign_target_is_never_touched(self):
        # the name is not ours: refused before tgtd is asked anything
        self.assert_every_operation_refused(OTHER, ATTACKER)

    def test_a_lookalike_name_on_foreign_storage(self):
        # volume-f is a managed zvol the key made; the target named after it
        # serves an LVM volume
        self.assert_every_operation_refused(LOOKALIKE, ATTACKER,
                                            name='volume-f')

    def test_a_foreign_lun_2_is_not_completed_with_ours(self):
        self.host.zfs(PARENT).create_volume('volume-a-old', 2 ** 30, True,
                                            {})
        self.assert_every_operation_refused(
            'iqn.2010-10.org.openstack:volume-a-old', ATTACKER,
            name='volume-a-old')

    def test_our_own_export_works(self):
        result = self.request('export', **self.payload('export', OURS, INIT))
        self.assertEqual(CHAP, result['chap'])
        self.assertEqual([INIT], self.request('show', iqn=OURS)['initiators'])
        self.request('allow', **self.payload('allow', OURS, ATTACKER))
        self.request('deny', iqn=OURS, initiators=[ATTACKER])
        self.assertEqual({'removed': True},
                         self.request('remove', iqn=OURS))
        self.assertIsNone(self.tgtd.target(OURS))

    def test_a_leftover_of_a_deleted_zvol_can_be_removed(self):
        self.request('export', **self.payload('export', OURS, INIT))
        self.host.zfs(PARENT).destroy(NAME)
        self.assertEqual({'removed': True},
                         self.request('remove', iqn=OURS))

    def test_an_unmanaged_zvol_of_the_parent_is_not_ours(self):
        self.request('export', **self.payload('export', OURS, INIT))
        self.host.zfs(PARENT).inherit(NAME, 'cinder_zol:managed')
        for op in ('remove', 'deny', 'show'):
            self.assertRaises(errors.NotOwned, self.request, op,
                              **self.payload(op, OURS, INIT))
        self.assertIsNotNone(self.tgtd.target(OURS))

    def test_an_empty_target_is_ours_only_when_recorded(self):
        self.tgtd.add_target(9, OURS)     # no LUN: a crash half way
        self.assertRaises(errors.Refused, self.request, 'remove', iqn=OURS)
        records.write(self.host.target_state_dir, 'tgtadm', PARENT, NAME,
                      {'iqn': OURS})
        self.request('export', **self.payload('export', OURS, INIT))
        self.assertEqual(self.host.device_of('/dev/zvol/%s/%s'
                                             % (PARENT, NAME)),
                         self.tgtd.target(OURS).luns[1].path)

    @ddt.data(3261, 22, 8080)
    def test_a_port_the_operator_did_not_allow(self, port):
        before = self.state()
        payload = dict(self.payload('export', OURS, INIT), port=port)
        e = self.assertRaises(errors.Refused, self.request, 'export',
                              **payload)
        self.assertIn('target_ports', str(e) + e.hint)
        self.assertEqual(before, self.state())
        self.assertEqual([], self.tgtd.calls_of('portal new'))


class DeviceLinks(BindingBase):
    """Backends that name the zvol by its /dev/zvol link, as on a host."""

    def setUp(self):
        super().setUp()
        self.host.wait_for_device = lambda link, wait, retrigger=None: link
        self.host.device_of = lambda link: link


class LioBindingTestCase(DeviceLinks):

    helper = 'lioadm'
    chap = CHAP
    port = 3260

    def setUp(self):
        super().setUp()
        self.rts = fake_rtslib.FakeRtslib()
        self.useFixture(fixtures.MockPatchObject(lio, '_rtslib',
                                                 return_value=self.rts))
        self.host.target_backends['lioadm'] = lio.Backend(executor=None)
        # made like Cinder's own LVM + lioadm: a backstore and target named
        # after the volume, an ACL with that volume's CHAP account
        for iqn, so_name in ((LOOKALIKE, 'volume-f'), (OTHER, 'payroll')):
            so = self.rts.BlockStorageObject(so_name, dev=FOREIGN_DEVICE +
                                             so_name)
            tg = self.rts.Target(self.rts.FabricModule('iscsi'), iqn,
                                 mode='create')
            tpg = self.rts.TPG(tg, 1, mode='create')
            tpg.set_attribute('generate_node_acls', '1')
            lun = self.rts.LUN(tpg, storage_object=so)
            acl = self.rts.NodeACL(tpg, VICTIM, mode='create')
            acl.chap_userid, acl.chap_password = 'victimUser', \
                'victimSecret123456'
            self.rts.MappedLUN(acl, lun.lun, lun.lun)

    def state(self):
        return copy.deepcopy(self.rts.RTSRoot().dump())

    def test_a_foreign_target_is_never_touched(self):
        self.assert_every_operation_refused(OTHER, ATTACKER)

    def test_a_lookalike_never_hands_out_its_chap_secret(self):
        self.assert_every_operation_refused(LOOKALIKE, ATTACKER,
                                            name='volume-f')

    def test_a_foreign_backstore_named_like_a_zvol_is_not_removed(self):
        # target-remove with NAME = a foreign backstore's name must not
        # delete it (and with it its LUNs everywhere)
        self.host.zfs(PARENT).create_volume('payroll', 2 ** 30, True, {})
        before = self.state()
        self.assertRaises(errors.Refused, self.request, 'remove',
                          name='payroll',
                          iqn='iqn.2010-10.org.openstack:payroll')
        self.assertEqual(before, self.state())

    def test_our_own_export_works(self):
        result = self.request('export', **self.payload('export', OURS, INIT))
        self.assertEqual(CHAP, result['chap'])
        self.request('allow', **self.payload('allow', OURS, ATTACKER))
        self.assertEqual([INIT], self.request(
            'deny', iqn=OURS, initiators=[ATTACKER])['initiators'])
        self.assertEqual({'removed': True},
                         self.request('remove', iqn=OURS))


class NvmetBindingTestCase(DeviceLinks):

    helper = 'nvmet'
    chap = None
    port = 4420

    def setUp(self):
        super().setUp()
        self.nvmet = fake_nvmet.FakeNvmet()
        self.addCleanup(self.nvmet.cleanup)
        self.host.target_backends['nvmet'] = self.nvmet
        for nqn in (NQN_LOOKALIKE, 'nqn.2014-08.org.example:disk0'):
            self.foreign_subsystem(nqn, '/dev/nvme0n1')

    def foreign_subsystem(self, nqn, device):
        ns = 'subsystems/%s/namespaces/1' % nqn
        self.nvmet._mkdir('subsystems/%s' % nqn)
        self.nvmet._mkdir(ns)
        # written as root's own tools would, past the helper's grammar
        with open(self.nvmet._path(ns + '/device_path'), 'w') as f:
            f.write(device)
        with open(self.nvmet._path('subsystems/%s/attr_allow_any_host'
                                   % nqn), 'w') as f:
            f.write('1')

    def state(self):
        tree = self.nvmet.tree()
        return tree, {rel: self.nvmet.attr(rel) for rel in (
            'subsystems/%s/attr_allow_any_host' % NQN_LOOKALIKE,
            'subsystems/%s/namespaces/1/device_path' % NQN_LOOKALIKE)}

    def test_a_foreign_subsystem_is_never_touched(self):
        self.assert_every_operation_refused(
            'nqn.2014-08.org.example:disk0', EVIL_NQN)

    def test_a_lookalike_subsystem_admits_nobody(self):
        self.assert_every_operation_refused(NQN_LOOKALIKE, EVIL_NQN,
                                            name='volume-f')

    def test_our_own_export_is_recorded_and_restored(self):
        self.request('export', **self.payload('export', NQN_OURS, HOST_NQN))
        exported = self.nvmet.tree()
        record = records.read(self.host.target_state_dir, 'nvmet', PARENT,
                              NAME)
        self.assertEqual([HOST_NQN], record['initiators'])
        # a reboot: configfs is empty again, nothing else runs
        self.request('remove', iqn=NQN_OURS)
        records.write(self.host.target_state_dir, 'nvmet', PARENT, NAME,
                      record)
        self.assertEqual(0, exports.restore(self.host))
        self.assertEqual(exported, self.nvmet.tree())

    def test_restore_skips_what_is_no_longer_managed(self):
        self.request('export', **self.payload('export', NQN_OURS, HOST_NQN))
        record = records.read(self.host.target_state_dir, 'nvmet', PARENT,
                              NAME)
        self.request('remove', iqn=NQN_OURS)
        records.write(self.host.target_state_dir, 'nvmet', PARENT, NAME,
                      record)
        self.host.zfs(PARENT).inherit(NAME, 'cinder_zol:managed')
        self.assertEqual(0, exports.restore(self.host))
        self.assertFalse(self.nvmet._exists('subsystems/' + NQN_OURS))
        self.assertIsNone(records.read(self.host.target_state_dir, 'nvmet',
                                       PARENT, NAME))

    def test_restore_counts_what_failed_and_keeps_its_record(self):
        self.request('export', **self.payload('export', NQN_OURS, HOST_NQN))
        record = records.read(self.host.target_state_dir, 'nvmet', PARENT,
                              NAME)
        self.request('remove', iqn=NQN_OURS)
        records.write(self.host.target_state_dir, 'nvmet', PARENT, NAME,
                      record)
        self.nvmet.fail_on = ('subsystems/%s/namespaces/1/enable' % NQN_OURS,
                              errno.EIO)
        self.assertEqual(1, exports.restore(self.host))
        self.assertEqual(record['iqn'], records.read(
            self.host.target_state_dir, 'nvmet', PARENT, NAME)['iqn'])

    def test_remove_forgets_the_record(self):
        self.request('export', **self.payload('export', NQN_OURS, HOST_NQN))
        self.request('remove', iqn=NQN_OURS)
        self.assertIsNone(records.read(self.host.target_state_dir, 'nvmet',
                                       PARENT, NAME))


class StreamSlotTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = host_fixture.make_host(lock_wait=0.3)
        self.host.config.max_streams = 1

    def test_a_stream_past_the_limit_waits_then_is_refused(self):
        with streams.stream_slot(self.host):
            e = self.assertRaises(errors.Busy, self._enter)
        self.assertIn('max_streams', e.hint)
        self._enter()       # free again

    def _enter(self):
        with streams.stream_slot(self.host):
            pass

    def test_a_record_larger_than_the_driver_sends_is_refused(self):
        self.assertLessEqual(wire.MAX_RECORD * streams.READ_AHEAD,
                             32 * 2 ** 20)


class MaxWaitTestCase(testtools.TestCase):

    def test_an_export_waits_at_most_max_wait(self):
        host = host_fixture.make_host()
        host.config.target_ports = [3260]
        with mock.patch.object(exports, 'managed_zvol') as managed:
            managed.side_effect = errors.NotFound('stop here')
            self.assertRaises(errors.NotFound, agent.request, host,
                              ['target-export', PARENT, NAME, 'tgtadm'],
                              {'iqn': OURS, 'chap': None, 'initiators': [],
                               'port': 3260, 'serial': SERIAL,
                               'wait': 600})
        self.assertEqual(30, managed.call_args[0][3])
