"""The nvmet target backend (cinder_zol.host.root.nvmet) against a configfs
tree in a temporary directory (tests.unit.fake_nvmet), and the configfs
grammar it is held to (cinder_zol.host.grammar.check_nvmet)."""

import errno
import inspect
import json
from unittest import mock

import ddt
import testtools

from cinder_zol.host import agent
from cinder_zol.host import errors
from cinder_zol.host import grammar
from cinder_zol.host.root import backend
from tests.unit import fake_nvmet
from tests.unit import host_fixture

PARENT = host_fixture.PARENT
NAME = 'volume-a'
NQN = 'nqn.2010-10.org.openstack:volume-a'
NQN_B = 'nqn.2010-10.org.openstack:volume-b'
DEVICE = '/dev/zvol/tank/cinder/volume-a'
DEVICE_B = '/dev/zvol/tank/cinder/volume-b'
SERIAL = '0123abcd-0000-1111-2222-333344445555'
SERIAL_B = '0123abcd-0000-1111-2222-333344446666'
HOST_A = 'nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001'
HOST_B = 'nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-000000000002'
PORT = 4420
NS = 'subsystems/%s/namespaces/1' % NQN


@ddt.ddt
class NvmetBackendTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.executor = mock.Mock()
        self.backend = fake_nvmet.FakeNvmet(self.executor)
        self.addCleanup(self.backend.cleanup)

    def export(self, hosts=(HOST_A,), nqn=NQN, device=DEVICE, port=PORT,
               serial=SERIAL, name=NAME):
        return self.backend.export(name, nqn, device, None, list(hosts),
                                   [port], serial)

    def test_one_port_only(self):
        e = self.assertRaises(errors.HostError, self.backend.export, NAME,
                              NQN, DEVICE, None, [HOST_A], [4420, 4421],
                              SERIAL)
        self.assertIn('one port', str(e))
        self.assertEqual([], self.backend.tree())

    def assertRaisesHostError(self, cls, func, *args, **kwargs):
        e = self.assertRaises(errors.HostError, func, *args, **kwargs)
        self.assertIsInstance(e, cls)
        return e

    # -- export ------------------------------------------------------------

    def test_new_export(self):
        result = self.export()
        self.assertEqual({'port_id': 1, 'nsid': 1, 'chap': None,
                          'changed': True, 'initiators': [HOST_A]}, result)
        self.assertEqual([
            'hosts/' + HOST_A,
            'ports/1',
            'ports/1/subsystems/%s -> subsystems/%s' % (NQN, NQN),
            'subsystems/' + NQN,
            'subsystems/%s/allowed_hosts/%s -> hosts/%s'
            % (NQN, HOST_A, HOST_A),
            NS], self.backend.tree())
        attr = self.backend.attr
        self.assertEqual('0', attr('subsystems/%s/attr_allow_any_host'
                                   % NQN))
        self.assertEqual([DEVICE, SERIAL, SERIAL, '1'],
                         [attr(NS + '/' + a) for a in (
                             'device_path', 'device_uuid', 'device_nguid',
                             'enable')])
        self.assertEqual(['tcp', 'ipv4', '0.0.0.0', '4420'],
                         [attr('ports/1/' + a) for a in (
                             'addr_trtype', 'addr_adrfam', 'addr_traddr',
                             'addr_trsvcid')])
        self.executor.run.assert_not_called()    # modules were loaded

    def test_export_again_adds_hosts_only(self):
        self.export()
        before = self.backend.tree()
        self.assertFalse(self.export()['changed'])
        self.assertEqual(before, self.backend.tree())
        result = self.export(hosts=[HOST_B])
        self.assertTrue(result['changed'])
        self.assertEqual([HOST_A, HOST_B], result['initiators'])

    def test_export_without_hosts_allows_nobody(self):
        self.assertEqual([], self.export(hosts=[])['initiators'])
        self.assertEqual('0', self.backend.attr(
            'subsystems/%s/attr_allow_any_host' % NQN))

    def test_volumes_share_a_port(self):
        self.export()
        result = self.export(nqn=NQN_B, device=DEVICE_B, serial=SERIAL_B,
                             name='volume-b')
        self.assertEqual(1, result['port_id'])
        self.assertEqual(['ports/1'], [p for p in self.backend.tree()
                                       if p.startswith('ports/') and
                                       '->' not in p])
        self.assertEqual(2, self.export(port=4421)['port_id'])

    def test_namespace_on_another_device_refused_and_undone(self):
        self.export(hosts=[])
        before = self.backend.tree()
        e = self.assertRaisesHostError(errors.TargetError, self.export,
                                       device=DEVICE_B)
        self.assertIn(DEVICE, str(e))
        self.assertEqual(before, self.backend.tree())

    @ddt.data(NS + '/enable', 'ports/1/addr_trsvcid',
              'subsystems/%s/attr_allow_any_host' % NQN)
    def test_failure_half_way_leaves_nothing(self, failing):
        self.backend.fail_on = (failing, errno.EINVAL)
        e = self.assertRaisesHostError(errors.TargetError, self.export)
        self.assertIn('Invalid argument', str(e))
        self.assertEqual([], self.backend.tree())

    def test_enable_waits_for_the_kernel_to_open_a_new_zvol(self):
        # the /dev/zvol link is there; the kernel's open still says ENOENT
        self.backend.fail_on = (NS + '/enable', errno.ENOENT, 15)
        clock = iter(range(0, 1000))
        with mock.patch.object(backend.time, 'monotonic',
                               side_effect=lambda: next(clock) / 10.0), \
                mock.patch.object(backend.time, 'sleep'):
            result = self.export()
        self.assertEqual(1, result['nsid'])
        self.assertEqual('1', self.backend.attr(NS + '/enable'))
        self.executor.run.assert_called_once_with(
            ['udevadm', 'settle', '--timeout=10'])

    def test_enable_never_possible_names_the_attribute_and_undoes(self):
        self.backend.fail_on = (NS + '/enable', errno.ENOENT)
        clock = iter(range(0, 10 ** 6))
        with mock.patch.object(backend.time, 'monotonic',
                               side_effect=lambda: float(next(clock))), \
                mock.patch.object(backend.time, 'sleep'):
            e = self.assertRaisesHostError(errors.TargetError, self.export)
        self.assertIn('No such file or directory (%s/enable)' % NS, e.stderr)
        self.assertEqual([], self.backend.tree())

    def test_chap_refused(self):
        e = self.assertRaisesHostError(
            errors.Invalid, self.backend.export, NAME, NQN, DEVICE,
            ['user0123456789abcdef', 'secret0123456789'], [HOST_A], PORT,
            SERIAL)
        self.assertIn('CHAP', str(e))
        self.assertEqual([], self.backend.tree())

    def test_serial_must_be_a_uuid(self):
        self.assertRaisesHostError(errors.Refused, self.export,
                                   serial='0123abcd')
        self.assertEqual([], self.backend.tree())

    # -- modules -------------------------------------------------------

    def test_modules_loaded_when_missing(self):
        self.backend.module_dir += '-none'
        self.executor.run.return_value = mock.Mock(returncode=0, stderr='')
        self.export()
        self.executor.run.assert_called_once_with(
            ['modprobe', '-a', 'nvmet', 'nvmet-tcp'])

    def test_missing_module_explained(self):
        self.backend.module_dir += '-none'
        self.executor.run.return_value = mock.Mock(
            returncode=1, stderr="modprobe: FATAL: Module nvmet-tcp not "
                                 "found in directory /lib/modules/6.12\n")
        e = self.assertRaisesHostError(errors.Unavailable, self.export)
        self.assertIn('Module nvmet-tcp not found', str(e))
        self.assertIn('modinfo nvmet-tcp', e.hint)
        self.assertRaisesHostError(errors.Unavailable, self.backend.version)

    # -- remove, allow, deny ---------------------------------------------

    def test_remove_leaves_nothing(self):
        self.export(hosts=[HOST_A, HOST_B])
        self.assertEqual({'removed': True},
                         self.backend.remove(NAME, NQN))
        self.assertEqual([], self.backend.tree())
        self.assertEqual({'removed': False},
                         self.backend.remove(NAME, NQN))

    def test_remove_keeps_what_others_use(self):
        self.export(hosts=[HOST_A, HOST_B])
        self.export(hosts=[HOST_A], nqn=NQN_B, device=DEVICE_B,
                    serial=SERIAL_B, name='volume-b')
        self.backend.remove(NAME, NQN)
        self.assertEqual([
            'hosts/' + HOST_A, 'ports/1',
            'ports/1/subsystems/%s -> subsystems/%s' % (NQN_B, NQN_B),
            'subsystems/' + NQN_B,
            'subsystems/%s/allowed_hosts/%s -> hosts/%s'
            % (NQN_B, HOST_A, HOST_A),
            'subsystems/%s/namespaces/1' % NQN_B], self.backend.tree())

    def test_allow_and_deny(self):
        self.export(hosts=[])
        self.assertEqual({'initiators': [HOST_B]},
                         self.backend.allow(NAME, NQN, HOST_B, None))
        self.assertEqual({'initiators': []},
                         self.backend.deny(NAME, NQN, [HOST_B, HOST_A]))
        self.assertNotIn('hosts/' + HOST_B, self.backend.tree())

    def test_deny_all(self):
        self.export(hosts=[HOST_A, HOST_B])
        self.assertEqual({'initiators': []},
                         self.backend.deny(NAME, NQN, None))
        self.assertEqual(['ports/1',
                          'ports/1/subsystems/%s -> subsystems/%s'
                          % (NQN, NQN), 'subsystems/' + NQN, NS],
                         self.backend.tree())

    def test_deny_keeps_a_host_another_volume_allows(self):
        self.export()
        self.export(nqn=NQN_B, device=DEVICE_B, serial=SERIAL_B,
                    name='volume-b')
        self.backend.deny(NAME, NQN, [HOST_A])
        self.assertIn('hosts/' + HOST_A, self.backend.tree())

    def test_allow_on_unexported_volume(self):
        self.assertRaisesHostError(errors.NotFound, self.backend.allow,
                                   NAME, NQN, HOST_A, None)
        self.assertEqual({'initiators': []},
                         self.backend.deny(NAME, NQN, None))

    # -- resize, show, version -------------------------------------------

    def test_resize_revalidates(self):
        self.export()
        self.assertEqual({'changed': True, 'revalidate': True},
                         self.backend.resize(NAME, NQN, DEVICE, SERIAL))
        self.assertEqual('1', self.backend.attr(NS + '/revalidate_size'))

    def test_resize_on_a_kernel_without_revalidate(self):
        self.backend.revalidate = False
        self.export()
        self.assertEqual({'changed': False, 'revalidate': False},
                         self.backend.resize(NAME, NQN, DEVICE, SERIAL))

    def test_show_and_version(self):
        self.assertFalse(self.backend.show(NAME, NQN)['exists'])
        self.export()
        shown = self.backend.show(NAME, NQN)
        self.assertEqual({'exists': True, 'device': DEVICE, 'uuid': SERIAL,
                          'initiators': [HOST_A], 'ports': ['1'],
                          'chap_user': None}, shown)
        self.assertEqual({'helper': 'nvmet', 'targets': 1},
                         self.backend.version())


@ddt.ddt
class NvmetGrammarTestCase(testtools.TestCase):
    """Hostile requests: the grammar refuses them, whoever builds them."""

    @ddt.data(
        ('mkdir', 'subsystems/' + NQN),
        ('mkdir', NS),
        ('mkdir', 'hosts/' + HOST_A),
        ('mkdir', 'ports/7'),
        ('write', 'subsystems/%s/attr_allow_any_host' % NQN, '0'),
        ('write', NS + '/device_path', DEVICE),
        ('write', NS + '/device_uuid', SERIAL),
        ('write', NS + '/enable', '1'),
        ('write', 'ports/7/addr_trsvcid', '4420'),
        ('link', 'subsystems/%s/allowed_hosts/%s' % (NQN, HOST_A),
         'hosts/' + HOST_A),
        ('link', 'ports/7/subsystems/' + NQN, 'subsystems/' + NQN),
        ('unlink', 'ports/7/subsystems/' + NQN))
    @ddt.unpack
    def test_accepted(self, action, path, value=None):
        grammar.check_nvmet(action, path, value)

    @ddt.data(
        # never open a subsystem to every host
        ('write', 'subsystems/%s/attr_allow_any_host' % NQN, '1'),
        ('write', 'subsystems/%s/attr_allow_any_host' % NQN, ' 1'),
        ('link', 'subsystems/%s/allowed_hosts/%s' % (NQN, HOST_A),
         'hosts/' + HOST_B),
        # names a shell, configfs or a path could misread
        ('mkdir', 'subsystems/nqn.2010-10.org.openstack:v;reboot'),
        ('mkdir', 'subsystems/nqn.2010-10.org.openstack:$(id)'),
        ('mkdir', 'hosts/nqn.2014-08.org.x:a b'),
        ('mkdir', 'hosts/*'),
        ('mkdir', 'subsystems/../../../../etc/x'),
        ('mkdir', 'subsystems/%s/../../ports/1' % NQN),
        ('mkdir', '../target/iscsi/iqn.2003-01.org.x:y'),
        ('mkdir', '/etc/cron.d'),
        ('mkdir', 'subsystems//' + NQN),
        ('rmdir', 'subsystems'),
        ('rmdir', 'ports'),
        # attributes and values outside the grammar
        ('write', NS + '/device_path', '/dev/sda'),
        ('write', NS + '/device_path', '/dev/zvol/tank/../../sda'),
        ('write', NS + '/device_path', '/dev/zvol/tank/cinder/a b'),
        ('write', NS + '/device_uuid', '../x'),
        ('write', NS + '/buffered_io', '1'),
        ('write', 'ports/7/addr_traddr', '10.0.0.1'),
        ('write', 'ports/7/addr_trtype', 'loop'),
        ('write', 'ports/7/param_inline_data_size', '0'),
        ('write', 'subsystems/%s/attr_model' % NQN, 'x'),
        ('write', 'hosts/%s/dhchap_key' % HOST_A, 'x'),
        ('write', NS + '/enable', 1),
        ('link', 'ports/7/subsystems/' + NQN, 'subsystems/' + NQN_B),
        ('link', 'ports/7/subsystems/' + NQN, '/etc/passwd'),
        ('unlink', 'subsystems/%s/namespaces/1' % NQN),
        ('chmod', 'subsystems/' + NQN),
        ('mkdir', None))
    @ddt.unpack
    def test_refused(self, action, path, value=None):
        self.assertRaises(errors.Refused, grammar.check_nvmet, action, path,
                          value)


@ddt.ddt
class NvmetRootHelperTestCase(testtools.TestCase):
    """The root helper's request vocabulary, with nvmet enabled."""

    def setUp(self):
        super().setUp()
        self.host = host_fixture.make_host(
            helpers=('tgtadm', 'lioadm', 'nvmet'))
        self.backend = host_fixture.RecordingTargetBackend()
        self.host.target_backends['nvmet'] = self.backend
        self.host.zfs(PARENT).create_volume(NAME, 2 ** 30, True, {})

    def export(self, **changes):
        payload = dict({'iqn': NQN, 'chap': None, 'initiators': [HOST_A],
                        'port': PORT, 'serial': SERIAL, 'wait': 5},
                       **changes)
        return agent.request(self.host,
                             ['target-export', PARENT, NAME, 'nvmet'],
                             json.loads(json.dumps(payload)))

    def test_export(self):
        self.export()
        self.assertEqual([HOST_A], self.backend.exports[NAME]['initiators'])

    @ddt.data({'iqn': 'nqn.2010-10.org.openstack:v;reboot'},
              {'iqn': 'nqn.2010-10.org.openstack:v/../../x'},
              {'initiators': ['nqn.2014-08.org.x:a`id`']},
              {'initiators': ['*']}, {'initiators': 'any'},
              {'initiators': ['nqn.2014-08.org.x:a b']},
              {'port': 'any'})
    def test_hostile_payload_refused_before_anything_runs(self, changes):
        self.assertRaises(errors.Refused, self.export, **changes)
        self.assertEqual({}, self.backend.exports)

    def test_backends_take_the_same_export_arguments(self):
        """target.export calls every backend alike (ports: a list)."""
        from cinder_zol.host.root import lio
        from cinder_zol.host.root import nvmet
        from cinder_zol.host.root import tgt
        names = [list(inspect.signature(b.export).parameters)
                 for b in (tgt.Backend, lio.Backend, nvmet.Backend)]
        # positional: the same places (nvmet says nqn where iSCSI says iqn)
        for each in names:
            self.assertEqual(len(names[0]), len(each))
            self.assertEqual(names[0].index('ports'), each.index('ports'))

    def test_nvmet_not_enabled_on_this_host(self):
        self.host.config.target_helpers = ['tgtadm']
        self.assertRaises(errors.Refused, self.export)
