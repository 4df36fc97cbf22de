"""The root helper: target changes and zvol data, with a fixed vocabulary.

tgtd accepts management only from root, LIO and nvmet live in root-only
configfs, and zvol device nodes are root:disk: these operations need root.
The agent runs them in-process when it is root (a lab) and otherwise
through ``sudo -n /usr/libexec/cinder-zol/cinder-zol-target`` (one sudoers
line allows exactly that program). Whoever calls, the helper itself:

* re-validates every argument (sudo cannot see argv boundaries),
* derives the device from PARENT/NAME, checks in zfs that it is a volume
  carrying ``cinder_zol:managed=yes`` below a parent listed in host.conf,
  and that the /dev/zvol link resolves to a zvol device node,
* takes its own lock in a root-only directory,
* never logs a CHAP secret; secrets and initiator lists arrive as JSON.
"""

import importlib
import json
import os
import queue
import re
import stat
import sys
import threading
import time

from . import config as config_mod
from . import errors
from . import locks
from . import log
from . import names
from . import ops

_ZVOL_NODE = re.compile(r'^/dev/zd[0-9]+$')
CHUNK = 1 << 20


# helper -> the module of its backend, imported on first use (rtslib-fb
# only where LIO runs)
BACKENDS = {'tgtadm': 'tgt', 'lioadm': 'lio', 'nvmet': 'nvmet'}


def backend(host, helper):
    """The target implementation for ``helper`` (one of BACKENDS)."""
    host.config.check_helper(helper)
    if helper not in host.target_backends:
        module = importlib.import_module('.' + BACKENDS[helper],
                                         __package__)
        host.target_backends[helper] = module.Backend(host.executor)
    return host.target_backends[helper]


def managed_zvol(host, parent, name, wait=30):
    """Device path of a managed zvol below an allowed parent.

    Waits up to ``wait`` seconds for udev to create the /dev/zvol link.
    """
    host.config.check_parent(parent)
    zfs_host = host.zfs(parent)
    ds = zfs_host.get(name)
    if ds is None or ds.type != 'volume':
        raise errors.NotFound('%s is not a volume'
                              % zfs_host.path(name), 'dataset does not exist')
    if not ds.managed:
        raise errors.NotOwned('%s is not managed by cinder-zol'
                              % zfs_host.path(name))
    return host.wait_for_device(zfs_host.device(name), wait,
                                lambda: retrigger_zvols(host.executor))


# A busy storage host sometimes loses a new zvol's udev event: the node
# exists, the /dev/zvol link never comes. After this long, ask udev again.
RETRIGGER_AFTER = 5


def retrigger_zvols(executor):
    """Replay udev's change events of the zvol nodes (links are idempotent)."""
    executor.run(['udevadm', 'trigger', '--action=change',
                  '--subsystem-match=block', '--sysname-match=zd*'])
    executor.run(['udevadm', 'settle', '--timeout=10'])


def wait_for_device(link, wait, retrigger=None):
    """The /dev/zvol link once it resolves to a zvol device node.

    ``retrigger()`` runs once if the link is still missing after
    RETRIGGER_AFTER seconds.
    """
    start = time.monotonic()
    deadline = start + wait
    while True:
        if retrigger and time.monotonic() - start >= RETRIGGER_AFTER:
            retrigger()
            retrigger = None
        real = os.path.realpath(link)
        try:
            if _ZVOL_NODE.match(real) and stat.S_ISBLK(os.stat(real).st_mode):
                return link
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise errors.Timeout('device %s did not appear within %s s'
                                 % (link, wait),
                                 hint='Check udev and the volmode property '
                                      'on the storage host.')
        time.sleep(0.1)


def locked(host):
    return locks.hold(host.target_lock_dir, 'targets', wait=host.lock_wait)


def dispatch(host, operation, args, payload):
    """Run a target operation (as root); its result dict."""
    if os.geteuid() != 0:
        raise errors.PermissionDenied('%s must run as root' % operation.name)
    return operation.func(host, *args, payload=payload)


def _request(payload, *keys):
    """The payload fields an operation needs, validated."""
    values = []
    for key in keys:
        value = payload.get(key)
        if key == 'iqn':
            value = names.iscsi_name(value, 'target IQN') \
                if not str(value).startswith('nqn.') else names.nqn(value)
        elif key == 'chap':
            value = names.chap(value)
        elif key == 'initiators':
            if value is not None:
                if not isinstance(value, list) or len(value) > 256:
                    raise errors.Refused('initiators must be a list')
                value = [_host_id(v) for v in value]
        elif key == 'initiator':
            value = _host_id(value)
        elif key == 'port':
            _port(value)
        elif key == 'ports':
            # every port the driver's portals use (multipath); a driver
            # that sends none wants only ``port``
            if value is None:
                value = [payload.get('port')]
            if not isinstance(value, list) or not 0 < len(value) <= 16:
                raise errors.Refused('ports must be a list of 1 to 16 TCP '
                                     'ports')
            value = sorted(set(_port(v) for v in value))
        elif key == 'serial':
            value = names.serial(value)
        elif key == 'wait':
            if not isinstance(value, (int, float)) or not 0 < value <= 600:
                value = 30
        values.append(value)
    return values


def _port(value):
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 0 < value < 65536:
        raise errors.Refused('port %r is not a TCP port' % (value,))
    return value


def _host_id(value):
    if isinstance(value, str) and value.startswith('nqn.'):
        return names.nqn(value, 'host NQN')
    return names.iscsi_name(value, 'initiator')


@ops.op('target-export', 'PARENT NAME HELPER', payload=True, target=True)
def export(host, parent, name, helper, payload):
    """Create or complete the export; initiators given are allowed.

    Idempotent: an existing export keeps its credentials (returned as
    ``chap``) and its other initiators, so two attachments that race to
    export the same volume agree on what the target holds. The target
    listens on every port in ``ports`` (all the driver's portals), on all
    addresses; a listener that is missing (lost, or a portal added to the
    driver's configuration since) is added back.
    """
    iqn, chap, initiators, ports, serial, wait = _request(
        payload, 'iqn', 'chap', 'initiators', 'ports', 'serial', 'wait')
    device = managed_zvol(host, parent, name, wait)
    with locked(host):
        return backend(host, helper).export(name, iqn, device, chap,
                                            initiators or [], ports, serial)


@ops.op('target-remove', 'PARENT NAME HELPER', payload=True, target=True)
def remove(host, parent, name, helper, payload):
    host.config.check_parent(parent)
    iqn, = _request(payload, 'iqn')
    with locked(host):
        return backend(host, helper).remove(name, iqn)


@ops.op('target-allow', 'PARENT NAME HELPER', payload=True, target=True)
def allow(host, parent, name, helper, payload):
    host.config.check_parent(parent)
    iqn, initiator, chap = _request(payload, 'iqn', 'initiator', 'chap')
    with locked(host):
        return backend(host, helper).allow(name, iqn, initiator, chap)


@ops.op('target-deny', 'PARENT NAME HELPER', payload=True, target=True)
def deny(host, parent, name, helper, payload):
    """Remove initiators from the ACL; ``initiators: null`` removes all."""
    host.config.check_parent(parent)
    iqn, initiators = _request(payload, 'iqn', 'initiators')
    with locked(host):
        return backend(host, helper).deny(name, iqn, initiators)


@ops.op('target-resize', 'PARENT NAME HELPER', payload=True, target=True)
def resize(host, parent, name, helper, payload):
    """Make the live target report the zvol's current size."""
    iqn, serial = _request(payload, 'iqn', 'serial')
    device = managed_zvol(host, parent, name)
    with locked(host):
        return backend(host, helper).resize(name, iqn, device, serial)


@ops.op('target-show', 'PARENT NAME HELPER', payload=True, target=True)
def show(host, parent, name, helper, payload):
    host.config.check_parent(parent)
    iqn, = _request(payload, 'iqn')
    return backend(host, helper).show(name, iqn)


@ops.op('target-version', 'HELPER', target=True)
def version(host, helper, payload):
    return backend(host, helper).version()


# -- zvol data -------------------------------------------------------------
#
# Raw data travels as records: an 8-byte big-endian offset and an 8-byte
# length, then that many bytes. Zero regions are simply not sent; a record
# of length 0 ends the stream and carries the total size as its offset.

HEADER = 16
# The driver sends records of at most CHUNK bytes; a longer one is refused
# before anything is allocated for it.
MAX_RECORD = 16 * CHUNK
# Records read ahead of the zvol writes: reading the next records from the
# SSH pipe overlaps writing the current one (both let go of the GIL).
READ_AHEAD = 8
_POLL = 0.1


@ops.op('write', 'PARENT NAME', target=True, stream=True)
def write(host, parent, name, payload):
    raise AssertionError('stream operation')   # see stream()


@ops.op('read', 'PARENT NAME', target=True, stream=True)
def read(host, parent, name, payload):
    raise AssertionError('stream operation')   # see stream()


def stream(host, operation, args, inp, out):
    """Run write/read on raw stdin/stdout; the exit status."""
    parent, name = args
    try:
        device = managed_zvol(host, parent, name)
        if operation.name == 'write':
            result = _receive(device, inp)
        else:
            result = _send(device, out.buffer if hasattr(out, 'buffer')
                           else out)
    except errors.HostError as e:
        sys.stderr.write('cinder-zol-target: %s\n' % e)
        if operation.name == 'write':
            out.write(json.dumps({'ok': False, 'error': e.to_dict()}) + '\n')
            out.flush()
        return 1
    if operation.name == 'write':
        out.write(json.dumps({'ok': True, 'result': result}) + '\n')
        out.flush()
    return 0


def _read_exact(inp, size):
    """Exactly ``size`` bytes of ``inp``, however short its reads are."""
    data = bytearray(size)
    view = memoryview(data)
    got = 0
    while got < size:
        n = inp.readinto(view[got:])
        if not n:
            raise errors.HostError('data stream ended early',
                                   'got %d of the %d bytes of a record '
                                   'part' % (got, size))
        got += n
    return data


class RecordReader(object):
    """Records of ``inp`` read in a thread, ahead of the zvol writes.

    The thread reads exactly the records and the end record, nothing
    after it: whatever follows the stream on ``inp`` (the next request of
    a session) is left where it is. It also stops at the first malformed
    record and when the writer gives up (:meth:`stop`); at most
    ``depth`` records wait in memory.
    """

    def __init__(self, inp, capacity, device, depth=READ_AHEAD):
        self.inp = inp
        self.capacity = capacity
        self.device = device
        self.total = None
        self._queue = queue.Queue(depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='zvol-record-reader')

    def __iter__(self):
        """(offset, data) in stream order; the reader's failure raised.

        When it ends, the end record was read and ``total`` holds the
        size it carries.
        """
        self._thread.start()
        while True:
            kind, first, second = self._queue.get()
            if kind == 'data':
                yield first, second
            elif kind == 'end':
                self._thread.join()   # its last step was this put
                self.total = first
                return
            else:
                raise first

    def stop(self):
        self._stopped.set()

    def _run(self):
        try:
            while not self._stopped.is_set():
                header = _read_exact(self.inp, HEADER)
                offset = int.from_bytes(header[:8], 'big')
                length = int.from_bytes(header[8:], 'big')
                if length == 0:
                    self._put(('end', offset, None))
                    return
                self._check(offset, length)
                self._put(('data', offset, _read_exact(self.inp, length)))
        except errors.HostError as e:
            self._put(('error', e, None))
        except OSError as e:
            self._put(('error', errors.HostError(
                'reading the data for %s failed' % self.device,
                e.strerror), None))
        except Exception as e:    # the writer must hear of any failure
            self._put(('error', errors.HostError(
                'reading the data for %s failed' % self.device,
                str(e)), None))

    def _check(self, offset, length):
        if length > MAX_RECORD:
            raise errors.Invalid(
                'writing %s failed' % self.device,
                'a record of %d bytes; at most %d are allowed'
                % (length, MAX_RECORD))
        if offset + length > self.capacity:
            raise errors.Invalid(
                'writing %s failed' % self.device,
                'data at %d+%d is beyond the volume size %d'
                % (offset, length, self.capacity))

    def _put(self, item):
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue


def _receive(device, inp):
    """Write records into the zvol; nothing is written for zero regions.

    Reading and writing overlap (:class:`RecordReader`); a failure on
    either side ends the transfer with that failure.
    """
    written = 0
    fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    reader = None
    try:
        reader = RecordReader(inp, os.lseek(fd, 0, os.SEEK_END), device)
        for offset, data in reader:
            view = memoryview(data)
            pos = offset
            while view:
                n = os.pwrite(fd, view, pos)
                view = view[n:]
                pos += n
            written += len(data)
        os.fsync(fd)
    except OSError as e:
        raise errors.HostError('writing %s failed' % device, e.strerror)
    finally:
        if reader is not None:
            reader.stop()
        os.close(fd)
    return {'written': written, 'size': reader.total}


def _send(device, out):
    """Send the zvol as records, leaving out all-zero blocks."""
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        offset = 0
        zero = bytes(CHUNK)
        while offset < size:
            data = os.pread(fd, min(CHUNK, size - offset), offset)
            if not data:
                break
            if data != zero[:len(data)]:
                out.write(offset.to_bytes(8, 'big') +
                          len(data).to_bytes(8, 'big'))
                out.write(data)
            offset += len(data)
        out.write(size.to_bytes(8, 'big') + bytes(8))
        out.flush()
    finally:
        os.close(fd)
    return {'size': size}


def main(argv=None):
    """cinder-zol-target OP ARG... (as root, through sudo)."""
    from . import agent
    argv = list(sys.argv[1:] if argv is None else argv)
    log.enable_syslog()
    try:
        host = agent.Host(config_mod.load())
        if argv == ['session']:
            return agent.session(host, target_only=True)
        operation, args = ops.parse(argv, host.config)
        if not operation.target:
            raise errors.Refused('%s is not a root helper operation'
                                 % operation.name)
        log.syslog('root helper (for %s): %s'
                   % (os.environ.get('SUDO_USER', '?'), ' '.join(argv)))
        if operation.stream:
            return stream(host, operation, args, sys.stdin.buffer,
                          sys.stdout)
        payload = agent._read_payload(sys.stdin.buffer)
        result = dispatch(host, operation, args, payload)
    except errors.HostError as e:
        agent._write(agent.reply_error(e))
        return agent.REFUSED_EXIT if isinstance(e, errors.Refused) else 1
    agent._write(agent.reply_ok(result))
    return 0
