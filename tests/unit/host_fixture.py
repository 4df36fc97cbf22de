"""An in-process storage host for the unit tier.

The real agent code (:mod:`cinder_zol.host`), with fake tools behind its
executor: ``zfs`` answered by :class:`tests.unit.fake_zfs.FakeZfsHost`,
other programs by whatever fake a test registers (``tgtadm``...). Target
operations run in-process without the root check, device nodes are taken
as present, and locks live in a temporary directory. ``InProcessRunner``
answers the driver's requests through this host with the real dispatch and
reply encoding, so driver tests cross the same JSON boundary as SSH.
"""

import contextlib
import io
import json
import os
import tempfile

from cinder_zol.host import agent
from cinder_zol.host import config
from cinder_zol.host import errors
from cinder_zol.host import execute
from cinder_zol.host.root import streams
from cinder_zol.host import serve
from cinder_zol.host import wire
from cinder_zol import runner as runner_mod
from tests.unit import fake_zfs

PARENT = 'tank/cinder'


class FakeExecutor(object):
    """Routes each argv to the fake registered for its program."""

    def __init__(self, **tools):
        self.tools = tools
        self.calls = []

    def run(self, argv, input=None, timeout=None):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        tool = self.tools.get(argv[0])
        if tool is None:
            return execute.Completed(argv, 127, '',
                                     '%s: command not found\n' % argv[0])
        return tool.run(argv, input=input, timeout=timeout)


def make_host(zfs=None, datasets=(PARENT,), helpers=('tgtadm', 'lioadm'),
              lock_wait=5, **tools):
    """An agent context over fakes; ``host.executor.tools`` holds them."""
    zfs = zfs or fake_zfs.FakeZfsHost(datasets[0])
    tmp = tempfile.mkdtemp(prefix='cinder-zol-host-')
    host = agent.new_context(config.HostConfig(list(datasets), list(helpers),
                                               user='nobody'),
                             executor=FakeExecutor(zfs=zfs, **tools),
                             lock_dir=os.path.join(tmp, 'locks'),
                             target_lock_dir=os.path.join(tmp,
                                                          'target-locks'),
                             lock_wait=lock_wait)
    host.target_runner = (lambda operation, args, payload:
                          serve.IMPLEMENTATIONS[operation.name](
                              host, *args, payload=payload))
    host.devices = FakeDevices(zfs, tmp)
    host.wait_for_device = (lambda link, wait, retrigger=None:
                            host.devices.path(link, wait))
    host.device_of = host.devices.known
    host.target_state_dir = os.path.join(tmp, 'target-state')
    host.tmp = tmp
    return host


class FakeDevices(object):
    """A sparse file per zvol, standing for /dev/zvol/<dataset>."""

    def __init__(self, zfs, tmp):
        self.zfs = zfs
        self.dir = os.path.join(tmp, 'dev')
        os.mkdir(self.dir)
        self.links = {}     # /dev/zvol link -> the file it was given as

    def known(self, link):
        """What exports name the zvol of ``link`` by (device_of).

        The file it was first given as, else the link itself.
        """
        return self.links.get(link, link)

    def path(self, link, wait=None):
        ds = self.zfs.datasets[link[len('/dev/zvol/'):]]
        # the file follows the dataset through renames, as a zvol's data
        # does
        if 'device' not in ds:
            ds['device'] = os.path.join(self.dir, 'zd%d' % len(
                os.listdir(self.dir)))
        path = ds['device']
        self.links[link] = path
        size = ds['volsize']
        with open(path, 'ab') as f:
            if f.tell() < size:
                f.truncate(size)
        return path

    def read(self, dataset, offset=0, length=None):
        with open(self.path('/dev/zvol/' + dataset), 'rb') as f:
            f.seek(offset)
            return f.read(length) if length is not None else f.read()


class InProcessRunner(object):
    """The driver's runner, answered by an in-process agent."""

    host = 'fake-zol'

    def __init__(self, agent_host):
        self.agent_host = agent_host
        self.requests = []

    def request(self, program, argv, payload, timeout=None):
        self.requests.append(list(argv))
        try:
            result = agent.request(self.agent_host, list(argv),
                                   json.loads(json.dumps(payload or {})))
            reply = serve.reply_ok(result)
        except errors.HostError as e:
            reply = serve.reply_error(e)
        return json.dumps(reply)

    def ops(self):
        return [r[0] for r in self.requests]

    def send_stream(self, argv, chunks, timeout=None):
        """``program write PARENT NAME`` answered by the root helper code."""
        self.requests.append(list(argv[1:]))
        inp = io.BytesIO(b''.join(chunks))
        out = io.StringIO()
        rc = streams.stream(self.agent_host, wire.OPERATIONS[argv[1]],
                            list(argv[2:]), inp, out)
        return runner_mod.Result(out.getvalue(), '', rc)

    @contextlib.contextmanager
    def receive_stream(self, argv, timeout=None):
        self.requests.append(list(argv[1:]))
        out = io.StringIO()
        out.buffer = io.BytesIO()
        rc = streams.stream(self.agent_host, wire.OPERATIONS[argv[1]],
                            list(argv[2:]), io.BytesIO(), out)
        if rc:
            from oslo_concurrency import processutils
            raise processutils.ProcessExecutionError(exit_code=rc,
                                                     stderr='read failed')
        out.buffer.seek(0)
        yield out.buffer

    def close(self):
        pass


class RecordingTargetBackend(object):
    """A target backend that keeps exports in memory (driver-level tests).

    Behaves like the real backends where the driver can tell: the first
    export's credentials win, initiators accumulate, remove forgets.
    """

    tool = 'recording'
    restores_itself = True

    def __init__(self):
        self.exports = {}
        self.calls = []

    def storage(self, name, iqn):
        entry = self.exports.get(name)
        if entry is None or entry['iqn'] != iqn:
            return None
        return [entry['device']]

    def export(self, name, iqn, device, chap, initiators, ports, serial):
        self.calls.append(('export', name, list(initiators)))
        entry = self.exports.get(name)
        changed = entry is None
        if entry is None:
            entry = self.exports[name] = {
                'iqn': iqn, 'device': device, 'chap': chap, 'serial': serial,
                'initiators': [], 'tid': len(self.exports) + 1}
        entry['ports'] = list(ports)
        for initiator in initiators:
            if initiator not in entry['initiators']:
                entry['initiators'].append(initiator)
                changed = True
        return {'tid': entry['tid'], 'lun': 1, 'chap': entry['chap'],
                'initiators': list(entry['initiators']), 'changed': changed}

    def remove(self, name, iqn):
        self.calls.append(('remove', name))
        return {'removed': self.exports.pop(name, None) is not None}

    def allow(self, name, iqn, initiator, chap):
        self.calls.append(('allow', name, initiator))
        self.exports[name]['initiators'].append(initiator)
        return {'initiators': self.exports[name]['initiators']}

    def deny(self, name, iqn, initiators):
        self.calls.append(('deny', name, initiators))
        entry = self.exports.get(name)
        if entry is not None:
            entry['initiators'] = [] if initiators is None else [
                i for i in entry['initiators'] if i not in initiators]
        return {'initiators': entry['initiators'] if entry else []}

    def resize(self, name, iqn, device, serial):
        self.calls.append(('resize', name))
        return {'changed': name in self.exports}

    def show(self, name, iqn):
        return self.exports.get(name, {})

    def version(self):
        return {'helper': self.tool}
