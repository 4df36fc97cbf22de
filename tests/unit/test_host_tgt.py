"""The tgt backend of the root helper against a fake tgtd (tgt 1.0.85).

Each test looks at what tgtd holds afterwards (targets, LUNs, ACL,
accounts, state) and at the boot config file, not only at what was run.
"""

import errno
import json
import os
import stat

import ddt
import fixtures
import testtools

from cinder_zol.host import errors
from cinder_zol.host import log
from cinder_zol.host.root import tgt
from tests.unit import fake_tgtd
from tests.unit import host_fixture

NAME = 'volume-e'
IQN = 'iqn.2010-10.org.openstack:volume-e'
DEVICE = '/dev/zvol/tank/cinder/volume-e'
SERIAL = '0123abcd-0000-1111-2222-333344445555'
CHAP = ['userabcdefghij', 'secretSECRET1234']
CHAP2 = ['userklmnopqrst', 'otherOTHER567890']
A = 'iqn.1993-08.org.debian:01:compute1'
B = 'iqn.1993-08.org.debian:01:compute2'
C = 'iqn.1993-08.org.debian:01:compute3'
OTHER_IQN = 'iqn.2010-10.org.openstack:volume-x'
OTHER_DEVICE = '/dev/zvol/tank/cinder/volume-x'
PLACEHOLDER = tgt.PLACEHOLDER_INITIATOR
NOWHERE = tgt.PLACEHOLDER_ADDRESS
GiB = 2 ** 30

# captured on the lab host (tgt 1.0.85, Debian 12)
LAB_SHOW = """\
Target 1: iqn.2010-10.org.openstack:volume-e
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags: \n\
        LUN: 1
            Type: disk
            SCSI ID: 0123abcd-0000-1111-2222-333344445555
            SCSI SN: 0123abcd-0000-1111-2222-333344445555
            Size: 1074 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /dev/zvol/tank/cinder/volume-e
            Backing store flags: \n\
    Account information:
        userabcdefghij
    ACL information:
        255.255.255.255
        iqn.2010-10.org.openstack:cinder-zol.nobody
        iqn.2026-11.org.cinder-zol:try
"""


def conf_text(chap=CHAP, initiators=(A,), device=DEVICE, serial=SERIAL,
              ports=(3260,)):
    """The config file an export of NAME must leave, spelled out."""
    lines = ['# Managed by cinder-zol for %s; do not edit.' % NAME]
    lines.extend('# cinder-zol listens on port %d' % p for p in ports)
    lines += ['<target %s>' % IQN,
              '    driver iscsi',
              '    backing-store %s' % device,
              '    scsi_id %s' % serial,
              '    scsi_sn %s' % serial]
    if chap:
        lines.append('    incominguser %s %s' % tuple(chap))
    lines.append('    initiator-address 255.255.255.255')
    lines.extend('    initiator-name %s' % i
                 for i in [PLACEHOLDER] + list(initiators))
    lines.append('</target>')
    return '\n'.join(lines) + '\n'


class TgtTestBase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tgtd = fake_tgtd.FakeTgtd()
        self.executor = host_fixture.FakeExecutor(tgtadm=self.tgtd)
        self.conf_dir = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'conf.d')
        self.backend = tgt.Backend(self.executor, conf_dir=self.conf_dir)
        self.sleep = self.useFixture(
            fixtures.MockPatchObject(tgt.time, 'sleep')).mock
        log.take_notes()
        self.addCleanup(log.take_notes)

    def export(self, chap=CHAP, initiators=(A,), device=DEVICE,
               serial=SERIAL, iqn=IQN, ports=(3260,)):
        return self.backend.export(NAME, iqn, device, chap, list(initiators),
                                   list(ports), serial)

    @property
    def path(self):
        return os.path.join(self.conf_dir, 'cinder-zol-%s.conf' % NAME)

    def conf(self):
        try:
            with open(self.path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_conf(self, text):
        os.makedirs(self.conf_dir, exist_ok=True)
        with open(self.path, 'w') as f:
            f.write(text)

    def inode(self):
        return os.stat(self.path).st_ino

    def ours(self):
        return self.tgtd.target(IQN)

    def forget_calls(self):
        del self.tgtd.calls[:]

    def assert_exported(self, tid=1, chap=CHAP, initiators=(A,),
                        device=DEVICE):
        target = self.ours()
        self.assertIsNotNone(target, 'tgtd has no target %s' % IQN)
        self.assertEqual(tid, target.tid)
        self.assertEqual('ready', target.state)
        self.assertEqual([0, 1], sorted(target.luns))
        self.assertEqual(device, target.luns[1].path)
        self.assertEqual((SERIAL, SERIAL),
                         (target.luns[1].scsi_id, target.luns[1].scsi_sn))
        self.assertEqual([NOWHERE, PLACEHOLDER] + list(initiators),
                         target.acls)
        self.assertEqual([chap[0]] if chap else [], target.accounts)
        if chap:
            self.assertEqual(chap[1], self.tgtd.accounts[chap[0]])

    def assert_nothing_of_ours(self, conf=None):
        self.assertIsNone(self.ours())
        self.assertNotIn(CHAP[0], self.tgtd.accounts)
        self.assertNotIn(CHAP2[0], self.tgtd.accounts)
        self.assertEqual(conf, self.conf())
        self.assertEqual([], [n for n in os.listdir(self.conf_dir)
                              if n.startswith('.')]
                         if os.path.isdir(self.conf_dir) else [])


@ddt.ddt
class ExportTestCase(TgtTestBase):

    def test_new_export(self):
        result = self.export()
        self.assertEqual({'tid': 1, 'lun': 1, 'chap': CHAP,
                          'initiators': [A], 'changed': True}, result)
        self.assert_exported()
        self.assertEqual(
            ['portal show', 'target show', 'target new', 'logicalunit new',
             'logicalunit update', 'account new', 'account bind',
             'target bind', 'target bind', 'target bind', 'target show'],
            self.tgtd.ops())
        base = ['tgtadm', '--lld', 'iscsi']
        self.assertEqual(
            [base + ['--mode', 'target', '--op', 'new', '--tid', '1',
                     '--targetname', IQN],
             base + ['--mode', 'logicalunit', '--op', 'new', '--tid', '1',
                     '--lun', '1', '--backing-store', DEVICE],
             base + ['--mode', 'logicalunit', '--op', 'update', '--tid',
                     '1', '--lun', '1', '--params',
                     'scsi_id=%s,scsi_sn=%s' % (SERIAL, SERIAL)],
             base + ['--mode', 'account', '--op', 'new', '--user', CHAP[0],
                     '--password', CHAP[1]],
             base + ['--mode', 'account', '--op', 'bind', '--tid', '1',
                     '--user', CHAP[0]],
             base + ['--mode', 'target', '--op', 'bind', '--tid', '1',
                     '--initiator-address', NOWHERE],
             base + ['--mode', 'target', '--op', 'bind', '--tid', '1',
                     '--initiator-name', PLACEHOLDER],
             base + ['--mode', 'target', '--op', 'bind', '--tid', '1',
                     '--initiator-name', A]],
            self.tgtd.calls[2:-1])

    def test_conf_file(self):
        self.export()
        self.assertEqual(conf_text(), self.conf())
        self.assertEqual(0o600, stat.S_IMODE(os.stat(self.path).st_mode))
        self.assertEqual(['cinder-zol-%s.conf' % NAME],
                         os.listdir(self.conf_dir))
        # what the backend reads back from it
        self.assertEqual((CHAP, [A]), tgt.parse_conf(self.conf(), IQN))

    def test_tid_after_existing_targets(self):
        self.tgtd.add_target(1, 'iqn.2010-10.org.openstack:volume-1',
                             device='/dev/zvol/tank/cinder/volume-1')
        self.tgtd.add_target(3, 'iqn.2010-10.org.openstack:volume-3')
        before = dict(self.tgtd.state())
        result = self.export()
        self.assertEqual(4, result['tid'])
        self.assert_exported(tid=4)
        after = self.tgtd.state()
        del after[IQN]
        self.assertEqual(before, after)

    def test_without_chap(self):
        result = self.export(chap=None, initiators=[A, B])
        self.assertIsNone(result['chap'])
        self.assert_exported(chap=None, initiators=[A, B])
        self.assertEqual({}, dict(self.tgtd.accounts))
        self.assertEqual([], self.tgtd.calls_of('account new'))
        self.assertEqual(conf_text(chap=None, initiators=[A, B]),
                         self.conf())

    def test_without_initiators(self):
        result = self.export(initiators=[])
        self.assertEqual([], result['initiators'])
        self.assert_exported(initiators=[])
        self.assertEqual(conf_text(initiators=[]), self.conf())

    def test_duplicate_and_placeholder_initiators_collapsed(self):
        result = self.export(initiators=[A, A, PLACEHOLDER, B])
        self.assertEqual([A, B], result['initiators'])
        self.assert_exported(initiators=[A, B])
        self.assertEqual(conf_text(initiators=[A, B]), self.conf())

    def test_reexport_is_idempotent(self):
        first = self.export()
        inode = self.inode()
        self.forget_calls()
        second = self.export()
        self.assertEqual(dict(first, changed=False), second)
        self.assertEqual([], self.tgtd.changes())
        self.assertEqual(inode, self.inode())     # not rewritten
        self.assert_exported()

    def test_reexport_binds_missing_initiators(self):
        self.export(initiators=[A])
        inode = self.inode()
        self.forget_calls()
        result = self.export(initiators=[B, A])
        self.assertEqual({'tid': 1, 'lun': 1, 'chap': CHAP,
                          'initiators': [A, B], 'changed': True}, result)
        self.assertEqual(['target bind'], self.tgtd.changes())
        self.assertEqual(B, self.tgtd.calls_of('target bind')[0][-1])
        self.assert_exported(initiators=[A, B])
        self.assertEqual(conf_text(initiators=[A, B]), self.conf())
        self.assertNotEqual(inode, self.inode())

    def test_reexport_keeps_recorded_initiators(self):
        self.export(initiators=[A, B])
        self.forget_calls()
        result = self.export(initiators=[C])
        self.assertEqual([A, B, C], result['initiators'])
        self.assert_exported(initiators=[A, B, C])

    def test_reexport_restores_a_lost_conf(self):
        self.export()
        os.unlink(self.path)
        self.forget_calls()
        result = self.export()
        self.assertEqual(CHAP, result['chap'])
        self.assertTrue(result['changed'])
        self.assertEqual([], self.tgtd.changes())
        self.assertEqual(conf_text(), self.conf())

    def test_first_chap_wins_from_conf(self):
        self.export(chap=CHAP)
        self.forget_calls()
        result = self.export(chap=CHAP2, initiators=[B])
        self.assertEqual(CHAP, result['chap'])
        self.assertEqual([], [op for op in self.tgtd.changes()
                              if op.startswith('account')])
        self.assertEqual({CHAP[0]: CHAP[1]}, dict(self.tgtd.accounts))
        self.assert_exported(initiators=[A, B])
        self.assertEqual(conf_text(initiators=[A, B]), self.conf())

    def test_first_chap_wins_from_live_account(self):
        self.export(chap=CHAP)
        os.unlink(self.path)
        self.forget_calls()
        result = self.export(chap=CHAP)
        self.assertEqual(CHAP, result['chap'])
        self.assertEqual([], self.tgtd.changes())
        self.assert_exported()
        self.assertEqual(conf_text(), self.conf())

    def test_unknown_live_secret_is_replaced_by_the_returned_one(self):
        # neither conf nor tgtd can say what CHAP's secret is: what the
        # export returns must be what tgtd checks
        self.export(chap=CHAP)
        os.unlink(self.path)
        self.forget_calls()
        result = self.export(chap=CHAP2)
        self.assertEqual(CHAP2, result['chap'])
        self.assert_exported(chap=CHAP2)
        self.assertEqual({CHAP2[0]: CHAP2[1]}, dict(self.tgtd.accounts))
        self.assertEqual(conf_text(chap=CHAP2), self.conf())

    def test_chap_added_to_a_live_target_without_account(self):
        self.export(chap=None)
        self.forget_calls()
        result = self.export(chap=CHAP)
        self.assertEqual(CHAP, result['chap'])
        self.assert_exported(chap=CHAP)
        self.assertEqual(conf_text(chap=CHAP), self.conf())

    def test_lost_target_recreated_from_conf(self):
        self.export(chap=CHAP, initiators=[A, B])
        self.tgtd.restart()
        self.forget_calls()
        result = self.export(chap=CHAP2, initiators=[C])
        self.assertEqual({'tid': 1, 'lun': 1, 'chap': CHAP,
                          'initiators': [A, B, C], 'changed': True}, result)
        self.assert_exported(initiators=[A, B, C])
        self.assertEqual({CHAP[0]: CHAP[1]}, dict(self.tgtd.accounts))
        self.assertEqual(conf_text(initiators=[A, B, C]), self.conf())

    def test_lun_on_another_device_refused(self):
        self.tgtd.add_target(2, IQN, device=OTHER_DEVICE,
                             addresses=[NOWHERE], names=[PLACEHOLDER])
        before = self.tgtd.state()
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn(OTHER_DEVICE, str(e))
        self.assertIn(DEVICE, str(e))
        self.assertEqual(before, self.tgtd.state())
        self.assertEqual([], self.tgtd.changes())
        self.assertIsNone(self.conf())

    def test_missing_lun_is_added(self):
        self.export()
        self.tgtd.run(['tgtadm', '--lld', 'iscsi', '--mode', 'logicalunit',
                       '--op', 'delete', '--tid', '1', '--lun', '1'])
        self.forget_calls()
        result = self.export()
        self.assertTrue(result['changed'])
        self.assertEqual(['logicalunit new', 'logicalunit update'],
                         self.tgtd.changes())
        self.assert_exported()

    def test_offline_target_brought_back(self):
        self.export()
        self.ours().state = 'offline'
        self.forget_calls()
        self.assertTrue(self.export()['changed'])
        self.assertEqual(['target update'], self.tgtd.changes())
        self.assert_exported()

    def test_missing_placeholders_bound_again(self):
        self.export()
        self.ours().addresses.remove(NOWHERE)
        self.ours().names.remove(PLACEHOLDER)
        self.forget_calls()
        self.export()
        self.assertEqual(['target bind', 'target bind'],
                         self.tgtd.changes())
        self.assertEqual(set([NOWHERE, PLACEHOLDER, A]),
                         set(self.ours().acls))

    @ddt.data('ALL', '192.0.2.0/24')
    def test_live_address_acl_refused(self, address):
        self.export()
        self.ours().addresses.append(address)
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn(address, e.message)
        self.assertIn('initiator-address', e.hint)
        # a live export is never torn down by a failed check
        self.assertIsNotNone(self.ours())

    @ddt.data('ALL', '192.0.2.0/24')
    def test_new_target_opened_by_address_rolled_back(self, address):
        # something (tgt-admin --update) binds an address meanwhile
        def before(argv):
            if '--initiator-address' in argv and self.ours():
                self.ours().addresses.append(address)
        self.tgtd.before = before
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn(address, e.message)
        self.assert_nothing_of_ours()

    def test_name_missing_after_bind_refused(self):
        def before(argv):
            if argv[-2:] == ['--op', 'show'] and self.ours():
                self.ours().names.remove(A)
        self.tgtd.before = before
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn('not active', e.message)
        self.assertIn(A, e.message)
        self.assert_nothing_of_ours()

    def test_tgtd_down(self):
        self.tgtd.down = True
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn('Is tgtd running?', e.hint)
        self.assertIn('Transport endpoint is not connected', e.stderr)
        self.assertIsNone(self.conf())

    def test_tgt_not_installed(self):
        self.executor.tools.clear()
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn('Install tgt', e.hint)


class PortalTestCase(TgtTestBase):
    """tgtd listens on every port of the driver's portals (multipath)."""

    def test_a_port_tgtd_does_not_serve_is_opened(self):
        result = self.export(ports=[3260, 3261])
        self.assertTrue(result['changed'])
        self.assertEqual([['tgtadm', '--lld', 'iscsi', '--mode', 'portal',
                           '--op', 'new', '--params', 'portal=0.0.0.0:3261']],
                         self.tgtd.calls_of('portal new'))
        self.assertIn(('0.0.0.0', 3261), self.tgtd.portals)
        # the default listeners serve 3260; both ports are recorded
        self.assertEqual(conf_text(ports=(3260, 3261)), self.conf())
        self.assertEqual([3260, 3261], tgt.conf_ports(self.conf()))

    def test_reexport_opens_nothing_twice(self):
        self.export(ports=[3260, 3261])
        self.forget_calls()
        self.assertFalse(self.export(ports=[3260, 3261])['changed'])
        self.assertEqual([], self.tgtd.calls_of('portal new'))

    def test_lost_listener_reopened_by_ensure_export(self):
        self.export(ports=[3260, 3261])
        self.tgtd.portals.remove(('0.0.0.0', 3261))
        self.assertTrue(self.export(ports=[3260, 3261])['changed'])
        self.assertIn(('0.0.0.0', 3261), self.tgtd.portals)

    def test_tgtd_restarted(self):
        self.export(ports=[3260, 3261])
        self.tgtd.restart()
        self.export(ports=[3260, 3261])
        self.assert_exported()
        self.assertIn(('0.0.0.0', 3261), self.tgtd.portals)

    def test_new_port_for_a_live_export(self):
        self.export()
        self.assertTrue(self.export(ports=[3260, 3261])['changed'])
        self.assertEqual(conf_text(ports=(3260, 3261)), self.conf())

    def test_port_served_on_one_address_left_alone(self):
        self.tgtd.portals.append(('192.0.2.7', 3261))
        self.export(ports=[3260, 3261])
        self.assertEqual([], self.tgtd.calls_of('portal new'))

    def test_port_taken_refused_before_anything_is_made(self):
        self.tgtd.taken_ports.add(3261)
        e = self.assertRaises(errors.TargetError, self.export,
                              ports=[3260, 3261])
        self.assertIn('portal=0.0.0.0:3261', e.message)
        self.assertIn('invalid request', e.stderr)
        self.assert_nothing_of_ours()

    def test_allow_and_deny_keep_the_ports(self):
        self.export(ports=[3260, 3261])
        self.backend.allow(NAME, IQN, B, CHAP)
        self.assertEqual(conf_text(initiators=(A, B), ports=(3260, 3261)),
                         self.conf())
        self.backend.deny(NAME, IQN, [A])
        self.assertEqual(conf_text(initiators=(B,), ports=(3260, 3261)),
                         self.conf())

    def test_parse_portals(self):
        self.assertEqual([('[::]', 3260), ('0.0.0.0', 3260),
                          ('0.0.0.0', 3261)], tgt.parse_portals(
            'Portal: [::]:3260,1\nPortal: 0.0.0.0:3260,1\n'
            'Portal: 0.0.0.0:3261,1\n'))


@ddt.ddt
class ExportRollbackTestCase(TgtTestBase):
    """A failing step leaves no target, no account, the old config."""

    STEPS = {
        'target new': '--mode target --op new',
        'lun new': '--mode logicalunit --op new',
        'lun params': '--params',
        'account new': '--mode account --op new',
        'account bind': '--mode account --op bind',
        'bind address': '--initiator-address',
        'bind placeholder': '--initiator-name ' + PLACEHOLDER,
        'bind initiator': '--initiator-name ' + B,
    }

    def setUp(self):
        super().setUp()
        # a neighbour that must survive every rollback
        self.tgtd.add_target(1, OTHER_IQN, device=OTHER_DEVICE,
                             addresses=[NOWHERE], names=[PLACEHOLDER, C],
                             accounts=[('neighbour', 'neighbourSECRET1')])
        self.neighbour = self.tgtd.state()

    def assert_neighbour_intact(self):
        state = self.tgtd.state()
        state.pop(IQN, None)
        self.assertEqual(self.neighbour, state)
        self.assertEqual('neighbourSECRET1', self.tgtd.accounts['neighbour'])

    @ddt.data(*sorted(STEPS))
    def test_fresh_export(self, step):
        self.tgtd.fail_next(self.STEPS[step], "tgtadm: can't find the target")
        e = self.assertRaises(errors.TargetError, self.export,
                              initiators=[A, B])
        self.assertIn("can't find the target", e.stderr)
        self.assert_nothing_of_ours(conf=None)
        self.assert_neighbour_intact()

    @ddt.data(*sorted(STEPS))
    def test_recreating_keeps_the_conf(self, step):
        old = conf_text(initiators=[A])
        self.write_conf(old)
        self.tgtd.fail_next(self.STEPS[step], 'tgtadm: invalid request')
        self.assertRaises(errors.TargetError, self.export, initiators=[B])
        self.assert_nothing_of_ours(conf=old)
        self.assert_neighbour_intact()

    def fail_rename_once(self):
        real = os.rename
        calls = []

        def rename(src, dst):
            calls.append(dst)
            if len(calls) == 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(src, dst)
        self.useFixture(fixtures.MockPatchObject(tgt.os, 'rename', rename))
        return calls

    def test_conf_write_fails(self):
        self.fail_rename_once()
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn('No space left on device', str(e))
        self.assertIn(self.path, e.message)
        self.assert_nothing_of_ours(conf=None)
        self.assert_neighbour_intact()

    def test_conf_write_fails_old_conf_kept(self):
        old = conf_text(initiators=[A])
        self.write_conf(old)
        self.fail_rename_once()
        self.assertRaises(errors.TargetError, self.export, initiators=[B])
        self.assert_nothing_of_ours(conf=old)

    def test_failed_check_restores_the_old_conf(self):
        old = conf_text(initiators=[A])
        self.write_conf(old)

        def before(argv):
            if '--initiator-address' in argv and self.ours():
                self.ours().addresses.append('ALL')
        self.tgtd.before = before
        self.assertRaises(errors.TargetError, self.export, initiators=[B])
        self.assert_nothing_of_ours(conf=old)

    def test_tid_taken_meanwhile_is_not_deleted(self):
        # another tool creates tid 2 between our show and our new
        def before(argv):
            if '--targetname' in argv and 2 not in self.tgtd.targets:
                self.tgtd.add_target(2, 'iqn.2010-10.org.example:foreign',
                                     device='/dev/sdz')
        self.tgtd.before = before
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn('this target already exists', e.stderr)
        self.assertEqual('iqn.2010-10.org.example:foreign',
                         self.tgtd.targets[2].iqn)
        self.assertEqual([], self.tgtd.calls_of('target delete'))
        self.assert_nothing_of_ours()

    def test_account_of_another_target_not_taken(self):
        self.tgtd.add_target(2, 'iqn.2010-10.org.example:foreign',
                             accounts=[(CHAP[0], 'foreignSECRET123')])
        e = self.assertRaises(errors.TargetError, self.export)
        self.assertIn('iqn.2010-10.org.example:foreign', e.message)
        self.assertEqual('foreignSECRET123', self.tgtd.accounts[CHAP[0]])
        self.assertEqual([CHAP[0]], self.tgtd.targets[2].accounts)
        self.assertEqual([], self.tgtd.calls_of('account delete'))
        self.assertIsNone(self.ours())

    def test_leftover_account_replaced(self):
        # an unbound account of that name has an unknown secret
        self.tgtd.accounts[CHAP[0]] = 'staleSTALE123456'
        self.export()
        self.assert_exported(tid=2)
        self.assertEqual(CHAP[1], self.tgtd.accounts[CHAP[0]])

    def test_failed_export_after_replacing_leftover_account(self):
        self.tgtd.accounts[CHAP[0]] = 'staleSTALE123456'
        self.tgtd.fail_next('--initiator-address')
        self.assertRaises(errors.TargetError, self.export)
        self.assert_nothing_of_ours()
        self.assert_neighbour_intact()

    def test_rollback_steps_that_fail_are_skipped(self):
        self.tgtd.fail_next('--initiator-address')
        self.tgtd.fail_next('--op delete --force', 'tgtadm: invalid request')
        e = self.assertRaises(errors.TargetError, self.export)
        # the first failure is reported; the account and conf are gone
        self.assertIn('--initiator-address', e.message)
        self.assertNotIn(CHAP[0], self.tgtd.accounts)
        self.assertIsNone(self.conf())


class SecretTestCase(TgtTestBase):
    """No message, stderr, hint or note carries a CHAP secret."""

    def assert_no_secret(self, error):
        texts = [str(error), error.message, error.stderr, error.hint,
                 json.dumps(error.to_dict())] + log.take_notes()
        for text in texts:
            self.assertNotIn(CHAP[1], text)
            self.assertNotIn(CHAP2[1], text)

    def test_account_new_fails(self):
        self.tgtd.fail_next('--mode account --op new')
        e = self.assertRaises(errors.TargetError, self.export)
        self.assert_no_secret(e)
        self.assertIn('--password *** failed', e.message)
        self.assertIn('--user %s' % CHAP[0], e.message)
        self.assertIn('invalid request', str(e))

    def test_tool_echoing_the_secret(self):
        self.tgtd.fail_next('--mode account --op new',
                            'tgtadm: bad password %s' % CHAP[1])
        e = self.assertRaises(errors.TargetError, self.export)
        self.assert_no_secret(e)
        self.assertIn('bad password ***', e.stderr)

    def test_replacing_an_account_fails(self):
        self.export()
        os.unlink(self.path)
        self.tgtd.fail_next('--mode account --op new')
        e = self.assertRaises(errors.TargetError, self.export, chap=CHAP2)
        self.assert_no_secret(e)

    def test_masked_forms(self):
        self.assertEqual('tgtadm --user u --password *** --password=***',
                         tgt._masked(['tgtadm', '--user', 'u', '--password',
                                      CHAP[1], '--password=' + CHAP2[1]]))


class RemoveTestCase(TgtTestBase):

    def test_remove(self):
        self.export()
        self.tgtd.add_session(1, A)
        self.forget_calls()
        self.assertEqual({'removed': True},
                         self.backend.remove(NAME, IQN))
        self.assertEqual(['target delete', 'account delete'],
                         self.tgtd.changes())
        self.assertIn('--force', self.tgtd.calls_of('target delete')[0])
        self.assertEqual({}, self.tgtd.targets)
        self.assertEqual({}, dict(self.tgtd.accounts))
        self.assertIsNone(self.conf())

    def test_remove_leaves_other_targets(self):
        self.tgtd.add_target(1, OTHER_IQN, device=OTHER_DEVICE,
                             accounts=[('neighbour', 'neighbourSECRET1')])
        self.export()
        self.backend.remove(NAME, IQN)
        self.assertEqual([OTHER_IQN], list(self.tgtd.state()))
        self.assertEqual(['neighbour'], list(self.tgtd.accounts))

    def test_account_shared_with_another_target_kept(self):
        self.export()
        self.tgtd.add_target(5, OTHER_IQN, accounts=[(CHAP[0], CHAP[1])])
        self.backend.remove(NAME, IQN)
        self.assertIsNone(self.ours())
        self.assertEqual([CHAP[0]], self.tgtd.targets[5].accounts)
        self.assertIn(CHAP[0], self.tgtd.accounts)

    def test_target_already_gone(self):
        self.export()
        del self.tgtd.targets[1]    # lost the target, not the account
        self.forget_calls()
        self.assertEqual({'removed': False},
                         self.backend.remove(NAME, IQN))
        self.assertEqual(['account delete'], self.tgtd.changes())
        self.assertEqual({}, dict(self.tgtd.accounts))
        self.assertIsNone(self.conf())

    def test_nothing_left(self):
        self.export()
        self.tgtd.restart()
        self.assertEqual({'removed': False},
                         self.backend.remove(NAME, IQN))
        self.assertIsNone(self.conf())
        # and once more, with nothing at all
        self.assertEqual({'removed': False},
                         self.backend.remove(NAME, IQN))

    def test_target_vanishing_meanwhile_tolerated(self):
        self.export()
        self.tgtd.fail_next('--mode target --op delete',
                            "tgtadm: can't find the target")
        self.backend.remove(NAME, IQN)
        self.assertEqual({}, dict(self.tgtd.accounts))
        self.assertIsNone(self.conf())

    def test_tgtd_down(self):
        self.export()
        self.tgtd.down = True
        e = self.assertRaises(errors.TargetError, self.backend.remove,
                              NAME, IQN)
        self.assertEqual('Is tgtd running? systemctl start tgt', e.hint)
        self.assertEqual(conf_text(), self.conf())

    def test_delete_refused_keeps_conf(self):
        self.export()
        self.tgtd.fail_next('--mode target --op delete',
                            'tgtadm: this logical unit is still active')
        self.assertRaises(errors.TargetError, self.backend.remove, NAME, IQN)
        self.assert_exported()
        self.assertEqual(conf_text(), self.conf())


class AllowTestCase(TgtTestBase):

    def test_allow(self):
        self.export()
        self.forget_calls()
        result = self.backend.allow(NAME, IQN, B, CHAP)
        self.assertEqual({'initiators': [A, B]}, result)
        self.assertEqual(['target bind'], self.tgtd.changes())
        self.assert_exported(initiators=[A, B])
        self.assertEqual(conf_text(initiators=[A, B]), self.conf())

    def test_allow_again(self):
        self.export()
        inode = self.inode()
        result = self.backend.allow(NAME, IQN, A, CHAP)
        self.assertEqual({'initiators': [A]}, result)
        self.assert_exported(initiators=[A])
        self.assertEqual(inode, self.inode())

    def test_allow_live_only_initiator_recorded(self):
        self.export()
        self.ours().names.append(B)
        self.backend.allow(NAME, IQN, B, CHAP)
        self.assertEqual(conf_text(initiators=[A, B]), self.conf())

    def test_not_exported(self):
        e = self.assertRaises(errors.NotFound, self.backend.allow,
                              NAME, IQN, A, CHAP)
        self.assertIn('not exported', e.message)
        self.assertEqual([], self.tgtd.changes())
        self.assertIsNone(self.conf())

    def test_tgtd_lost_the_target(self):
        self.export()
        self.tgtd.restart()
        e = self.assertRaises(errors.NotFound, self.backend.allow,
                              NAME, IQN, B, CHAP)
        self.assertIn('tgtd lost target', e.message)
        self.assertIn('ensure_export', e.message)
        self.assertEqual(conf_text(), self.conf())

    def test_without_conf_nothing_half_known_is_written(self):
        self.export()
        os.unlink(self.path)
        result = self.backend.allow(NAME, IQN, B, CHAP)
        self.assertEqual([B], result['initiators'])
        self.assert_exported(initiators=[A, B])
        self.assertIsNone(self.conf())

    def test_address_acl_refused(self):
        self.export()
        self.ours().addresses.append('ALL')
        self.assertRaises(errors.TargetError, self.backend.allow,
                          NAME, IQN, B, CHAP)


class DenyTestCase(TgtTestBase):

    def test_deny_some(self):
        self.export(initiators=[A, B, C])
        self.forget_calls()
        result = self.backend.deny(NAME, IQN, [A, C])
        self.assertEqual({'initiators': [B]}, result)
        self.assertEqual(['target unbind', 'target unbind'],
                         self.tgtd.changes())
        self.assert_exported(initiators=[B])
        self.assertEqual(conf_text(initiators=[B]), self.conf())

    def test_deny_all_keeps_the_placeholders(self):
        self.export(initiators=[A, B])
        self.ours().names.append(C)     # bound by hand, not recorded
        result = self.backend.deny(NAME, IQN, None)
        self.assertEqual({'initiators': []}, result)
        self.assertEqual([NOWHERE, PLACEHOLDER], self.ours().acls)
        self.assertEqual([CHAP[0]], self.ours().accounts)
        self.assertEqual(conf_text(initiators=[]), self.conf())

    def test_deny_placeholder_ignored(self):
        self.export()
        self.backend.deny(NAME, IQN, [PLACEHOLDER])
        self.assert_exported()
        self.assertEqual([], self.tgtd.calls_of('target unbind'))

    def test_deny_unknown_initiator(self):
        self.export()
        inode = self.inode()
        self.assertEqual({'initiators': [A]},
                         self.backend.deny(NAME, IQN, [B]))
        self.assert_exported()
        self.assertEqual(inode, self.inode())

    def test_deny_when_tgtd_lost_the_target(self):
        self.export(initiators=[A, B])
        self.tgtd.restart()
        self.forget_calls()
        self.assertEqual({'initiators': [B]},
                         self.backend.deny(NAME, IQN, [A]))
        self.assertEqual([], self.tgtd.changes())
        self.assertEqual(conf_text(initiators=[B]), self.conf())

    def test_deny_not_exported(self):
        self.assertEqual({'initiators': []},
                         self.backend.deny(NAME, IQN, None))
        self.assertIsNone(self.conf())


class ResizeTestCase(TgtTestBase):

    def setUp(self):
        super().setUp()
        self.export()
        self.tgtd.add_session(1, A)
        self.tgtd.devices[DEVICE] = 2 * GiB     # zfs set volsize=2G
        self.forget_calls()

    def size_shown(self):
        for line in self.tgtd.show().splitlines():
            if line.strip().startswith('Size:'):
                size = line
        return size.split(':', 1)[1].split(',')[0].strip()

    def states(self):
        return [argv[-1] for argv in self.tgtd.calls_of('target update')]

    def test_resize(self):
        self.assertEqual('1074 MB', self.size_shown())
        self.assertEqual({'changed': True, 'connections_closed': 1},
                         self.backend.resize(NAME, IQN, DEVICE, SERIAL))
        # offline first (no new login can see the LUN gone), then the
        # initiator's connection closed (its commands are requeued by its
        # session recovery, never failed by a missing LUN), then the swap
        self.assertEqual(['target update', 'conn delete',
                          'logicalunit delete', 'logicalunit new',
                          'logicalunit update', 'target update'],
                         self.tgtd.changes())
        self.assertEqual(['offline', 'ready'], self.states())
        self.assertEqual([(1, A)], self.tgtd.closed)
        self.assertEqual('2147 MB', self.size_shown())
        self.assert_exported()

    def test_resize_without_sessions_closes_nothing(self):
        self.ours().sessions.clear()
        self.assertEqual({'changed': True, 'connections_closed': 0},
                         self.backend.resize(NAME, IQN, DEVICE, SERIAL))
        self.assertEqual([], self.tgtd.calls_of('conn delete'))
        self.assertEqual('2147 MB', self.size_shown())

    def test_resize_session_gone_meanwhile(self):
        # the initiator logged out between show and close: not an error
        self.tgtd.fail_next('--mode conn --op delete',
                            "tgtadm: can't find the session")
        self.backend.resize(NAME, IQN, DEVICE, SERIAL)
        self.assertEqual('2147 MB', self.size_shown())
        self.assert_exported()

    def test_lun_delete_retried_while_active(self):
        self.tgtd.set_busy(1, 1, 3)
        self.backend.resize(NAME, IQN, DEVICE, SERIAL)
        self.assertEqual(4, len(self.tgtd.calls_of('logicalunit delete')))
        self.assertEqual(3, self.sleep.call_count)
        self.assertEqual('2147 MB', self.size_shown())
        self.assert_exported()

    def test_lun_active_for_good(self):
        self.tgtd.set_busy(1, 1, 10 ** 6)
        e = self.assertRaises(errors.TargetError, self.backend.resize,
                              NAME, IQN, DEVICE, SERIAL)
        self.assertIn('still active', e.stderr)
        self.assertEqual(tgt.LUN_DELETE_ATTEMPTS,
                         len(self.tgtd.calls_of('logicalunit delete')))
        self.assertEqual([], self.tgtd.calls_of('logicalunit new'))
        self.assertEqual(['offline', 'ready'], self.states())
        self.assertEqual('1074 MB', self.size_shown())
        self.assert_exported()

    def test_other_error_not_retried(self):
        self.tgtd.fail_next('--mode logicalunit --op delete')
        self.assertRaises(errors.TargetError, self.backend.resize,
                          NAME, IQN, DEVICE, SERIAL)
        self.assertEqual(1, len(self.tgtd.calls_of('logicalunit delete')))
        self.assertEqual('ready', self.ours().state)

    def test_ready_restored_when_readding_fails(self):
        self.tgtd.unopenable.add(DEVICE)
        e = self.assertRaises(errors.TargetError, self.backend.resize,
                              NAME, IQN, DEVICE, SERIAL)
        self.assertIn('invalid request', e.stderr)
        self.assertEqual(['offline', 'ready'], self.states())
        self.assertEqual('ready', self.ours().state)
        self.assertNotIn(1, self.ours().luns)
        # the next export (ensure_export) puts the LUN back
        self.tgtd.unopenable.clear()
        self.assertTrue(self.export()['changed'])
        self.assert_exported()
        # and so does the next resize
        self.ours().luns.pop(1)
        self.backend.resize(NAME, IQN, DEVICE, SERIAL)
        self.assert_exported()

    def test_first_error_kept_when_ready_fails_too(self):
        self.tgtd.fail_next('--params', 'tgtadm: unknown parameter')
        self.tgtd.fail_next('--value ready', 'tgtadm: invalid request')
        e = self.assertRaises(errors.TargetError, self.backend.resize,
                              NAME, IQN, DEVICE, SERIAL)
        self.assertIn('unknown parameter', e.stderr)
        self.assertEqual(['offline', 'ready'], self.states())

    def test_offline_refused(self):
        self.tgtd.fail_next('--value offline')
        self.assertRaises(errors.TargetError, self.backend.resize,
                          NAME, IQN, DEVICE, SERIAL)
        self.assertEqual(['target update'], self.tgtd.changes())
        self.assertEqual('1074 MB', self.size_shown())

    def test_not_exported(self):
        self.tgtd.restart()
        self.assertEqual({'changed': False},
                         self.backend.resize(NAME, IQN, DEVICE, SERIAL))
        self.assertEqual([], self.tgtd.changes())

    def test_other_device_refused(self):
        e = self.assertRaises(errors.TargetError, self.backend.resize,
                              NAME, IQN, OTHER_DEVICE, SERIAL)
        self.assertIn(DEVICE, str(e))
        self.assertEqual([], self.tgtd.changes())
        self.assert_exported()


class ShowTestCase(TgtTestBase):

    def test_show(self):
        self.export(initiators=[A, B])
        self.assertEqual({'exists': True, 'device': DEVICE,
                          'initiators': [A, B],
                          'recorded_initiators': [A, B],
                          'chap_user': CHAP[0]},
                         self.backend.show(NAME, IQN))

    def test_show_not_exported(self):
        self.assertEqual({'exists': False, 'device': None,
                          'initiators': [], 'recorded_initiators': [],
                          'chap_user': None},
                         self.backend.show(NAME, IQN))

    def test_show_lost_lun(self):
        self.export()
        self.ours().luns.pop(1)
        result = self.backend.show(NAME, IQN)
        self.assertFalse(result['exists'])
        self.assertEqual(CHAP[0], result['chap_user'])

    def test_version(self):
        self.assertEqual({'helper': 'tgtadm'}, self.backend.version())
        self.tgtd.down = True
        e = self.assertRaises(errors.TargetError, self.backend.version)
        self.assertIn('tgtd running', e.hint)


class ParseShowTestCase(testtools.TestCase):

    def test_lab_output(self):
        targets = tgt.parse_show(LAB_SHOW)
        self.assertEqual({IQN: {
            'tid': 1, 'state': 'ready', 'sessions': False,
            'connections': [],
            'luns': {0: 'None', 1: DEVICE}, 'accounts': ['userabcdefghij'],
            'acls': [NOWHERE, PLACEHOLDER,
                     'iqn.2026-11.org.cinder-zol:try']}}, targets)

    def test_fake_prints_what_tgtadm_prints(self):
        tgtd = fake_tgtd.FakeTgtd()
        run = (lambda *a: tgtd.run(['tgtadm', '--lld', 'iscsi'] + list(a)))
        run('--mode', 'target', '--op', 'new', '--tid', '1',
            '--targetname', IQN)
        run('--mode', 'logicalunit', '--op', 'new', '--tid', '1', '--lun',
            '1', '--backing-store', DEVICE)
        run('--mode', 'logicalunit', '--op', 'update', '--tid', '1',
            '--lun', '1', '--params',
            'scsi_id=%s,scsi_sn=%s' % (SERIAL, SERIAL))
        run('--mode', 'account', '--op', 'new', '--user', 'userabcdefghij',
            '--password', 'x' * 16)
        run('--mode', 'account', '--op', 'bind', '--tid', '1', '--user',
            'userabcdefghij')
        for option, value in (('--initiator-name', PLACEHOLDER),
                              ('--initiator-address', NOWHERE),
                              ('--initiator-name',
                               'iqn.2026-11.org.cinder-zol:try')):
            run('--mode', 'target', '--op', 'bind', '--tid', '1', option,
                value)
        done = run('--mode', 'target', '--op', 'show')
        self.assertEqual((0, LAB_SHOW, ''),
                         (done.returncode, done.stdout, done.stderr))

    def test_sessions_and_several_targets(self):
        tgtd = fake_tgtd.FakeTgtd()
        tgtd.add_target(1, IQN, device=DEVICE, names=[A])
        tgtd.add_target(2, OTHER_IQN, device=OTHER_DEVICE,
                        accounts=[('u1', 'p' * 16), ('u2', 'q' * 16)])
        tgtd.add_session(1, A, address='192.0.2.7', alias='compute1')
        text = tgtd.show()
        self.assertIn('    I_T nexus information:\n'
                      '        I_T nexus: 1\n'
                      '            Initiator: %s alias: compute1\n'
                      '            Connection: 0\n'
                      '                IP Address: 192.0.2.7\n'
                      '    LUN information:\n' % A, text)
        targets = tgt.parse_show(text)
        self.assertEqual([('1', '0')], targets[IQN]['connections'])
        self.assertEqual((1, True, [A], []),
                         (targets[IQN]['tid'], targets[IQN]['sessions'],
                          targets[IQN]['acls'], targets[IQN]['accounts']))
        self.assertEqual((2, False, ['u1', 'u2'], OTHER_DEVICE),
                         (targets[OTHER_IQN]['tid'],
                          targets[OTHER_IQN]['sessions'],
                          targets[OTHER_IQN]['accounts'],
                          targets[OTHER_IQN]['luns'][1]))

    def test_outgoing_account_is_not_ours(self):
        text = LAB_SHOW.replace('        userabcdefghij\n',
                                '        userabcdefghij\n'
                                '        mutual (outgoing)\n')
        self.assertEqual(['userabcdefghij'],
                         tgt.parse_show(text)[IQN]['accounts'])

    def test_nothing(self):
        self.assertEqual({}, tgt.parse_show(''))


@ddt.ddt
class FakeTgtdTestCase(testtools.TestCase):
    """The fake refuses what tgtadm/tgtd refuse, with their words."""

    def setUp(self):
        super().setUp()
        self.tgtd = fake_tgtd.FakeTgtd()
        self.tgtd.add_target(1, IQN, device=DEVICE, names=[A],
                             accounts=[(CHAP[0], CHAP[1])])
        self.tgtd.add_target(2, OTHER_IQN, accounts=[(CHAP[0], CHAP[1])])

    def run_tgtadm(self, line):
        return self.tgtd.run(['tgtadm', '--lld', 'iscsi'] + line.split())

    @ddt.data(
        ('--mode target --op new --tid 1 --targetname iqn.x:y',
         'this target already exists'),
        ('--mode target --op new --tid 3 --targetname ' + IQN,
         'this target already exists'),
        ('--mode target --op new --tid 3 --targetname iqn.x:y;id',
         'invalid request'),
        ('--mode target --op delete --tid 9', "can't find the target"),
        ('--mode target --op bind --tid 1 --initiator-name ' + A,
         'this access control rule already exists'),
        ('--mode target --op unbind --tid 1 --initiator-name ' + B,
         'this access control rule does not exist'),
        ('--mode target --op update --tid 1 --name state --value up',
         'invalid request'),
        ('--mode logicalunit --op new --tid 1 --lun 1 --backing-store /x',
         'this logical unit number already exists'),
        ('--mode logicalunit --op delete --tid 1 --lun 7',
         "can't find the logical unit"),
        ('--mode logicalunit --op delete --tid 1 --lun 0',
         'invalid request'),
        ('--mode logicalunit --op update --tid 1 --lun 1 --params x=1',
         'invalid request'),
        ('--mode account --op new --user %s --password p' % CHAP[0],
         'this account already exists'),
        ('--mode account --op bind --tid 1 --user nobody',
         "can't find the account"),
        ('--mode account --op bind --tid 1 --user ' + CHAP[0],
         'this account already exists'),
        ('--mode account --op delete --user nobody',
         "can't find the account"),
        ('--mode target --op bind --tid 1', 'initiator-address'),
        ('--mode target --op delete', "'tid' option is necessary"),
        ('--mode logicalunit --op delete --tid 1 --lun 1 --force',
         "option '-F' is not allowed"),
        ('--mode account --op new --user u', "'user' and 'password'"))
    @ddt.unpack
    def test_refusals(self, line, text):
        before = self.tgtd.state()
        done = self.run_tgtadm(line)
        self.assertEqual(22, done.returncode)
        self.assertTrue(done.stderr.startswith('tgtadm: '), done.stderr)
        self.assertIn(text, done.stderr)
        self.assertEqual(before, self.tgtd.state())

    def test_account_delete_unbinds_everywhere(self):
        self.assertEqual(0, self.run_tgtadm(
            '--mode account --op delete --user ' + CHAP[0]).returncode)
        self.assertEqual([[], []], [t.accounts for t in
                                    self.tgtd.targets.values()])
        self.assertEqual('', self.run_tgtadm(
            '--mode account --op show').stdout)

    def test_target_with_sessions_needs_force(self):
        self.tgtd.add_session(1, A)
        done = self.run_tgtadm('--mode target --op delete --tid 1')
        self.assertIn('this target is still active', done.stderr)
        self.assertIn(1, self.tgtd.targets)
        self.assertEqual(0, self.run_tgtadm(
            '--mode target --op delete --force --tid 1').returncode)
        self.assertNotIn(1, self.tgtd.targets)
        # its account stays (accounts are global)
        self.assertIn(CHAP[0], self.tgtd.accounts)

    def test_busy_lun(self):
        self.tgtd.set_busy(1, 1, 2)
        line = '--mode logicalunit --op delete --tid 1 --lun 1'
        for _ in range(2):
            self.assertEqual('tgtadm: this logical unit is still active\n',
                             self.run_tgtadm(line).stderr)
        self.assertEqual(0, self.run_tgtadm(line).returncode)
        self.assertNotIn(1, self.tgtd.targets[1].luns)

    def test_down(self):
        self.tgtd.down = True
        done = self.run_tgtadm('--mode target --op show')
        self.assertEqual((107, fake_tgtd.DOWN), (done.returncode,
                                                 done.stderr))

    def test_fail_next_once_and_only_matching(self):
        self.tgtd.fail_next('--op bind', 'tgtadm: out of memory')
        self.assertEqual(0, self.run_tgtadm(
            '--mode target --op show').returncode)
        done = self.run_tgtadm('--mode target --op bind --tid 1 '
                               '--initiator-name ' + B)
        self.assertEqual('tgtadm: out of memory\n', done.stderr)
        self.assertEqual([A], self.tgtd.targets[1].acls)
        self.assertEqual(0, self.run_tgtadm(
            '--mode target --op bind --tid 1 --initiator-name ' +
            B).returncode)
        self.assertEqual([A, B], self.tgtd.targets[1].acls)
        self.assertEqual(['target show', 'target bind', 'target bind'],
                         self.tgtd.ops())
