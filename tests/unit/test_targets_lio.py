"""LIO helper (rtslib program on stdin) and the remote program itself."""

import json
import sys
import types
from unittest import mock

import ddt

from cinder.tests.unit import test

from cinder_zol import exception
from cinder_zol.targets import lio
from cinder_zol.targets import lio_remote
from tests.unit import fake_target_host as fake
from tests.unit import test_targets_tgt as common

INITIATOR = common.INITIATOR
USER, SECRET = common.USER, common.SECRET


@ddt.ddt
class LioTargetTestCase(common.TargetTestBase):

    helper = 'lioadm'

    def reply(self, op, **result):
        self.runner.reply('lio-' + op, json.dumps(result) + '\n')

    def test_create_export(self):
        self.reply('export', tid=1, lun=0, changed=True)
        update = self.target.create_export(self.volume, self.device)
        self.assertEqual('192.0.2.10:3260,1 %s 0' % self.iqn,
                         update['provider_location'])
        call = self.runner.calls[0]
        self.assertEqual(fake.FLOCK + ['python3', '-'], call.argv)
        self.assertTrue(call.input.startswith(lio.remote_program()))
        params = call.params
        self.assertEqual(self.iqn, params['iqn'])
        self.assertEqual(self.device, params['device'])
        self.assertEqual(self.volume.name, params['so_name'])
        self.assertEqual(7, params['wait'])
        self.assertEqual(('0.0.0.0', 3260),
                         (params['portal_ip'], params['port']))
        self.assertEqual([], params['initiators'])
        self.assertEqual(update['provider_auth'],
                         'CHAP %s %s' % tuple(params['chap']))
        self.assertNoSecretInArgv(params['chap'][1])

    def test_create_export_chap_off(self):
        self.set_conf(use_chap_auth=False)
        self.reply('export', tid=1, lun=0, changed=True)
        update = self.target.create_export(self.volume, self.device)
        self.assertIsNone(update['provider_auth'])
        self.assertIsNone(self.runner.calls[0].params['chap'])

    def test_parameters_are_data_not_code(self):
        program = lio.script_for({'op': 'x', 'iqn': "a'); import os; ('"})
        self.assertEqual({'op': 'x', 'iqn': "a'); import os; ('"},
                         fake.lio_params(program))

    @ddt.data(('rtslib: RTSLibError: Could not create Target in configFS',
               'Could not create Target'),
              ('cannot open the LIO configuration (No such file); load the '
               'modules', 'load the modules'))
    @ddt.unpack
    def test_create_export_failure(self, stderr, expected):
        self.runner.fail('lio-export', stderr)
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertIn(expected, str(e))

    def test_port_in_use_hint(self):
        self.runner.fail('lio-export', 'rtslib: RTSLibError: Could not '
                         'create NetworkPortal in configFS: [Errno 98] '
                         'Address already in use')
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertIn('tgtd', str(e))

    def test_garbled_output(self):
        self.runner.reply('lio-export', 'Traceback...')
        self.assertRaises(exception.TargetError, self.target.create_export,
                          self.volume, self.device)

    def test_ensure_export(self):
        self.exported(volume_attachment=[self.attachment(INITIATOR)])
        self.reply('export', tid=1, lun=0, changed=False)
        self.target.ensure_export(self.volume, self.device)
        params = self.runner.calls[0].params
        self.assertTrue(params['leave_if_present'])
        self.assertEqual([USER, SECRET], params['chap'])
        self.assertEqual([INITIATOR], params['initiators'])
        self.assertNoSecretInArgv(SECRET)

    def test_remove_export(self):
        self.exported()
        self.reply('remove', removed=True)
        self.target.remove_export(self.volume)
        self.assertEqual({'op': 'remove', 'iqn': self.iqn,
                          'so_name': self.volume.name},
                         self.runner.calls[0].params)

    def test_initialize_connection(self):
        self.exported()
        self.reply('allow', acls=[INITIATOR])
        info = self.target.initialize_connection(self.volume,
                                                 {'initiator': INITIATOR})
        self.assertEqual(0, info['data']['target_lun'])
        params = self.runner.calls[0].params
        self.assertEqual(INITIATOR, params['initiator'])
        self.assertEqual([USER, SECRET], params['chap'])

    def test_initialize_connection_acl_missing(self):
        self.exported()
        self.reply('allow', acls=[])
        self.assertRaises(exception.TargetError,
                          self.target.initialize_connection, self.volume,
                          {'initiator': INITIATOR})

    def test_terminate_connection(self):
        self.exported(volume_attachment=[self.attachment(INITIATOR)])
        self.reply('deny', acls=[])
        self.target.terminate_connection(self.volume,
                                         {'initiator': INITIATOR})
        self.assertEqual([INITIATOR], self.runner.calls[0].params[
            'initiators'])

    def test_force_detach(self):
        self.exported()
        self.reply('deny', acls=[])
        self.target.terminate_connection(self.volume, None)
        self.assertIsNone(self.runner.calls[0].params['initiators'])

    def test_refresh_size_is_free(self):
        self.exported()
        self.target.refresh_size(self.volume, self.device)
        self.assertEqual([], self.runner.calls)


# -- the program that runs on the storage host, against a fake rtslib -------

class FakeObj(object):
    """An rtslib object: relations are computed from one registry."""

    fail_on = None

    def __init__(self, registry, kind, **attrs):
        if FakeObj.fail_on == kind:
            raise RuntimeError('Could not create %s in configFS' % kind)
        self.registry = registry
        self.kind = kind
        self.__dict__.update(attrs)
        registry.append(self)

    def _children(self, kind, parent):
        return iter([o for o in self.registry
                     if o.kind == kind and getattr(o, parent) is self])

    tpgs = property(lambda self: self._children('tpg', 'target'))
    luns = property(lambda self: self._children('lun', 'tpg'))
    node_acls = property(lambda self: self._children('acl', 'tpg'))
    network_portals = property(lambda self: self._children('portal', 'tpg'))
    mapped_luns = property(lambda self: self._children('mapped', 'acl'))

    def set_attribute(self, name, value):
        self.attrs[name] = value

    def delete(self):
        self.registry.remove(self)


def fake_rtslib():
    objs = []
    mod = types.SimpleNamespace(saved=[], objs=objs)

    def of(kind):
        return [o for o in objs if o.kind == kind]

    class Root(object):
        storage_objects = property(lambda self: iter(of('so')))
        targets = property(lambda self: iter(of('target')))

        def save_to_file(self):
            mod.saved.append(len(objs))

    mod.of = of
    mod.RTSRoot = Root
    mod.FabricModule = lambda name: name
    mod.BlockStorageObject = lambda name, dev: FakeObj(
        objs, 'so', name=name, udev_path=dev)
    mod.Target = lambda fabric, wwn, mode: FakeObj(objs, 'target', wwn=wwn)
    mod.TPG = lambda target, tag, mode: FakeObj(
        objs, 'tpg', target=target, tag=tag, enable=False, attrs={})
    mod.NetworkPortal = lambda tpg, ip, port, mode: FakeObj(
        objs, 'portal', tpg=tpg, ip=ip, port=port)
    mod.LUN = lambda tpg, storage_object: FakeObj(
        objs, 'lun', tpg=tpg, storage_object=storage_object, lun=0)
    mod.NodeACL = lambda tpg, wwn, mode: FakeObj(
        objs, 'acl', tpg=tpg, node_wwn=wwn, chap_userid='',
        chap_password='')
    mod.MappedLUN = lambda acl, mapped, tpg_lun: FakeObj(
        objs, 'mapped', acl=acl, mapped_lun=mapped,
        tpg_lun=[o for o in objs if o.kind == 'lun'][0])
    return mod


class LioRemoteProgramTestCase(test.TestCase):
    """Logic of lio_remote.py with rtslib replaced by an in-memory fake."""

    def setUp(self):
        super().setUp()
        self.rts = fake_rtslib()
        self.root = self.rts.RTSRoot()
        self.addCleanup(setattr, FakeObj, 'fail_on', None)
        self.mock_object(lio_remote, '_wait_for_device')
        self.params = {'op': 'export', 'iqn': 'iqn.2010-10.org.o:v1',
                       'device': '/dev/zvol/t/v1', 'so_name': 'v1',
                       'wait': 1, 'portal_ip': '0.0.0.0', 'port': 3260,
                       'chap': ['u', 'secretsecret'],
                       'initiators': [INITIATOR]}

    def kinds(self):
        return sorted(o.kind for o in self.rts.objs)

    def test_export_creates_everything_with_acl_and_chap(self):
        result = lio_remote.export(self.rts, self.root, self.params)
        self.assertEqual({'tid': 1, 'lun': 0, 'changed': True}, result)
        self.assertEqual(['acl', 'lun', 'mapped', 'portal', 'so', 'target',
                          'tpg'], self.kinds())
        tpg = self.rts.of('tpg')[0]
        self.assertEqual({'generate_node_acls': '0', 'authentication': '1'},
                         tpg.attrs)
        self.assertTrue(tpg.enable)
        acl = self.rts.of('acl')[0]
        self.assertEqual(('u', 'secretsecret'),
                         (acl.chap_userid, acl.chap_password))
        self.assertEqual(1, len(self.rts.saved))

    def test_export_again_changes_nothing(self):
        lio_remote.export(self.rts, self.root, self.params)
        before = list(self.rts.objs)
        result = lio_remote.export(self.rts, self.root, self.params)
        self.assertFalse(result['changed'])
        self.assertEqual(before, self.rts.objs)

    def test_ensure_leaves_existing_export(self):
        lio_remote.export(self.rts, self.root, dict(self.params,
                                                    initiators=[]))
        result = lio_remote.export(self.rts, self.root, dict(
            self.params, leave_if_present=True))
        self.assertEqual({'tid': 1, 'lun': 0, 'changed': False}, result)
        self.assertEqual([], self.rts.of('acl'))

    def test_export_without_chap(self):
        lio_remote.export(self.rts, self.root, dict(self.params, chap=None))
        self.assertEqual('0', self.rts.of('tpg')[0].attrs['authentication'])
        self.assertEqual('0',
                         self.rts.of('tpg')[0].attrs['generate_node_acls'])

    def test_export_refuses_backstore_on_other_device(self):
        self.rts.BlockStorageObject('v1', dev='/dev/zvol/t/other')
        self.assertRaises(lio_remote.Failure, lio_remote.export, self.rts,
                          self.root, self.params)

    def test_export_failure_rolls_back_everything(self):
        FakeObj.fail_on = 'lun'
        self.assertRaises(RuntimeError, lio_remote.export, self.rts,
                          self.root, self.params)
        self.assertEqual([], self.rts.objs)
        self.assertEqual([], self.rts.saved)

    def test_allow_and_deny(self):
        lio_remote.export(self.rts, self.root, dict(self.params,
                                                    initiators=[]))
        other = 'iqn.1993-08.org.debian:01:zzz'
        for ini in (INITIATOR, other):
            result = lio_remote.allow(self.rts, self.root, dict(
                self.params, initiator=ini))
        self.assertEqual(sorted([INITIATOR, other]), result['acls'])
        result = lio_remote.deny(self.rts, self.root,
                                 {'iqn': self.params['iqn'],
                                  'initiators': [other]})
        self.assertEqual([INITIATOR], result['acls'])
        result = lio_remote.deny(self.rts, self.root,
                                 {'iqn': self.params['iqn'],
                                  'initiators': None})
        self.assertEqual([], result['acls'])
        # the LUN stays exported
        self.assertEqual(1, len(self.rts.of('lun')))

    def test_remove(self):
        lio_remote.export(self.rts, self.root, self.params)
        # deleting a target deletes its children in configfs
        self.mock_object(FakeObj, 'delete', autospec=True,
                         side_effect=lambda o: self.rts.objs.remove(o))
        result = lio_remote.remove(self.rts, self.root, self.params)
        self.assertEqual({'removed': True}, result)
        self.assertEqual([], self.rts.of('so'))
        self.assertEqual([], self.rts.of('target'))

    def test_main_reports_errors_on_stderr(self):
        self.mock_object(lio_remote, '_rtslib', return_value=self.rts)
        FakeObj.fail_on = 'so'
        stderr = self.mock_object(sys, 'stderr')
        e = self.assertRaises(SystemExit, lio_remote.main, self.params)
        self.assertEqual(1, e.code)
        self.assertIn('Could not create so', stderr.write.call_args[0][0])

    def test_main_device_missing_exit_code(self):
        self.mock_object(lio_remote, '_rtslib', return_value=self.rts)
        lio_remote._wait_for_device.side_effect = lio_remote.Failure(
            'device did not appear', lio_remote.EXIT_DEVICE_MISSING)
        self.mock_object(sys, 'stderr')
        e = self.assertRaises(SystemExit, lio_remote.main, self.params)
        self.assertEqual(3, e.code)

    def test_main_prints_json(self):
        self.mock_object(lio_remote, '_rtslib', return_value=self.rts)
        stdout = self.mock_object(sys, 'stdout')
        lio_remote.main(dict(self.params, op='deny', initiators=None))
        self.assertEqual({'acls': []},
                         json.loads(stdout.write.call_args[0][0]))

    def test_missing_rtslib(self):
        with mock.patch.dict(sys.modules, {'rtslib_fb': None}):
            e = self.assertRaises(lio_remote.Failure, lio_remote._rtslib)
        self.assertIn('apt install python3-rtslib-fb', str(e))

    def test_remove_missing_is_success(self):
        result = lio_remote.remove(self.rts, self.root, self.params)
        self.assertEqual({'removed': False}, result)
        self.assertEqual([], self.rts.saved)

    def test_allow_without_export_is_not_found(self):
        e = self.assertRaises(lio_remote.Failure, lio_remote.allow, self.rts,
                              self.root, dict(self.params,
                                              initiator=INITIATOR))
        self.assertEqual(lio_remote.EXIT_NOT_FOUND, e.code)
