"""The LIO target backend (cinder_zol.host.root.lio) against an in-memory
rtslib_fb (tests.unit.fake_rtslib): what each operation leaves in the LIO
configuration, what it saves, and how it fails."""

import sys
from unittest import mock

import ddt
import testtools

from cinder_zol.host import errors
from cinder_zol.host.root import backend
from cinder_zol.host.root import lio
from tests.unit import fake_rtslib

NAME = 'volume-a'
IQN = 'iqn.2010-10.org.openstack:volume-a'
DEVICE = '/dev/zvol/tank/cinder/volume-a'
SERIAL = '0123abcd-0000-1111-2222-333344445555'
PORT = 3260
CHAP = ('user0123456789abcdef', 'secret0123456789')
OTHER_CHAP = ('other0123456789abcd', 'othersecret0123456')
INIT_A = 'iqn.1993-08.org.debian:01:a'
INIT_B = 'iqn.1993-08.org.debian:01:b'
SO_PATH = '/backstores/block/' + NAME

_REAL_RTSLIB = lio._rtslib


@ddt.ddt
class LioBackendTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.rts = fake_rtslib.FakeRtslib()
        patcher = mock.patch.object(lio, '_rtslib', return_value=self.rts)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.backend = lio.Backend(executor=None)

    # -- helpers ---------------------------------------------------------

    def export(self, chap=CHAP, initiators=(INIT_A,), iqn=IQN,
               device=DEVICE, ports=(PORT,)):
        return self.backend.export(NAME, iqn, device, chap,
                                   list(initiators), list(ports), SERIAL)

    def portals(self, iqn=IQN):
        return sorted((p['ip_address'], p['port'])
                      for p in self.tpg(iqn)['portals'])

    def tpg(self, iqn=IQN):
        target = self.rts.target(iqn)
        self.assertIsNotNone(target, 'no target %s' % iqn)
        self.assertEqual(1, len(target['tpgs']))
        return target['tpgs'][0]

    def acls(self, iqn=IQN):
        return {acl['node_wwn']: acl for acl in self.tpg(iqn)['node_acls']}

    def live_tpg(self, iqn=IQN):
        """The TPG as an rtslib object, to change it behind the backend."""
        root = self.rts.RTSRoot()
        target = next(t for t in root.targets if t.wwn == iqn.lower())
        return next(iter(target.tpgs))

    def assertRaisesHostError(self, cls, func, *args, **kwargs):
        e = self.assertRaises(errors.HostError, func, *args, **kwargs)
        self.assertIsInstance(e, cls)
        self.assertEqual(cls.kind, e.to_dict()['kind'])
        return e

    # -- export ------------------------------------------------------------

    def test_new_export_with_chap(self):
        result = self.export()

        self.assertEqual({'tid': 1, 'lun': 0, 'chap': list(CHAP),
                          'changed': True, 'initiators': [INIT_A]}, result)
        self.assertEqual([{'name': NAME, 'plugin': 'block', 'dev': DEVICE,
                           'wwn': SERIAL, 'readonly': False,
                           'write_back': False}],
                         self.rts.dump()['storage_objects'])
        targets = self.rts.dump()['targets']
        self.assertEqual([IQN], [t['wwn'] for t in targets])
        tpg = self.tpg()
        self.assertEqual(1, tpg['tag'])
        self.assertTrue(tpg['enable'])
        self.assertEqual('0', tpg['attributes']['generate_node_acls'])
        self.assertEqual('1', tpg['attributes']['authentication'])
        self.assertEqual([('0.0.0.0', PORT)],
                         [(p['ip_address'], p['port'])
                          for p in tpg['portals']])
        self.assertEqual([(0, SO_PATH)], [(lun['index'],
                                           lun['storage_object'])
                                          for lun in tpg['luns']])
        acl = self.acls()[INIT_A]
        self.assertEqual(CHAP, (acl['chap_userid'], acl['chap_password']))
        self.assertEqual([(0, 0)], [(m['index'], m['tpg_lun'])
                                    for m in acl['mapped_luns']])
        self.assertEqual([INIT_A], list(self.acls()))
        # saved once, after everything was in place
        self.assertEqual(1, len(self.rts.saves))
        self.assertEqual('/etc/target/saveconfig.json', self.rts.saves[0][0])
        self.assertEqual(self.rts.dump(), self.rts.saved)

    # -- portals (multipath) ---------------------------------------------

    def test_a_portal_per_port(self):
        self.export(ports=[PORT, 3261])
        self.assertEqual([('0.0.0.0', PORT), ('0.0.0.0', 3261)],
                         self.portals())
        self.assertEqual(self.rts.dump(), self.rts.saved)

    def test_reexport_adds_a_new_port_only(self):
        self.export()
        result = self.export(ports=[PORT, 3261])
        self.assertTrue(result['changed'])
        self.assertEqual([('0.0.0.0', PORT), ('0.0.0.0', 3261)],
                         self.portals())
        self.assertEqual(2, len(self.rts.saves))
        again = self.export(ports=[PORT, 3261])
        self.assertFalse(again['changed'])
        self.assertEqual(2, len(self.rts.saves))

    def test_lost_portal_comes_back(self):
        self.export(ports=[PORT, 3261])
        next(p for p in self.live_tpg().network_portals
             if p.port == 3261).delete()
        self.assertTrue(self.export(ports=[PORT, 3261])['changed'])
        self.assertEqual([('0.0.0.0', PORT), ('0.0.0.0', 3261)],
                         self.portals())

    def test_port_served_on_another_address_left_alone(self):
        self.export()
        self.rts.NetworkPortal(self.live_tpg(), '192.0.2.7', 3261)
        self.export(ports=[PORT, 3261])
        self.assertEqual([('0.0.0.0', PORT), ('192.0.2.7', 3261)],
                         self.portals())

    def test_failed_second_portal_undoes_the_export(self):
        self.export()
        before = self.rts.dump()
        self.rts.fail('NetworkPortal', 'Could not create NetworkPortal in '
                      'configFS')
        e = self.assertRaisesHostError(errors.TargetError, self.export,
                                       ports=[PORT, 3261])
        self.assertIn('Could not create NetworkPortal', e.stderr)
        self.assertEqual(before, self.rts.dump())

    def test_new_export_without_chap(self):
        result = self.export(chap=None, initiators=[INIT_A, INIT_B])

        self.assertIsNone(result['chap'])
        self.assertEqual([INIT_A, INIT_B], result['initiators'])
        tpg = self.tpg()
        self.assertEqual('0', tpg['attributes']['authentication'])
        self.assertEqual('0', tpg['attributes']['generate_node_acls'])
        for initiator in (INIT_A, INIT_B):
            acl = self.acls()[initiator]
            self.assertNotIn('chap_userid', acl)
            self.assertNotIn('chap_password', acl)
            self.assertEqual([0], [m['tpg_lun'] for m in acl['mapped_luns']])
        self.assertEqual(1, len(self.rts.saves))

    def test_export_without_initiators(self):
        result = self.export(initiators=())

        self.assertEqual([], result['initiators'])
        self.assertEqual(0, result['lun'])
        self.assertEqual({}, self.acls())
        self.assertEqual(1, len(self.tpg()['luns']))
        self.assertEqual(1, len(self.rts.saves))

    def test_reexport_is_idempotent(self):
        first = self.export()
        before = self.rts.dump()
        created = list(self.rts.created)

        second = self.export()

        self.assertEqual(dict(first, changed=False), second)
        self.assertEqual(before, self.rts.dump())
        self.assertEqual(created, self.rts.created)
        self.assertEqual([], self.rts.deleted)
        self.assertEqual(1, len(self.rts.saves))

    def test_export_again_after_config_cleared_elsewhere(self):
        # The root helper is one long-lived process: rtslib-fb's backstore
        # cache must not outlive a clearconfig done by another process
        # (the lab saw "Storage object block/<name> exists" here).
        first = self.export()
        self.rts.clear_elsewhere()
        self.assertIsNone(self.rts.target(IQN))

        again = self.export()

        self.assertTrue(again['changed'])
        self.assertEqual(first['chap'], again['chap'])
        self.assertIsNotNone(self.rts.storage_object(NAME))
        self.assertIn(INIT_A, self.acls())

    def test_first_exports_chap_wins(self):
        self.export()

        result = self.export(chap=OTHER_CHAP, initiators=[INIT_B])

        self.assertEqual(list(CHAP), result['chap'])
        self.assertEqual([INIT_A, INIT_B], result['initiators'])
        for acl in self.acls().values():
            self.assertEqual(CHAP, (acl['chap_userid'],
                                    acl['chap_password']))
        self.assertEqual('1', self.tpg()['attributes']['authentication'])

    def test_reexport_without_chap_keeps_the_exports_chap(self):
        # a proposal without CHAP must not switch authentication off
        self.export()

        result = self.export(chap=None, initiators=[INIT_B])

        self.assertEqual(list(CHAP), result['chap'])
        self.assertEqual('1', self.tpg()['attributes']['authentication'])
        acl = self.acls()[INIT_B]
        self.assertEqual(CHAP, (acl['chap_userid'], acl['chap_password']))

    def test_export_without_chap_stays_without(self):
        # its initiators log in without CHAP: a later proposal changes
        # nothing for them
        self.export(chap=None)

        result = self.export(chap=CHAP, initiators=[INIT_B])

        self.assertIsNone(result['chap'])
        self.assertEqual('0', self.tpg()['attributes']['authentication'])
        self.assertNotIn('chap_userid', self.acls()[INIT_B])
        self.assertNotIn('chap_userid', self.acls()[INIT_A])

    def test_export_after_all_denied_takes_the_proposal(self):
        self.export(chap=CHAP)
        self.backend.deny(NAME, IQN, None)

        result = self.export(chap=OTHER_CHAP, initiators=[INIT_B])

        self.assertEqual(list(OTHER_CHAP), result['chap'])
        acl = self.acls()[INIT_B]
        self.assertEqual(OTHER_CHAP, (acl['chap_userid'],
                                      acl['chap_password']))

    def test_extra_initiator_added_on_reexport(self):
        self.export()
        created = len(self.rts.created)

        result = self.export(initiators=[INIT_A, INIT_B])

        self.assertTrue(result['changed'])
        self.assertEqual([INIT_A, INIT_B], result['initiators'])
        acl = self.acls()[INIT_B]
        self.assertEqual(CHAP, (acl['chap_userid'], acl['chap_password']))
        self.assertEqual([(0, 0)], [(m['index'], m['tpg_lun'])
                                    for m in acl['mapped_luns']])
        self.assertEqual(
            [('NodeACL', INIT_B), ('MappedLUN', 'lun_0')],
            [(kind, path.rsplit('/', 1)[1])
             for kind, path in self.rts.created[created:]])
        self.assertEqual(2, len(self.rts.saves))
        self.assertEqual(self.rts.dump(), self.rts.saved)

    def test_initiator_names_are_matched_case_insensitively(self):
        self.export()

        result = self.export(initiators=[INIT_A.upper()])

        self.assertFalse(result['changed'])
        self.assertEqual([INIT_A], list(self.acls()))
        self.assertEqual(1, len(self.rts.saves))

    def test_target_iqn_in_upper_case(self):
        # rtslib keeps target WWNs in lower case
        iqn = 'iqn.2010-10.org.OpenStack:Volume-A'
        self.export(iqn=iqn)

        again = self.export(iqn=iqn)
        self.assertFalse(again['changed'])
        self.assertEqual(1, len(self.rts.dump()['targets']))
        self.assertEqual(1, len(self.rts.saves))
        self.assertTrue(self.backend.show(NAME, iqn)['exists'])

        self.assertEqual({'removed': True}, self.backend.remove(NAME, iqn))
        self.assertEqual([], self.rts.dump()['targets'])
        self.assertEqual([], self.rts.saved['targets'])

    def test_disabled_tpg_is_enabled_and_saved(self):
        self.export()
        self.live_tpg().enable = False

        result = self.export()

        self.assertTrue(result['changed'])
        self.assertTrue(self.tpg()['enable'])
        self.assertEqual(2, len(self.rts.saves))
        self.assertTrue(self.rts.saved['targets'][0]['tpgs'][0]['enable'])

    def test_existing_backstore_on_the_device_is_reused(self):
        self.rts.BlockStorageObject(NAME, dev=DEVICE, wwn=SERIAL)

        result = self.export()

        self.assertTrue(result['changed'])
        self.assertEqual(0, result['lun'])
        self.assertEqual(1, len(self.rts.dump()['storage_objects']))
        self.assertEqual([(0, SO_PATH)], [(lun['index'],
                                           lun['storage_object'])
                                          for lun in self.tpg()['luns']])

    def test_backstore_existing_for_another_device(self):
        self.rts.BlockStorageObject(NAME, dev='/dev/zd0', wwn=SERIAL)
        before = self.rts.dump()

        e = self.assertRaisesHostError(errors.TargetError, self.export)

        self.assertIn('/dev/zd0', e.message)
        self.assertIn(DEVICE, e.message)
        self.assertEqual(before, self.rts.dump())
        self.assertEqual([], self.rts.saves)

    def test_export_waits_for_udev_to_know_the_device(self):
        # the /dev/zvol link is there, udev's record of the disk not yet
        self.rts.udev_late[DEVICE] = 30
        self.backend.executor = mock.Mock()
        clock = iter(range(0, 1000, 1))
        with mock.patch.object(backend.time, 'monotonic',
                               side_effect=lambda: next(clock) / 10.0), \
                mock.patch.object(backend.time, 'sleep'):
            result = self.export()

        self.assertEqual(0, result['lun'])
        self.assertEqual(0, self.rts.udev_late[DEVICE])
        self.backend.executor.run.assert_called_once_with(
            ['udevadm', 'settle', '--timeout=10'])

    def test_device_udev_never_knows_fails_with_rtslibs_message(self):
        self.rts.udev_late[DEVICE] = 10 ** 6
        self.backend.executor = mock.Mock()
        clock = iter(range(0, 10 ** 6))
        with mock.patch.object(backend.time, 'monotonic',
                               side_effect=lambda: float(next(clock))), \
                mock.patch.object(backend.time, 'sleep'):
            e = self.assertRaisesHostError(errors.TargetError, self.export)

        self.assertIn('Device %s is not a TYPE_DISK block device' % DEVICE,
                      e.stderr)
        self.assertEqual({'storage_objects': [], 'targets': [],
                          'fabric_modules': []}, self.rts.dump())
        self.assertEqual([], self.rts.saves)

    def test_device_held_by_another_backstore(self):
        self.rts.BlockStorageObject('volume-old', dev=DEVICE)
        before = self.rts.dump()

        e = self.assertRaisesHostError(errors.TargetError, self.export)

        self.assertIn('Cannot configure StorageObject because device %s is '
                      'already in use' % DEVICE, e.stderr)
        self.assertEqual(before, self.rts.dump())
        self.assertEqual([], self.rts.saves)

    @ddt.data('BlockStorageObject', 'Target', 'TPG', 'set_attribute',
              'NetworkPortal', 'LUN', 'NodeACL', 'MappedLUN', 'save_to_file')
    def test_failed_new_export_undoes_everything(self, what):
        self.rts.fail(what, 'kaboom in %s' % what)
        # a new TPG already has authentication=1: only its switch to 0
        # writes an attribute
        chap = None if what == 'set_attribute' else CHAP

        e = self.assertRaisesHostError(errors.TargetError, self.export,
                                       chap=chap, initiators=[INIT_A, INIT_B])

        self.assertIn('kaboom in %s' % what, e.stderr)
        self.assertEqual([], self.rts.dump()['targets'])
        self.assertEqual([], self.rts.dump()['storage_objects'])
        self.assertEqual([], self.rts.saves)
        # everything created was deleted again
        self.assertEqual(sorted(self.rts.created),
                         sorted(self.rts.deleted))

    def test_failed_save_is_reported(self):
        self.rts.fail('save_to_file', RuntimeError(
            'Could not open /etc/target/saveconfig.json.temp'))

        e = self.assertRaisesHostError(errors.TargetError, self.export)

        self.assertEqual('saving the LIO configuration failed', e.message)
        self.assertIn('saveconfig.json.temp', e.stderr)
        self.assertEqual([], self.rts.dump()['targets'])

    @ddt.data('NodeACL', 'MappedLUN', 'save_to_file')
    def test_failed_reexport_undoes_only_its_own_changes(self, what):
        self.export()
        before = self.rts.dump()
        created = len(self.rts.created)
        self.rts.fail(what, 'kaboom')

        e = self.assertRaisesHostError(errors.TargetError, self.export,
                                       initiators=[INIT_A, INIT_B])

        self.assertIn('kaboom', e.stderr)
        self.assertEqual(before, self.rts.dump())
        self.assertEqual(sorted(self.rts.created[created:]),
                         sorted(self.rts.deleted))
        self.assertEqual(1, len(self.rts.saves))

    def test_failed_reexport_disables_the_tpg_again(self):
        self.export()
        self.live_tpg().enable = False
        before = self.rts.dump()
        self.rts.fail('save_to_file', 'disk full')

        self.assertRaisesHostError(errors.TargetError, self.export)

        self.assertEqual(before, self.rts.dump())
        self.assertFalse(self.tpg()['enable'])

    def test_rtsroot_failing_is_unavailable(self):
        self.rts.fail_root('Could not load module: target_core_mod')

        e = self.assertRaisesHostError(errors.Unavailable, self.export)

        self.assertEqual('cannot open the LIO configuration', e.message)
        self.assertIn('target_core_mod', e.stderr)
        self.assertIn('modprobe -a target_core_mod iscsi_target_mod '
                      'target_core_iblock', e.hint)
        self.assertEqual({}, self.rts.cfs)

    def test_rtslib_missing_is_unavailable(self):
        with mock.patch.object(lio, '_rtslib', _REAL_RTSLIB), \
                mock.patch.dict(sys.modules, {'rtslib_fb': None}):
            e = self.assertRaisesHostError(errors.Unavailable, self.export)
        self.assertIn('python3-rtslib-fb', e.message)
        self.assertEqual('apt install python3-rtslib-fb', e.hint)
        self.assertIsNone(self.backend.rtslib)

    def test_rtslib_is_imported_once(self):
        self.export()
        self.backend.show(NAME, IQN)
        self.assertEqual(1, lio._rtslib.call_count)
        self.assertIs(self.rts, self.backend.rtslib)

    # -- remove ----------------------------------------------------------

    def test_remove(self):
        self.export(initiators=[INIT_A, INIT_B])

        self.assertEqual({'removed': True}, self.backend.remove(NAME, IQN))

        self.assertEqual([], self.rts.dump()['targets'])
        self.assertEqual([], self.rts.dump()['storage_objects'])
        self.assertEqual(['iscsi'], [
            p.rsplit('/', 1)[1] for p in self.rts.cfs
            if p != fake_rtslib.CONFIGFS])
        self.assertEqual(2, len(self.rts.saves))
        self.assertEqual({'storage_objects': [], 'targets': [],
                          'fabric_modules': []}, self.rts.saved)

    def test_remove_nothing_there(self):
        self.assertEqual({'removed': False}, self.backend.remove(NAME, IQN))
        self.assertEqual([], self.rts.saves)
        self.assertEqual([], self.rts.deleted)

    def test_remove_leaves_other_exports(self):
        self.export()
        self.backend.export('volume-b', 'iqn.2010-10.org.openstack:volume-b',
                            '/dev/zvol/tank/cinder/volume-b', CHAP,
                            [INIT_A], [PORT], SERIAL)

        self.backend.remove(NAME, IQN)

        self.assertEqual(['iqn.2010-10.org.openstack:volume-b'],
                         [t['wwn'] for t in self.rts.dump()['targets']])
        self.assertEqual(['volume-b'], [
            so['name'] for so in self.rts.dump()['storage_objects']])

    def test_remove_backstore_without_target(self):
        self.rts.BlockStorageObject(NAME, dev=DEVICE, wwn=SERIAL)

        self.assertEqual({'removed': True}, self.backend.remove(NAME, IQN))

        self.assertEqual([], self.rts.dump()['storage_objects'])
        self.assertEqual(1, len(self.rts.saves))

    def test_remove_failing(self):
        self.export()
        before = self.rts.dump()
        self.rts.fail('Target.delete', 'Device or resource busy')

        e = self.assertRaisesHostError(errors.TargetError,
                                       self.backend.remove, NAME, IQN)

        self.assertIn('Device or resource busy', e.stderr)
        self.assertIn(IQN, e.message)
        self.assertEqual(before, self.rts.dump())
        self.assertEqual(1, len(self.rts.saves))

    def test_remove_failing_half_way_saves_what_is_gone(self):
        # the boot configuration must not bring the target back
        self.export()
        self.rts.fail('BlockStorageObject.delete', 'Device or resource busy')

        self.assertRaisesHostError(errors.TargetError,
                                   self.backend.remove, NAME, IQN)

        self.assertEqual([], self.rts.dump()['targets'])
        self.assertEqual(2, len(self.rts.saves))
        self.assertEqual([], self.rts.saved['targets'])
        self.assertEqual([NAME], [so['name'] for so in
                                  self.rts.saved['storage_objects']])

    def test_remove_save_failing(self):
        self.export()
        self.rts.fail('save_to_file', 'read-only file system')

        e = self.assertRaisesHostError(errors.TargetError,
                                       self.backend.remove, NAME, IQN)

        self.assertIn('read-only file system', e.stderr)
        self.assertEqual([], self.rts.dump()['targets'])

    # -- allow -----------------------------------------------------------

    def test_allow_uses_the_targets_chap(self):
        self.export()

        result = self.backend.allow(NAME, IQN, INIT_B, list(OTHER_CHAP))

        self.assertEqual({'initiators': [INIT_A, INIT_B]}, result)
        acl = self.acls()[INIT_B]
        self.assertEqual(CHAP, (acl['chap_userid'], acl['chap_password']))
        self.assertEqual([(0, 0)], [(m['index'], m['tpg_lun'])
                                    for m in acl['mapped_luns']])
        self.assertEqual(2, len(self.rts.saves))
        self.assertEqual(self.rts.dump(), self.rts.saved)

    def test_allow_on_export_without_chap(self):
        self.export(chap=None)

        self.backend.allow(NAME, IQN, INIT_B, list(CHAP))

        self.assertNotIn('chap_userid', self.acls()[INIT_B])
        self.assertEqual('0', self.tpg()['attributes']['authentication'])

    def test_allow_without_acls_takes_the_proposal(self):
        self.export(initiators=())

        self.backend.allow(NAME, IQN, INIT_B, list(CHAP))

        acl = self.acls()[INIT_B]
        self.assertEqual(CHAP, (acl['chap_userid'], acl['chap_password']))

    def test_allow_present_initiator_changes_nothing(self):
        self.export()
        before = self.rts.dump()

        result = self.backend.allow(NAME, IQN, INIT_A.upper(), list(CHAP))

        self.assertEqual({'initiators': [INIT_A]}, result)
        self.assertEqual(before, self.rts.dump())
        self.assertEqual(1, len(self.rts.saves))

    def test_allow_not_exported(self):
        e = self.assertRaisesHostError(errors.NotFound, self.backend.allow,
                                       NAME, IQN, INIT_B, list(CHAP))
        self.assertIn('not exported', e.message)
        self.assertEqual([], self.rts.dump()['targets'])
        self.assertEqual([], self.rts.saves)

    def test_allow_target_without_the_volumes_lun(self):
        # the IQN is exported, but with another volume's backstore
        self.backend.export('volume-b', IQN, '/dev/zvol/tank/cinder/b',
                            CHAP, [INIT_A], [PORT], SERIAL)
        saves = len(self.rts.saves)

        self.assertRaisesHostError(errors.NotFound, self.backend.allow,
                                   NAME, IQN, INIT_B, list(CHAP))
        self.assertEqual([INIT_A], list(self.acls()))
        self.assertEqual(saves, len(self.rts.saves))

    @ddt.data('NodeACL', 'MappedLUN', 'save_to_file')
    def test_allow_failing_undoes_it(self, what):
        self.export()
        before = self.rts.dump()
        self.rts.fail(what, 'kaboom')

        e = self.assertRaisesHostError(errors.TargetError, self.backend.allow,
                                       NAME, IQN, INIT_B, list(CHAP))

        self.assertIn('kaboom', e.stderr)
        self.assertEqual(before, self.rts.dump())
        self.assertEqual(1, len(self.rts.saves))

    # -- deny ------------------------------------------------------------

    def test_deny_listed_initiators(self):
        self.export(initiators=[INIT_A, INIT_B])

        result = self.backend.deny(NAME, IQN, [INIT_A.upper()])

        self.assertEqual({'initiators': [INIT_B]}, result)
        self.assertEqual([INIT_B], list(self.acls()))
        self.assertEqual(2, len(self.rts.saves))
        self.assertEqual(self.rts.dump(), self.rts.saved)
        # the export itself stays
        self.assertEqual(1, len(self.tpg()['luns']))

    def test_deny_all(self):
        self.export(initiators=[INIT_A, INIT_B])

        result = self.backend.deny(NAME, IQN, None)

        self.assertEqual({'initiators': []}, result)
        self.assertEqual({}, self.acls())
        self.assertEqual(1, len(self.tpg()['luns']))
        self.assertTrue(self.tpg()['enable'])
        self.assertEqual(2, len(self.rts.saves))

    def test_deny_unknown_initiator_saves_nothing(self):
        self.export()

        result = self.backend.deny(NAME, IQN, [INIT_B])

        self.assertEqual({'initiators': [INIT_A]}, result)
        self.assertEqual([INIT_A], list(self.acls()))
        self.assertEqual(1, len(self.rts.saves))

    def test_deny_not_exported(self):
        self.assertEqual({'initiators': []},
                         self.backend.deny(NAME, IQN, None))
        self.assertEqual([], self.rts.saves)

    def test_deny_failing(self):
        self.export(initiators=[INIT_A, INIT_B])
        self.rts.fail('NodeACL.delete', 'Device or resource busy')

        e = self.assertRaisesHostError(errors.TargetError, self.backend.deny,
                                       NAME, IQN, None)

        self.assertIn('Device or resource busy', e.stderr)
        self.assertEqual([INIT_A, INIT_B], sorted(self.acls()))
        self.assertEqual(1, len(self.rts.saves))

    def test_deny_failing_half_way_saves_what_is_gone(self):
        self.export(initiators=[INIT_A, INIT_B])
        self.rts.fail('NodeACL.delete', 'Device or resource busy', after=1)

        self.assertRaisesHostError(errors.TargetError, self.backend.deny,
                                   NAME, IQN, None)

        self.assertEqual(1, len(self.acls()))
        self.assertEqual(2, len(self.rts.saves))
        self.assertEqual(self.rts.dump(), self.rts.saved)

    # -- resize, show, version ---------------------------------------------

    def test_resize_is_a_no_op(self):
        self.export()
        before = self.rts.dump()

        self.assertEqual({'changed': False},
                         self.backend.resize(NAME, IQN, DEVICE, SERIAL))

        self.assertEqual(before, self.rts.dump())
        self.assertEqual(1, len(self.rts.saves))

    def test_show_exported(self):
        self.export(initiators=[INIT_B, INIT_A])

        self.assertEqual({'exists': True, 'device': DEVICE,
                          'initiators': [INIT_A, INIT_B],
                          'chap_user': CHAP[0]},
                         self.backend.show(NAME, IQN))

    def test_show_exported_without_chap(self):
        self.export(chap=None)

        self.assertEqual({'exists': True, 'device': DEVICE,
                          'initiators': [INIT_A], 'chap_user': None},
                         self.backend.show(NAME, IQN))

    def test_show_not_exported(self):
        self.assertEqual({'exists': False, 'device': None, 'initiators': [],
                          'chap_user': None},
                         self.backend.show(NAME, IQN))

    def test_show_backstore_only(self):
        self.rts.BlockStorageObject(NAME, dev=DEVICE, wwn=SERIAL)

        self.assertEqual({'exists': False, 'device': DEVICE,
                          'initiators': [], 'chap_user': None},
                         self.backend.show(NAME, IQN))

    def test_show_rtslib_error(self):
        self.export()
        with mock.patch.object(self.rts.LUN, 'storage_object',
                               new_callable=mock.PropertyMock,
                               side_effect=fake_rtslib.RTSLibBrokenLink(
                                   'Broken LUN in configFS')):
            e = self.assertRaisesHostError(errors.TargetError,
                                           self.backend.show, NAME, IQN)
        self.assertIn('Broken LUN in configFS', e.stderr)

    def test_version(self):
        self.assertEqual({'helper': 'lioadm', 'targets': 0},
                         self.backend.version())
        self.export()
        self.assertEqual({'helper': 'lioadm', 'targets': 1},
                         self.backend.version())


class FakeRtslibTestCase(testtools.TestCase):
    """The fake keeps the rtslib-fb behaviour the backend depends on."""

    def setUp(self):
        super().setUp()
        self.rts = fake_rtslib.FakeRtslib()
        self.root = self.rts.RTSRoot()
        self.so = self.rts.BlockStorageObject(NAME, dev=DEVICE, wwn=SERIAL)
        self.target = self.rts.Target(self.rts.FabricModule('iscsi'), IQN,
                                      mode='create')
        self.tpg = self.rts.TPG(self.target, 1, mode='create')
        self.lun = self.rts.LUN(self.tpg, storage_object=self.so)
        self.acl = self.rts.NodeACL(self.tpg, INIT_A.upper(), mode='create')
        self.mapped = self.rts.MappedLUN(self.acl, 0, 0)

    def test_creating_what_exists_fails(self):
        for create, message in (
                (lambda: self.rts.Target(self.rts.FabricModule('iscsi'),
                                         IQN, mode='create'),
                 'This Target already exists in configFS'),
                (lambda: self.rts.TPG(self.target, 1, mode='create'),
                 'This TPG already exists in configFS'),
                (lambda: self.rts.NodeACL(self.tpg, INIT_A, mode='create'),
                 'This NodeACL already exists in configFS'),
                (lambda: self.rts.MappedLUN(self.acl, 0, 0),
                 'This MappedLUN already exists in configFS'),
                (lambda: self.rts.LUN(self.tpg, 0, storage_object=self.so),
                 'This LUN already exists in configFS'),
                (lambda: self.rts.BlockStorageObject(NAME, dev='/dev/zd9'),
                 'Storage object block/%s exists' % NAME),
                (lambda: self.rts.BlockStorageObject('b', dev=DEVICE),
                 'Cannot configure StorageObject because device %s is '
                 'already in use' % DEVICE)):
            e = self.assertRaises(fake_rtslib.RTSLibError, create)
            self.assertEqual(message, str(e))

    def test_names_are_normalized(self):
        self.assertEqual(INIT_A, self.acl.node_wwn)
        target = self.rts.Target(self.rts.FabricModule('iscsi'),
                                 'iqn.2010-10.org.OpenStack:X')
        self.assertEqual('iqn.2010-10.org.openstack:x', target.wwn)
        self.assertRaises(fake_rtslib.RTSLibError, self.rts.NodeACL,
                          self.tpg, 'iqn.2010-10.org.x:a_b')

    def test_lookups_are_new_handles_on_the_same_objects(self):
        self.acl.chap_userid = 'user'
        acl = next(next(self.root.tpgs).node_acls)
        self.assertEqual(self.acl, acl)
        self.assertEqual('user', acl.chap_userid)
        self.assertEqual(0, next(acl.mapped_luns).tpg_lun.lun)
        self.assertEqual(NAME, next(self.tpg.luns).storage_object.name)

    def test_deleting_a_backstore_tears_its_luns_away(self):
        self.so.delete()
        self.assertEqual([], list(self.tpg.luns))
        self.assertEqual([], list(self.acl.mapped_luns))
        self.assertEqual([INIT_A], [a.node_wwn for a in self.tpg.node_acls])

    def test_deleting_a_target_deletes_everything_below(self):
        self.rts.NetworkPortal(self.tpg, '0.0.0.0', 3260)
        self.target.delete()
        self.assertEqual([], [p for p in self.rts.cfs if IQN in p])
        self.assertEqual([NAME], [so.name for so in self.root.storage_objects])
        self.assertRaises(fake_rtslib.RTSLibNotInCFS, self.acl.delete)

    def test_injected_failures_happen_once(self):
        self.rts.fail('NodeACL', 'nope')
        e = self.assertRaises(fake_rtslib.RTSLibError, self.rts.NodeACL,
                              self.tpg, INIT_B)
        self.assertEqual('nope', str(e))
        self.rts.NodeACL(self.tpg, INIT_B)
        self.rts.fail('NodeACL', 'not for lookups')
        self.assertEqual(2, len(list(self.tpg.node_acls)))
        self.assertRaises(fake_rtslib.RTSLibError, self.rts.NodeACL,
                          self.tpg, 'iqn.1993-08.org.debian:01:c')
        self.rts.fail('save_to_file', after=1)
        self.root.save_to_file()
        self.assertRaises(fake_rtslib.RTSLibError, self.root.save_to_file)
        self.root.save_to_file()
        self.assertEqual(2, len(self.rts.saves))
        self.rts.fail_root()
        self.assertRaises(fake_rtslib.RTSLibError, self.rts.RTSRoot)
