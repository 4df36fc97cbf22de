"""The driver's client of the storage host agent: replies, error kinds,
notes, and names checked before anything is sent."""

import json

from unittest import mock

import ddt
import testtools

from cinder import exception as cinder_exception

from cinder_zol import exception
from cinder_zol import storage


class FakeRunner(object):
    host = 'storage1'

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests = []

    def request(self, program, argv, payload, timeout=None):
        # the payload must be what the wire can carry
        self.requests.append((program, argv, json.loads(json.dumps(payload))))
        reply = self.replies.pop(0)
        return reply if isinstance(reply, str) else json.dumps(reply)


def error(kind, message='op failed', stderr='', hint=''):
    return {'ok': False, 'notes': [], 'error': {
        'kind': kind, 'message': message, 'stderr': stderr, 'hint': hint}}


@ddt.ddt
class StorageHostTestCase(testtools.TestCase):

    def host(self, *replies):
        self.runner = FakeRunner(*replies)
        return storage.StorageHost(self.runner, 'tank/cinder',
                                   '/opt/agent')

    def test_request_and_result(self):
        host = self.host({'ok': True, 'result': {'result': 'destroyed'},
                          'notes': []})
        self.assertEqual('destroyed', host.delete_volume('volume-a'))
        self.assertEqual([('/opt/agent', ['delete', 'tank/cinder',
                                          'volume-a'], {})],
                         self.runner.requests)

    def test_payload_carries_wishes(self):
        host = self.host({'ok': True, 'result': {}, 'notes': []})
        host.clone_volume('volume-a', 'volume-b', 2 ** 31,
                          {'props': {'compression': 'lz4'}, 'sparse': False})
        self.assertEqual(
            ('/opt/agent', ['clone', 'tank/cinder', 'volume-a', 'volume-b',
                            str(2 ** 31)],
             {'props': {'compression': 'lz4'}, 'sparse': False}),
            self.runner.requests[0])

    @ddt.data(('NotFound', exception.ZfsNotFound),
              ('Exists', exception.ZfsExists),
              ('Busy', exception.ZfsBusy),
              ('HasDependents', exception.ZfsHasDependents),
              ('OutOfSpace', exception.ZfsOutOfSpace),
              ('Invalid', exception.ZfsInvalid),
              ('Refused', exception.HostRefused),
              ('NotOwned', exception.NotOwned),
              ('PermissionDenied', exception.HostPermissionDenied),
              ('TargetError', exception.TargetError),
              ('Timeout', exception.HostTimeout),
              ('Unavailable', exception.HostSetupError),
              ('Error', exception.HostOperationFailed),
              ('SomethingNew', exception.HostOperationFailed))
    @ddt.unpack
    def test_error_kinds(self, kind, cls):
        host = self.host(error(kind, 'zfs destroy tank/cinder/x failed',
                               "cannot destroy 'tank/cinder/x': it broke",
                               'Do something.'))
        e = self.assertRaises(cls, host.delete_volume, 'x')
        self.assertIsInstance(e, cinder_exception.VolumeBackendAPIException)
        self.assertEqual("zfs destroy tank/cinder/x failed: cannot destroy "
                         "'tank/cinder/x': it broke Do something.", str(e))

    def test_secrets_masked_in_errors(self):
        host = self.host(error('TargetError', 'tgtadm failed',
                               'tgtadm --password=hunter2hunter2 failed'))
        e = self.assertRaises(exception.TargetError, host.target, 'export',
                              'x', 'tgtadm', {})
        self.assertNotIn('hunter2', str(e))

    def test_notes_are_logged(self):
        host = self.host({'ok': True, 'result': {'result': 'deleted-x-1'},
                          'notes': ['kept as deleted-x-1']})
        with mock.patch.object(storage.LOG, 'info') as info:
            host.delete_volume('x')
        self.assertEqual('kept as deleted-x-1',
                         info.call_args[0][1]['note'])

    def test_garbage_reply(self):
        host = self.host('this is not json')
        e = self.assertRaises(exception.HostOperationFailed, host.version)
        self.assertIn('unexpected reply', str(e))

    @ddt.data('tank', 'tank/../x', 'tank/x;y', '')
    def test_unsafe_parent_refused(self, parent):
        self.assertRaises(exception.UnsafeName, storage.StorageHost,
                          FakeRunner(), parent)
