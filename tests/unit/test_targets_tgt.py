"""tgt helper and the shared target logic, against a fake storage host."""

import json
from unittest import mock

import ddt
from oslo_config import cfg

from cinder import context
from cinder import exception as cinder_exception
from cinder import objects
from cinder.tests.unit import fake_volume
from cinder.tests.unit import test
from cinder.volume import configuration as conf
from cinder.volume import driver as cinder_driver
from cinder.volume.drivers.san import san

from cinder_zol import exception
from cinder_zol import options
from cinder_zol import targets
from cinder_zol.targets import lio
from cinder_zol.targets import tgt
from tests.unit import fake_target_host as fake

GROUP = 'test_backend'
INITIATOR = 'iqn.1993-08.org.debian:01:abc'
INITIATOR2 = 'iqn.1993-08.org.debian:01:def'
USER, SECRET = 'chapuser2020202020ab', 'S3cretS3cretS3cr'


class TargetTestBase(test.TestCase):

    helper = 'tgtadm'

    def setUp(self):
        super().setUp()
        self.ctxt = context.get_admin_context()
        self.configuration = conf.Configuration(cinder_driver.volume_opts,
                                                config_group=GROUP)
        self.configuration.append_config_values(san.san_opts)
        self.configuration.append_config_values(options.ALL_OPTS)
        self.set_conf(san_ip='192.0.2.10', zol_target_helper=self.helper,
                      zol_device_wait_timeout=7)
        self.runner = fake.FakeRunner()
        self.target = targets.get_target(self.configuration, self.runner)
        self.volume = self.new_volume()
        self.iqn = 'iqn.2010-10.org.openstack:' + self.volume.name
        self.device = '/dev/zvol/tank/cinder/' + self.volume.name

    def set_conf(self, **kwargs):
        for key, value in kwargs.items():
            self.override_config(key, value, GROUP)

    def new_volume(self, **kwargs):
        return fake_volume.fake_volume_obj(self.ctxt, **kwargs)

    def exported(self, auth='CHAP %s %s' % (USER, SECRET), tid=1, lun=None,
                 **kwargs):
        lun = self.target.lun if lun is None else lun
        self.volume.provider_location = '192.0.2.10:3260,%s %s %s' % (
            tid, self.iqn, lun)
        self.volume.provider_auth = auth
        for key, value in kwargs.items():
            if key == 'volume_attachment':
                value = objects.VolumeAttachmentList(objects=value)
            setattr(self.volume, key, value)
        return self.volume

    def attachment(self, initiator, status='attached'):
        return fake_volume.volume_attachment_ovo(
            self.ctxt, connector=json.dumps({"initiator": initiator}),
            attach_status=status)

    def assertNoSecretInArgv(self, *secrets):
        text = self.runner.all_argv_text()
        for secret in secrets:
            self.assertNotIn(secret, text)


@ddt.ddt
class SharedLogicTestCase(TargetTestBase):

    @ddt.data(('tgtadm', tgt.TgtTarget), ('lioadm', lio.LioTarget))
    @ddt.unpack
    def test_get_target(self, helper, cls):
        self.set_conf(zol_target_helper=helper)
        self.assertIsInstance(
            targets.get_target(self.configuration, self.runner), cls)

    def test_get_target_unknown(self):
        configuration = mock.Mock(**{'safe_get.return_value': 'iet'})
        self.assertRaises(cinder_exception.InvalidConfigurationValue,
                          targets.get_target, configuration, self.runner)

    def test_chap_on_by_default(self):
        self.assertIs(True, tgt.base.chap_enabled(self.configuration))

    def test_chap_explicitly_off(self):
        self.set_conf(use_chap_auth=False)
        self.assertIs(False, tgt.base.chap_enabled(self.configuration))

    def test_chap_off_in_backend_defaults(self):
        # Written in [backend_defaults] of cinder.conf. (oslo.config keeps
        # the location of a cleared override, so fake the file location.)
        location = cfg.LocationInfo(cfg.Locations.user, 'cinder.conf')
        self.mock_object(cfg.CONF, 'get_location', return_value=location)
        self.assertIs(False, tgt.base.chap_enabled(self.configuration))
        # the backend section still wins
        self.set_conf(use_chap_auth=True)
        self.assertIs(True, tgt.base.chap_enabled(self.configuration))

    def test_portal_defaults_to_san_ip(self):
        self.assertEqual(['192.0.2.10:3260'], self.target.portals())

    def test_portal_my_ip_means_san_ip(self):
        self.override_config('my_ip', '198.51.100.7')
        self.set_conf(target_ip_address='198.51.100.7')
        self.assertEqual('192.0.2.10', self.target.target_ip())

    def test_portal_explicit_target_ip(self):
        self.set_conf(target_ip_address='203.0.113.5', target_port=3261,
                      target_secondary_ip_addresses=['2001:db8::5'])
        self.assertEqual(['203.0.113.5:3261', '[2001:db8::5]:3261'],
                         self.target.portals())

    def test_portal_san_is_local_uses_target_ip(self):
        self.set_conf(san_is_local=True, target_ip_address='203.0.113.9')
        self.assertEqual('203.0.113.9', self.target.target_ip())

    @ddt.data('iqn.1993-08.org.debian:01:abc', 'eui.02004567A425678D',
              'naa.52004567BA64678D',
              'iqn.1991-05.com.microsoft:host-1.example.com')
    def test_valid_initiator_names(self, name):
        self.assertEqual(name, tgt.base.validate_iscsi_name(name))

    @ddt.data('iqn.1993-08.org.debian:01:a b', 'iqn.x:y',
              'iqn.1993-08.org.debian:01:abc\n</target>',
              "iqn.1993-08.org.debian:01:a'b", 'eui.123', 'naa.12345',
              'iqn.1993-08.org.debian:01:a"b', 'ALL', 42,
              'iqn.1993-08.org.debian:' + 'a' * 220)
    def test_invalid_initiator_refused_without_remote_call(self, name):
        self.exported()
        self.assertRaises(cinder_exception.InvalidInput,
                          self.target.initialize_connection, self.volume,
                          {'initiator': name})
        self.assertEqual([], self.runner.calls)

    def test_connector_without_initiator(self):
        self.exported()
        self.assertRaises(cinder_exception.InvalidConnectorException,
                          self.target.initialize_connection, self.volume,
                          {'host': 'compute1'})

    @ddt.data('/dev/zd0', '/dev/zvol/tank/../sda', '/dev/zvol/tank/a b',
              '/dev/zvol/tank/x;rm', 'relative')
    def test_invalid_device_refused(self, device):
        self.assertRaises(cinder_exception.InvalidInput,
                          self.target.create_export, self.volume, device)
        self.assertEqual([], self.runner.calls)

    def test_invalid_target_prefix_refused(self):
        self.set_conf(target_prefix='iqn.bad prefix:')
        self.assertRaises(cinder_exception.InvalidInput,
                          self.target.create_export, self.volume,
                          self.device)

    @ddt.data(('user', 'short'), ('us er', 'longenoughsecret'),
              ('user', 'longenough"secret'), ('user', 'longenough$(reboot)'))
    @ddt.unpack
    def test_bad_configured_chap_refused(self, user, secret):
        self.set_conf(chap_username=user, chap_password=secret)
        e = self.assertRaises(cinder_exception.InvalidConfigurationValue,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertNotIn(secret, str(e))

    def test_properties(self):
        self.exported()
        props = self.target.iscsi_properties(self.volume)
        self.assertEqual({'target_discovered': False,
                          'target_portal': '192.0.2.10:3260',
                          'target_iqn': self.iqn, 'target_lun': 1,
                          'volume_id': self.volume.id, 'discard': True,
                          'encrypted': False, 'auth_method': 'CHAP',
                          'auth_username': USER, 'auth_password': SECRET},
                         props)

    def test_properties_without_chap(self):
        self.exported(auth=None)
        props = self.target.iscsi_properties(self.volume)
        self.assertNotIn('auth_method', props)
        self.assertNotIn('auth_password', props)

    def test_properties_multipath(self):
        self.set_conf(target_secondary_ip_addresses=['192.0.2.11'])
        self.exported()
        props = self.target.iscsi_properties(self.volume, multipath=True)
        self.assertEqual(['192.0.2.10:3260', '192.0.2.11:3260'],
                         props['target_portals'])
        self.assertEqual([self.iqn] * 2, props['target_iqns'])
        self.assertEqual([1, 1], props['target_luns'])
        single = self.target.iscsi_properties(self.volume, multipath=False)
        self.assertNotIn('target_portals', single)

    def test_properties_multipath_without_secondaries(self):
        self.exported()
        props = self.target.iscsi_properties(self.volume, multipath=True)
        self.assertNotIn('target_portals', props)

    def test_properties_not_exported(self):
        self.assertRaises(exception.TargetError,
                          self.target.iscsi_properties, self.volume)

    @ddt.data('garbage', '192.0.2.10:3260 iqn.2010-10.org.openstack:v 1',
              '192.0.2.10:3260,1 not-an-iqn 1')
    def test_bad_provider_location(self, location):
        self.volume.provider_location = location
        self.assertRaises(cinder_exception.InvalidInput,
                          self.target.iscsi_properties, self.volume)

    def test_lock_conflict_message(self):
        self.runner.fail('state', '', exit_code=75)
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertIn('/run/lock/cinder-zol-targets', str(e))

    def test_tool_missing_message(self):
        self.runner.fail('state', 'sh: 1: tgtadm: not found', exit_code=127)
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertIn('installed on the storage host', str(e))

    def test_in_process_lock_per_host(self):
        with mock.patch.object(tgt.base.lockutils, 'lock') as lock:
            self.target.remove_export(self.volume)
        lock.assert_called_once_with('cinder-zol-targets-storage1',
                                     external=False)


@ddt.ddt
class TgtTargetTestCase(TargetTestBase):

    def state(self, conf_text='', show=''):
        self.runner.reply('state', conf_text + tgt.SHOW_MARK + '\n' + show)

    def live(self, **kwargs):
        return fake.show_target(self.iqn, self.device, **kwargs)

    def test_create_export_new(self):
        self.state()
        self.runner.reply('apply', self.live())
        update = self.target.create_export(self.volume, self.device)

        self.assertEqual(['state', 'apply'], self.runner.ops())
        self.assertEqual('192.0.2.10:3260,1 %s 1' % self.iqn,
                         update['provider_location'])
        method, user, secret = update['provider_auth'].split(' ')
        self.assertEqual('CHAP', method)
        self.assertEqual((20, 16), (len(user), len(secret)))
        apply = self.runner.calls[1]
        conf_path = '/etc/tgt/conf.d/cinder-zol-%s.conf' % self.volume.name
        self.assertEqual([conf_path, self.iqn, self.device, '7'], apply.args)
        self.assertIn('<target %s>\n' % self.iqn, apply.input)
        self.assertIn('    backing-store %s\n' % self.device, apply.input)
        self.assertIn('    incominguser %s %s\n' % (user, secret),
                      apply.input)
        # tgtd ORs address and name ACLs: only an address nobody has
        self.assertIn('    initiator-address 255.255.255.255\n', apply.input)
        self.assertNotIn('initiator-address ALL', apply.input)
        self.assertIn('    initiator-name %s\n' % tgt.PLACEHOLDER_INITIATOR,
                      apply.input)
        self.assertIn('    scsi_id %s\n' % self.volume.id, apply.input)
        self.assertNoSecretInArgv(secret)

    def test_each_volume_gets_its_own_secret(self):
        secrets = set()
        for _i in range(3):
            volume = self.new_volume(id=fake_volume.fake.VOLUME_ID)
            volume.provider_auth = None
            self.state()
            self.runner.reply('apply', self.live())
            update = self.target.create_export(volume, self.device)
            secrets.add(update['provider_auth'])
        self.assertEqual(3, len(secrets))

    def test_create_export_chap_off(self):
        self.set_conf(use_chap_auth=False)
        self.state()
        self.runner.reply('apply', self.live())
        update = self.target.create_export(self.volume, self.device)
        self.assertIsNone(update['provider_auth'])
        self.assertNotIn('incominguser', self.runner.calls[1].input)
        # still per initiator: the placeholder keeps the name ACL closed
        self.assertIn(tgt.PLACEHOLDER_INITIATOR, self.runner.calls[1].input)

    def test_create_export_keeps_existing_chap(self):
        self.volume.provider_auth = 'CHAP %s %s' % (USER, SECRET)
        self.state()
        self.runner.reply('apply', self.live())
        update = self.target.create_export(self.volume, self.device)
        self.assertEqual('CHAP %s %s' % (USER, SECRET),
                         update['provider_auth'])

    def test_create_export_configured_chap(self):
        self.set_conf(chap_username='shareduser',
                      chap_password='SharedSecret123')
        self.state()
        self.runner.reply('apply', self.live())
        update = self.target.create_export(self.volume, self.device)
        self.assertEqual('CHAP shareduser SharedSecret123',
                         update['provider_auth'])

    def test_create_export_idempotent(self):
        self.volume.provider_auth = 'CHAP %s %s' % (USER, SECRET)
        text = tgt.render_conf(self.volume.id, self.iqn, self.device,
                               (USER, SECRET), [])
        self.state(text, self.live(tid=4))
        update = self.target.create_export(self.volume, self.device)
        self.assertEqual(['state'], self.runner.ops())
        self.assertEqual('192.0.2.10:3260,4 %s 1' % self.iqn,
                         update['provider_location'])

    def test_create_export_keeps_acl_of_existing_file(self):
        self.volume.provider_auth = 'CHAP %s %s' % (USER, SECRET)
        old = tgt.render_conf(self.volume.id, self.iqn, self.device,
                              ('olduser', 'OldSecretOldSecret'), [INITIATOR])
        self.state(old, self.live(acls=['ALL', tgt.PLACEHOLDER_INITIATOR,
                                        INITIATOR]))
        self.runner.reply('apply', self.live(
            acls=[tgt.PLACEHOLDER_ADDRESS, tgt.PLACEHOLDER_INITIATOR,
                  INITIATOR]))
        self.target.create_export(self.volume, self.device)
        self.assertIn('initiator-name %s\n' % INITIATOR,
                      self.runner.calls[1].input)
        self.assertIn('incominguser %s %s' % (USER, SECRET),
                      self.runner.calls[1].input)

    @ddt.data(
        ('tgtadm: this target already exists', 'tgtadm: this target'),
        ('Command:\n\ttgtadm -C 0 --lld iscsi --op new --mode logicalunit '
         '--tid 1 --lun 1 -b /dev/zvol/x\nexited with code: 22.',
         'exited with code: 22'))
    @ddt.unpack
    def test_create_export_apply_fails_rolls_back(self, stderr, expected):
        self.state()
        self.runner.fail('apply', stderr)
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertIn(expected, str(e))
        self.assertIn(self.volume.name, str(e))
        self.assertEqual(['state', 'apply', 'remove'], self.runner.ops())
        remove = self.runner.calls[2]
        self.assertEqual(self.iqn, remove.args[1])

    @ddt.data({'with_lun': False},
              {'acls': []},
              {'acls': ['ALL', tgt.PLACEHOLDER_ADDRESS,
                        tgt.PLACEHOLDER_INITIATOR]},
              {'acls': ['127.0.0.1', tgt.PLACEHOLDER_ADDRESS,
                        tgt.PLACEHOLDER_INITIATOR]},
              {'acls': [tgt.PLACEHOLDER_INITIATOR]},
              {'iqn': 'other'})
    def test_create_export_half_made_rolls_back(self, kwargs):
        iqn = kwargs.pop('iqn', self.iqn)
        self.state()
        self.runner.reply('apply', fake.show_target(iqn, self.device,
                                                    **kwargs))
        self.assertRaises(exception.TargetError, self.target.create_export,
                          self.volume, self.device)
        self.assertEqual(['state', 'apply', 'remove'], self.runner.ops())

    def test_create_export_rollback_failure_reports_original(self):
        self.state()
        self.runner.fail('apply', 'tgtadm: invalid request')
        self.runner.fail('remove', 'tgtadm: out of memory')
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertIn('invalid request', str(e))

    def test_existing_export_not_rolled_back(self):
        self.state('', self.live(sessions=True))
        self.runner.fail('apply', 'tgtadm: invalid request')
        self.assertRaises(exception.TargetError, self.target.create_export,
                          self.volume, self.device)
        self.assertEqual(['state', 'apply'], self.runner.ops())

    def test_create_export_device_missing(self):
        self.state()
        self.runner.fail('apply', 'device %s did not appear within 7 s '
                         '(udev)' % self.device, exit_code=3)
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertIn('did not appear', str(e))

    def test_tgtd_not_running_hint(self):
        self.runner.fail('state', "tgtadm: can't send the request to the "
                         "tgt daemon, Transport endpoint is not connected")
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertIn('systemctl start tgt', str(e))

    def test_error_never_carries_stdout(self):
        self.runner.replies['state'].append(fake.error(
            'boom', stdout='incominguser u %s' % SECRET))
        e = self.assertRaises(exception.TargetError,
                              self.target.create_export, self.volume,
                              self.device)
        self.assertNotIn(SECRET, str(e))

    def test_ensure_export_leaves_correct_export_alone(self):
        self.exported()
        self.state('<target %s>\n' % self.iqn, self.live(sessions=True))
        self.target.ensure_export(self.volume, self.device)
        self.assertEqual(['state'], self.runner.ops())

    def test_ensure_export_recreates_with_recorded_chap_and_acl(self):
        self.exported(volume_attachment=[self.attachment(INITIATOR),
                                         self.attachment(INITIATOR2,
                                                         'detached')])
        self.state()
        self.runner.reply('apply', self.live(
            acls=[tgt.PLACEHOLDER_ADDRESS, tgt.PLACEHOLDER_INITIATOR,
                  INITIATOR]))
        self.target.ensure_export(self.volume, self.device)
        self.assertEqual(['state', 'apply'], self.runner.ops())
        text = self.runner.calls[1].input
        self.assertIn('incominguser %s %s\n' % (USER, SECRET), text)
        self.assertIn('initiator-name %s\n' % INITIATOR, text)
        self.assertNotIn(INITIATOR2, text)
        self.assertNoSecretInArgv(SECRET)

    def test_ensure_export_keeps_recorded_iqn(self):
        self.exported()
        self.set_conf(target_prefix='iqn.2024-01.com.example:')
        self.state()
        self.runner.reply('apply', self.live())
        self.target.ensure_export(self.volume, self.device)
        self.assertEqual(self.iqn, self.runner.calls[1].args[1])

    def test_ensure_export_without_chap_record(self):
        self.exported(auth=None)
        self.state()
        self.runner.reply('apply', self.live())
        self.target.ensure_export(self.volume, self.device)
        self.assertNotIn('incominguser', self.runner.calls[1].input)

    def test_ensure_export_never_exported(self):
        self.target.ensure_export(self.volume, self.device)
        self.assertEqual([], self.runner.calls)

    def test_remove_export(self):
        self.exported()
        self.target.remove_export(self.volume)
        self.assertEqual(['remove'], self.runner.ops())
        self.assertEqual(['/etc/tgt/conf.d/cinder-zol-%s.conf'
                          % self.volume.name, self.iqn, USER],
                         self.runner.calls[0].args)

    def test_remove_export_keeps_shared_account(self):
        self.set_conf(chap_username=USER)
        self.exported()
        self.target.remove_export(self.volume)
        self.assertEqual('', self.runner.calls[0].args[2])

    def test_remove_export_never_exported(self):
        self.target.remove_export(self.volume)
        self.assertEqual(self.iqn, self.runner.calls[0].args[1])

    def test_remove_export_failure(self):
        self.exported()
        self.runner.fail('remove', 'tgtadm: this target is still active')
        e = self.assertRaises(exception.TargetError,
                              self.target.remove_export, self.volume)
        self.assertIn('still active', str(e))

    def test_initialize_connection(self):
        self.exported()
        self.runner.reply('allow', self.live(
            acls=[tgt.PLACEHOLDER_ADDRESS, tgt.PLACEHOLDER_INITIATOR,
                  INITIATOR]))
        info = self.target.initialize_connection(
            self.volume, {'initiator': INITIATOR, 'multipath': False})
        self.assertEqual('iscsi', info['driver_volume_type'])
        self.assertEqual(self.iqn, info['data']['target_iqn'])
        self.assertEqual(1, info['data']['target_lun'])
        self.assertEqual(SECRET, info['data']['auth_password'])
        self.assertEqual(['/etc/tgt/conf.d/cinder-zol-%s.conf'
                          % self.volume.name, self.iqn, INITIATOR],
                         self.runner.calls[0].args)
        self.assertNoSecretInArgv(SECRET)

    def test_initialize_connection_multipath(self):
        self.set_conf(target_secondary_ip_addresses=['192.0.2.11'])
        self.exported()
        self.runner.reply('allow', self.live(
            acls=[tgt.PLACEHOLDER_ADDRESS, tgt.PLACEHOLDER_INITIATOR,
                  INITIATOR]))
        info = self.target.initialize_connection(
            self.volume, {'initiator': INITIATOR, 'multipath': True})
        self.assertEqual(2, len(info['data']['target_portals']))

    def test_initialize_connection_acl_not_applied(self):
        self.exported()
        self.runner.reply('allow', self.live())
        self.assertRaises(exception.TargetError,
                          self.target.initialize_connection, self.volume,
                          {'initiator': INITIATOR})

    def test_initialize_connection_not_exported_on_host(self):
        self.exported()
        self.runner.fail('allow', '/etc/tgt/conf.d/x.conf does not exist: '
                         'the volume is not exported', exit_code=4)
        e = self.assertRaises(exception.TargetError,
                              self.target.initialize_connection,
                              self.volume, {'initiator': INITIATOR})
        self.assertIn('not exported', str(e))

    def test_terminate_connection(self):
        self.exported(volume_attachment=[self.attachment(INITIATOR)])
        self.target.terminate_connection(self.volume,
                                         {'initiator': INITIATOR})
        self.assertEqual(['deny'], self.runner.ops())
        self.assertEqual(tgt.PLACEHOLDER_INITIATOR,
                         self.runner.calls[0].args[2])
        self.assertEqual([INITIATOR], self.runner.calls[0].args[3:])

    def test_force_detach_removes_all(self):
        self.exported(volume_attachment=[self.attachment(INITIATOR),
                                         self.attachment(INITIATOR2)])
        self.target.terminate_connection(self.volume, None)
        self.assertEqual(['deny'], self.runner.ops())
        self.assertEqual([], self.runner.calls[0].args[3:])

    def test_multiattach_same_initiator_keeps_acl(self):
        self.exported(multiattach=True,
                      volume_attachment=[self.attachment(INITIATOR),
                                         self.attachment(INITIATOR)])
        self.target.terminate_connection(self.volume,
                                         {'initiator': INITIATOR})
        self.assertEqual([], self.runner.calls)

    def test_multiattach_other_initiator_removed(self):
        self.exported(multiattach=True,
                      volume_attachment=[self.attachment(INITIATOR),
                                         self.attachment(INITIATOR2)])
        self.target.terminate_connection(self.volume,
                                         {'initiator': INITIATOR2})
        self.assertEqual([INITIATOR2], self.runner.calls[0].args[3:])

    def test_terminate_never_removes_export(self):
        self.exported(volume_attachment=[self.attachment(INITIATOR)])
        self.target.terminate_connection(self.volume,
                                         {'initiator': INITIATOR})
        self.assertNotIn('remove', self.runner.ops())

    def test_terminate_failure(self):
        self.exported()
        self.runner.fail('deny', 'tgtadm: invalid request')
        self.assertRaises(exception.TargetError,
                          self.target.terminate_connection, self.volume,
                          {'initiator': INITIATOR})

    def test_refresh_size(self):
        self.exported()
        self.target.refresh_size(self.volume, self.device)
        self.assertEqual(['refresh'], self.runner.ops())
        self.assertEqual([self.iqn, self.device, self.volume.id],
                         self.runner.calls[0].args)

    def test_refresh_size_failure(self):
        self.exported()
        self.runner.fail('refresh', 're-adding LUN 1 failed: tgtadm: '
                         'invalid request')
        e = self.assertRaises(exception.TargetError,
                              self.target.refresh_size, self.volume,
                              self.device)
        self.assertIn('re-adding LUN 1 failed', str(e))

    def test_refresh_size_not_exported(self):
        self.target.refresh_size(self.volume, self.device)
        self.assertEqual([], self.runner.calls)


class TgtParsingTestCase(test.TestCase):

    def test_parse_show(self):
        iqn = 'iqn.2010-10.org.openstack:volume-1'
        text = (fake.show_target(iqn, '/dev/zvol/t/volume-1', tid=3,
                                 sessions=True) +
                fake.show_target('iqn.2010-10.org.openstack:volume-2',
                                 '/dev/zvol/t/volume-2', tid=5, acls=['ALL']))
        parsed = tgt.parse_show(text)
        self.assertEqual(3, parsed[iqn]['tid'])
        self.assertEqual({0: 'None', 1: '/dev/zvol/t/volume-1'},
                         parsed[iqn]['luns'])
        self.assertTrue(parsed[iqn]['sessions'])
        self.assertEqual([tgt.PLACEHOLDER_ADDRESS, tgt.PLACEHOLDER_INITIATOR],
                         parsed[iqn]['acls'])
        self.assertEqual(['ALL'],
                         parsed['iqn.2010-10.org.openstack:volume-2']['acls'])
        self.assertEqual({}, tgt.parse_show(''))

    def test_conf_initiators(self):
        text = tgt.render_conf('id', 'iqn.2010-10.org.openstack:v', '/dev/x',
                               None, [INITIATOR])
        self.assertEqual([INITIATOR], tgt.conf_initiators(
            text, 'iqn.2010-10.org.openstack:v'))
        self.assertEqual([], tgt.conf_initiators(
            text, 'iqn.2010-10.org.openstack:other'))
        self.assertEqual([], tgt.conf_initiators('', 'x'))
