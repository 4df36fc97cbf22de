"""The root helper's own checks: arguments, payloads, the zvol it may
touch, zvol data streams, and the agent's sudo session to it."""

import importlib
import io
import json
import os
import tempfile

from unittest import mock

import ddt
import testtools

from cinder_zol.host import agent
from cinder_zol.host import config
from cinder_zol.host import devices
from cinder_zol.host import errors
from cinder_zol.host import execute
from cinder_zol.host import helpers
from cinder_zol.host.root import backend
from cinder_zol.host.root import main as root_main
from cinder_zol.host.root import streams
from cinder_zol.host import wire
from tests.unit import host_fixture

PARENT = host_fixture.PARENT
MiB = 2 ** 20
IQN = 'iqn.2010-10.org.openstack:volume-a'
GOOD = {'iqn': IQN, 'chap': ['user0123456789abcdef', 'secret0123456789'],
        'initiators': ['iqn.1993-08.org.debian:01:a'], 'port': 3260,
        'serial': '0123abcd-0000-1111-2222-333344445555', 'wait': 5}


@ddt.ddt
class TargetRequestTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = host_fixture.make_host()
        # the multipath ports the operator allowed in host.conf
        self.host.config.target_ports = [3260, 3261, 3262]
        self.backend = host_fixture.RecordingTargetBackend()
        self.host.target_backends['tgtadm'] = self.backend
        self.zfs = self.host.executor.tools['zfs']
        self.host.zfs(PARENT).create_volume('volume-a', 2 ** 30, True, {})

    def export(self, **changes):
        payload = dict(GOOD, **changes)
        return agent.request(self.host,
                             ['target-export', PARENT, 'volume-a', 'tgtadm'],
                             json.loads(json.dumps(payload)))

    def test_export(self):
        result = self.export()
        self.assertEqual(1, result['tid'])
        self.assertEqual(
            self.host.devices.path('/dev/zvol/%s/volume-a' % PARENT),
            self.backend.exports['volume-a']['device'])

    @ddt.data({'iqn': 'iqn.x y'}, {'iqn': None},
              {'chap': ['user', 'short']}, {'chap': ['u s', 'x' * 16]},
              {'chap': 'CHAP u s'}, {'initiators': 'iqn.1993-08.org.x:y'},
              {'initiators': ['ALL']}, {'initiators': ['iqn.x;id']},
              {'port': 0}, {'port': '3260'}, {'serial': '../etc'},
              {'serial': 'x y'}, {'ports': 3260}, {'ports': []},
              {'ports': [3260, 0]}, {'ports': [3260, '3261']},
              {'ports': [True]}, {'ports': list(range(3260, 3277))})
    def test_bad_payload_refused_before_anything_runs(self, changes):
        del self.host.executor.calls[:]
        self.assertRaises(errors.Refused, self.export, **changes)
        self.assertEqual({}, self.backend.exports)
        self.assertEqual([], self.host.executor.calls)

    def test_every_port_of_the_portals(self):
        self.export(ports=[3261, 3260, 3261])
        self.assertEqual([3260, 3261], self.backend.exports['volume-a'][
            'ports'])

    def test_a_driver_without_ports_wants_port(self):
        self.export(port=3262)
        self.assertEqual([3262], self.backend.exports['volume-a']['ports'])

    def test_foreign_zvol_never_exported(self):
        self.zfs._add(PARENT + '/volume-b', 'volume', volsize=2 ** 30)
        e = self.assertRaises(errors.NotOwned, agent.request, self.host,
                              ['target-export', PARENT, 'volume-b',
                               'tgtadm'], dict(GOOD))
        self.assertIn('not managed', str(e))
        self.assertEqual({}, self.backend.exports)

    def test_missing_zvol(self):
        self.assertRaises(errors.NotFound, agent.request, self.host,
                          ['target-export', PARENT, 'volume-z', 'tgtadm'],
                          dict(GOOD))

    def test_helper_not_enabled(self):
        self.host.config.target_helpers = ['lioadm']
        e = self.assertRaises(errors.Refused, self.export)
        self.assertIn('zol_target_helper', e.hint)

    def test_deny_all(self):
        self.export()
        agent.request(self.host, ['target-deny', PARENT, 'volume-a', 'tgtadm'],
                      {'iqn': IQN, 'initiators': None})
        self.assertEqual([], self.backend.exports['volume-a']['initiators'])

    def test_not_root(self):
        operation = wire.OPERATIONS['target-export']
        with mock.patch.object(os, 'geteuid', return_value=1000):
            self.assertRaises(errors.PermissionDenied, root_main.dispatch,
                              self.host, operation, [], {})


class BackendMapTestCase(testtools.TestCase):

    def test_every_configurable_helper_has_a_backend(self):
        self.assertEqual(list(helpers.NAMES),
                         config.HostConfig(['tank/cinder']).target_helpers)
        for helper in helpers.HELPERS.values():
            module = importlib.import_module(
                'cinder_zol.host.root.' + helper.backend)
            self.assertTrue(issubclass(module.Backend, backend.Backend),
                            helper.backend)
            self.assertEqual(helper.name, module.Backend.tool)


class DeviceTestCase(testtools.TestCase):

    def test_waits_for_a_zvol_node(self):
        e = self.assertRaises(errors.Timeout, devices.wait_for_device,
                              '/dev/zvol/tank/cinder/nothing-here', 0.2)
        self.assertIn('did not appear', str(e))

    def test_lost_udev_event_is_replayed_while_the_link_is_missing(self):
        calls = []
        with mock.patch.object(devices, 'RETRIGGER_AFTER', 0.1):
            self.assertRaises(errors.Timeout, devices.wait_for_device,
                              '/dev/zvol/tank/cinder/nothing-here', 0.45,
                              lambda: calls.append('trigger'))
        self.assertGreater(len(calls), 2)    # not only once

    def test_retrigger_replays_zvol_events(self):
        executor = mock.Mock()
        devices.retrigger_zvols(executor)
        self.assertEqual(
            [mock.call(['udevadm', 'trigger', '--action=change',
                        '--subsystem-match=block', '--sysname-match=zd*']),
             mock.call(['udevadm', 'settle', '--timeout=10'])],
            executor.run.call_args_list)

    def test_link_to_something_else_is_not_a_zvol(self):
        tmp = tempfile.mkdtemp()
        link = os.path.join(tmp, 'volume-a')
        os.symlink('/dev/null', link)
        self.assertRaises(errors.Timeout, devices.wait_for_device, link, 0.2)


class StreamTestCase(testtools.TestCase):
    """write/read records between the driver and a zvol (a file here)."""

    def setUp(self):
        super().setUp()
        self.host = host_fixture.make_host()
        self.host.zfs(PARENT).create_volume('volume-a', 8 * MiB, True, {})
        fd, self.device = tempfile.mkstemp()
        os.ftruncate(fd, 8 * MiB)
        os.close(fd)
        self.host.wait_for_device = (
            lambda link, wait, retrigger=None: self.device)

    @staticmethod
    def records(*extents, total):
        out = b''
        for offset, data in extents:
            out += offset.to_bytes(8, 'big') + len(data).to_bytes(8, 'big')
            out += data
        return out + total.to_bytes(8, 'big') + bytes(8)

    def stream(self, op, stdin=b''):
        out = io.StringIO()
        raw = io.BytesIO()
        out.buffer = raw
        rc = streams.stream(self.host, wire.OPERATIONS[op],
                            [PARENT, 'volume-a'], io.BytesIO(stdin), out)
        return rc, out.getvalue(), raw.getvalue()

    def test_write_only_what_was_sent(self):
        with open(self.device, 'r+b') as f:
            f.write(b'\x77' * MiB)   # old data outside the extents stays
        rc, out, _ = self.stream('write', self.records(
            (2 * MiB, b'A' * 1000), (5 * MiB, b'B' * MiB), total=8 * MiB))
        self.assertEqual(0, rc)
        self.assertEqual({'written': 1000 + MiB, 'size': 8 * MiB},
                         json.loads(out)['result'])
        with open(self.device, 'rb') as f:
            data = f.read()
        self.assertEqual(b'\x77' * MiB, data[:MiB])
        self.assertEqual(b'A' * 1000, data[2 * MiB:2 * MiB + 1000])
        self.assertEqual(b'B' * MiB, data[5 * MiB:6 * MiB])

    def test_write_beyond_the_volume_refused(self):
        rc, out, _ = self.stream('write', self.records(
            (8 * MiB - 10, b'x' * 100), total=8 * MiB))
        self.assertEqual(1, rc)
        self.assertIn('beyond the volume size',
                      json.loads(out)['error']['stderr'])

    def test_truncated_stream_fails(self):
        data = self.records((0, b'x' * 100), total=8 * MiB)[:50]
        rc, out, _ = self.stream('write', data)
        self.assertEqual(1, rc)
        self.assertIn('ended early', json.loads(out)['error']['message'])

    def test_read_leaves_out_zero_blocks(self):
        with open(self.device, 'r+b') as f:
            f.seek(3 * MiB)
            f.write(b'C' * 10)
        rc, _out, raw = self.stream('read')
        self.assertEqual(0, rc)
        self.assertEqual(self.records((3 * MiB, b'C' * 10 + bytes(MiB - 10)),
                                      total=8 * MiB), raw)


class ShortReads(io.RawIOBase):
    """A pipe that hands out at most ``most`` bytes per read."""

    def __init__(self, data, most):
        self.data = data
        self.pos = 0
        self.most = most
        self.reads = 0

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), self.most, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        self.reads += 1
        return n


class FramingTestCase(StreamTestCase):
    """The record stream's edges, with the reader thread ahead of writes."""

    def test_short_reads(self):
        first, second = os.urandom(3000), os.urandom(MiB)
        data = self.records((7, first), (3 * MiB + 1, second),
                            total=8 * MiB)
        inp = ShortReads(data, 999)
        rc = streams.stream(self.host, wire.OPERATIONS['write'],
                            [PARENT, 'volume-a'], inp, io.StringIO())
        self.assertEqual(0, rc)
        self.assertGreater(inp.reads, len(data) // 999)
        with open(self.device, 'rb') as f:
            disk = f.read()
        self.assertEqual(first, disk[7:3007])
        self.assertEqual(second, disk[3 * MiB + 1:4 * MiB + 1])

    def test_the_end_record_carries_the_size(self):
        rc, out, _ = self.stream('write', self.records(total=5 * MiB))
        self.assertEqual(0, rc)
        self.assertEqual({'written': 0, 'size': 5 * MiB},
                         json.loads(out)['result'])

    def test_nothing_after_the_end_is_read(self):
        """A session's next request follows the stream: it stays intact."""
        follow = b'{"argv": ["target-version", "tgtadm"]}\n'
        data = self.records(*[(i * 4096, os.urandom(4096))
                              for i in range(20)], total=8 * MiB)
        inp = io.BytesIO(data + follow)
        rc = streams.stream(self.host, wire.OPERATIONS['write'],
                            [PARENT, 'volume-a'], inp, io.StringIO())
        self.assertEqual(0, rc)
        self.assertEqual(len(data), inp.tell())
        self.assertEqual(follow, inp.read())

    def test_nothing_after_the_end_is_read_from_a_pipe(self):
        """The same through a real pipe and a buffered reader (stdin).

        All of it fits the pipe's buffer, so nothing here waits on a
        writer (the unit tests may run under eventlet).
        """
        follow = b'{"argv": ["target-version", "tgtadm"]}\n'
        data = self.records((MiB, os.urandom(8192)), (5 * MiB, b'z' * 10),
                            total=8 * MiB)
        rfd, wfd = os.pipe()
        with open(wfd, 'wb') as w:
            w.write(data + follow + b'more')
        with open(rfd, 'rb') as inp:
            rc = streams.stream(self.host, wire.OPERATIONS['write'],
                                [PARENT, 'volume-a'], inp, io.StringIO())
            self.assertEqual(0, rc)
            self.assertEqual(follow, inp.readline())
            self.assertEqual(b'more', inp.read())

    def test_error_mid_stream_keeps_what_came_before(self):
        """A malformed record after good ones: refused, with a reason."""
        good = os.urandom(4096)
        data = (self.records((0, good), total=8 * MiB)[:-16] +
                (2 * MiB).to_bytes(8, 'big') +
                (wire.MAX_RECORD + 1).to_bytes(8, 'big'))
        rc, out, _ = self.stream('write', data + b'x' * 100)
        self.assertEqual(1, rc)
        error = json.loads(out)['error']
        self.assertIn('a record of %d bytes' % (wire.MAX_RECORD + 1),
                      error['stderr'])
        with open(self.device, 'rb') as f:
            self.assertEqual(good, f.read(4096))

    def test_stream_ending_inside_a_header(self):
        data = self.records((0, b'a' * 10), total=8 * MiB)
        rc, out, _ = self.stream('write', data[:26 + 5])
        self.assertEqual(1, rc)
        error = json.loads(out)['error']
        self.assertIn('ended early', error['message'])
        self.assertIn('got 5 of the 16 bytes', error['stderr'])

    def test_write_failure_ends_the_transfer(self):
        data = self.records(*[(i * 4096, b'w' * 4096) for i in range(50)],
                            total=8 * MiB)
        inp = io.BytesIO(data)
        with mock.patch.object(streams.os, 'pwrite',
                               side_effect=OSError(5, 'Input/output error')):
            rc = streams.stream(self.host, wire.OPERATIONS['write'],
                                [PARENT, 'volume-a'], inp,
                                out := io.StringIO())
        self.assertEqual(1, rc)
        error = json.loads(out.getvalue())['error']
        self.assertIn('writing', error['message'])
        self.assertEqual('Input/output error', error['stderr'])

    def test_reader_stops_when_told(self):
        """A writer that gives up stops the reader: it reads no further."""
        data = self.records(*[(i * 4096, b'r' * 4096) for i in range(50)],
                            total=8 * MiB)
        inp = io.BytesIO(data)
        reader = streams.RecordReader(inp, 8 * MiB, 'dev', depth=2)
        records = iter(reader)
        self.assertEqual((0, bytearray(b'r' * 4096)), next(records))
        reader.stop()
        reader._thread.join()
        # one taken, two queued, one read that could not be queued
        self.assertLessEqual(inp.tell(), 4 * (16 + 4096))
        self.assertIsNone(reader.total)

    def test_reader_hands_over_unexpected_failures(self):
        inp = mock.Mock()
        inp.readinto.side_effect = ValueError('I/O operation on closed '
                                              'file')
        reader = streams.RecordReader(inp, 8 * MiB, '/dev/zd0')
        e = self.assertRaises(errors.HostError, list, reader)
        self.assertEqual('reading the data for /dev/zd0 failed', e.message)
        self.assertIn('closed file', e.stderr)


class RootSessionTestCase(testtools.TestCase):
    """A non-root agent reaches the root helper through one sudo session."""

    def setUp(self):
        super().setUp()
        self.host = host_fixture.make_host()
        self.host.target_runner = None
        self.mock_object = self.useFixture

    def test_sudo_refusal_is_explained(self):
        done = execute.Completed(['sudo'], 1, '',
                                 'sudo: a password is required\n')
        e = self.assertRaises(errors.PermissionDenied, agent._relay, done)
        self.assertIn('/etc/sudoers.d/cinder-zol', e.hint)

    def test_reply_and_notes_are_relayed(self):
        reply = {'ok': True, 'result': {'tid': 3},
                 'notes': ['recreated target']}
        done = execute.Completed(['x'], 0, json.dumps(reply) + '\n', '')
        with mock.patch.object(agent.log, 'note') as note:
            self.assertEqual({'tid': 3}, agent._relay(done))
        note.assert_called_once_with('recreated target')

    def test_error_reply_is_raised_as_its_kind(self):
        reply = {'ok': False, 'notes': [],
                 'error': {'kind': 'TargetError', 'message': 'tgtadm failed',
                           'stderr': "tgtadm: can't find the target",
                           'hint': ''}}
        done = execute.Completed(['x'], 1, json.dumps(reply) + '\n', '')
        e = self.assertRaises(errors.TargetError, agent._relay, done)
        self.assertIn("can't find the target", str(e))

    def test_session_reused_and_restarted(self):
        script = ('import sys, json\n'
                  'for line in sys.stdin:\n'
                  '    req = json.loads(line)\n'
                  '    if req["argv"][0] == "die":\n'
                  '        sys.exit(3)\n'
                  '    print(json.dumps({"ok": True, "result": {"pid": '
                  '__import__("os").getpid()}, "notes": []}), flush=True)\n')
        path = os.path.join(tempfile.mkdtemp(), 'helper.py')
        with open(path, 'w') as f:
            f.write(script)
        real_popen = agent.subprocess.Popen

        def popen(argv, **kwargs):
            return real_popen(['python3', path], **kwargs)
        with mock.patch.object(os, 'geteuid', return_value=1000), \
                mock.patch.object(agent.subprocess, 'Popen', popen):
            session = agent.RootSession()
            first = session.call(['target-show'], {})
            second = session.call(['target-show'], {})
            self.assertEqual(first, second)     # one helper process
            self.assertRaises(errors.TargetError, session.call, ['die'], {})
            third = session.call(['target-show'], {})
            self.assertNotEqual(first, third)   # a new helper
            session.process.kill()
            session.process.wait()
