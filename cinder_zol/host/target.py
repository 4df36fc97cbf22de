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

It also owns the binding between a zvol and its target (:func:`bound`):
the driver names the target (``target_prefix`` + the zvol's name), but a
name alone proves nothing, since the key that sends it may be stolen. The
helper acts on an existing target, TPG, backstore, LUN, ACL or subsystem
only when everything it serves is the named zvol of an allowed parent (or,
for a target left without storage by a crash, when its own record says the
target is that zvol's); anything else is somebody else's and refused.
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
from . import records

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


def device_of(link):
    """The path exports name a zvol by: its /dev/zvol link.

    Unlike /dev/zdN, the link stays the zvol's across reboots, so a
    target's storage tells which zvol it serves.
    """
    return link


def bound(host, parent, name, helper, iqn):
    """Refuse IQN (or NQN) unless it is the target of PARENT/NAME.

    The name must be the driver's (``target_prefix`` + the zvol's name),
    and an existing target may serve nothing but that zvol's device; one
    that serves nothing (a crash between its creation and its LUN) is ours
    only if our record says so. A zvol under the parent that cinder-zol
    does not manage is never bound, exported or not. Returns the device.
    """
    if len(iqn) <= len(name) or not iqn.endswith(name):
        raise errors.Refused('target %s is not named after the volume %s '
                             '(target_prefix + name)' % (iqn, name))
    zfs_host = host.zfs(parent)
    ds = zfs_host.get(name)
    if ds is not None and not ds.managed:
        raise errors.NotOwned('%s is not managed by cinder-zol'
                              % zfs_host.path(name))
    device = host.device_of(zfs_host.device(name))
    storage = backend(host, helper).storage(name, iqn)
    if storage is None:
        return device
    foreign = sorted(set(s for s in storage if s != device))
    if foreign:
        raise errors.Refused(
            'target %s (or the backstore %s) serves %s, not %s: it is not '
            'the cinder-zol export of %s' % (
                iqn, name, ', '.join(foreign), device, zfs_host.path(name)),
            hint='Another tool or backend made it; cinder-zol leaves it '
                 'alone.')
    if not storage:
        record = records.read(host.target_state_dir, helper, parent, name)
        if not record or record.get('iqn') != iqn:
            raise errors.Refused(
                'target %s serves no storage and is not recorded as the '
                'export of %s: it is not cinder-zol\'s'
                % (iqn, zfs_host.path(name)))
    return device


def _record(host, helper, parent, name, iqn, **fields):
    """Keep what the export is now, merged into its record."""
    old = records.read(host.target_state_dir, helper, parent, name) or {}
    if old.get('iqn') != iqn:
        old = {}
    record = dict(old, iqn=iqn, helper=helper)
    record.update(fields)
    records.write(host.target_state_dir, helper, parent, name, record)


def dispatch(host, operation, args, payload):
    """Run a target operation (as root); its result dict."""
    if os.geteuid() != 0:
        raise errors.PermissionDenied('%s must run as root' % operation.name)
    return operation.func(host, *args, payload=payload)


def _request(host, payload, *keys):
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
            _port(host, value)
        elif key == 'ports':
            # every port the driver's portals use (multipath); a driver
            # that sends none wants only ``port``
            if value is None:
                value = [payload.get('port')]
            if not isinstance(value, list) or not 0 < len(value) <= 16:
                raise errors.Refused('ports must be a list of 1 to 16 TCP '
                                     'ports')
            value = sorted(set(_port(host, v) for v in value))
        elif key == 'serial':
            value = names.serial(value)
        elif key == 'wait':
            if not isinstance(value, (int, float)) or \
                    not 0 < value <= MAX_WAIT:
                value = 30
        values.append(value)
    return values


# The longest an export waits for its /dev/zvol link (the driver asks for
# less): udev is replayed once after RETRIGGER_AFTER, never more.
MAX_WAIT = 120


def _port(host, value):
    """A TCP port the operator allows targets to listen on (host.conf)."""
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 0 < value < 65536:
        raise errors.Refused('port %r is not a TCP port' % (value,))
    return host.config.check_port(value)


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
        host, payload, 'iqn', 'chap', 'initiators', 'ports', 'serial',
        'wait')
    device = managed_zvol(host, parent, name, wait)
    with locked(host):
        bound(host, parent, name, helper, iqn)
        # recorded first: a crash half way leaves a target our record names
        _record(host, helper, parent, name, iqn, serial=serial, ports=ports)
        result = backend(host, helper).export(name, iqn, device, chap,
                                              initiators or [], ports, serial)
        _record(host, helper, parent, name, iqn,
                initiators=result.get('initiators') or [])
        return result


@ops.op('target-remove', 'PARENT NAME HELPER', payload=True, target=True)
def remove(host, parent, name, helper, payload):
    iqn, = _request(host, payload, 'iqn')
    with locked(host):
        bound(host, parent, name, helper, iqn)
        result = backend(host, helper).remove(name, iqn)
        records.remove(host.target_state_dir, helper, parent, name)
        return result


@ops.op('target-allow', 'PARENT NAME HELPER', payload=True, target=True)
def allow(host, parent, name, helper, payload):
    iqn, initiator, chap = _request(host, payload, 'iqn', 'initiator', 'chap')
    managed_zvol(host, parent, name)
    with locked(host):
        bound(host, parent, name, helper, iqn)
        result = backend(host, helper).allow(name, iqn, initiator, chap)
        _record(host, helper, parent, name, iqn,
                initiators=result['initiators'])
        return result


@ops.op('target-deny', 'PARENT NAME HELPER', payload=True, target=True)
def deny(host, parent, name, helper, payload):
    """Remove initiators from the ACL; ``initiators: null`` removes all."""
    iqn, initiators = _request(host, payload, 'iqn', 'initiators')
    with locked(host):
        bound(host, parent, name, helper, iqn)
        result = backend(host, helper).deny(name, iqn, initiators)
        if records.read(host.target_state_dir, helper, parent, name):
            _record(host, helper, parent, name, iqn,
                    initiators=result['initiators'])
        return result


@ops.op('target-resize', 'PARENT NAME HELPER', payload=True, target=True)
def resize(host, parent, name, helper, payload):
    """Make the live target report the zvol's current size."""
    iqn, serial = _request(host, payload, 'iqn', 'serial')
    device = managed_zvol(host, parent, name)
    with locked(host):
        bound(host, parent, name, helper, iqn)
        return backend(host, helper).resize(name, iqn, device, serial)


@ops.op('target-show', 'PARENT NAME HELPER', payload=True, target=True)
def show(host, parent, name, helper, payload):
    iqn, = _request(host, payload, 'iqn')
    with locked(host):
        bound(host, parent, name, helper, iqn)
        return backend(host, helper).show(name, iqn)


@ops.op('target-version', 'HELPER', target=True)
def version(host, helper, payload):
    return backend(host, helper).version()


def restore(host):
    """Re-create the recorded exports of helpers that forget at a reboot.

    tgt and LIO load their own configuration at boot; nvmet keeps none,
    so its exports come back from the records (run at boot by
    cinder-zol-target-restore.service, after the zvol links exist). Each
    export is restored on its own; the record of a zvol that is gone or no
    longer managed is dropped. Returns the number of exports that could
    not be restored.
    """
    failed = 0
    for helper in host.config.target_helpers:
        target_backend = backend(host, helper)
        if target_backend.restores_itself:
            continue
        for record in records.every(host.target_state_dir, helper):
            parent, name = record.get('parent'), record.get('name')
            try:
                iqn, initiators, ports, serial = _request(
                    host, record, 'iqn', 'initiators', 'ports', 'serial')
                device = managed_zvol(host, parent, name)
                with locked(host):
                    bound(host, parent, name, helper, iqn)
                    target_backend.export(name, iqn, device, None,
                                          initiators or [], ports, serial)
                log.syslog('restored the %s export of %s/%s'
                           % (helper, parent, name))
            except (errors.NotFound, errors.NotOwned) as e:
                records.remove(host.target_state_dir, helper, parent, name)
                log.syslog('dropped the %s export record of %s/%s: %s'
                           % (helper, parent, name, e))
            except errors.HostError as e:
                failed += 1
                log.syslog('cannot restore the %s export of %s/%s: %s'
                           % (helper, parent, name, e), True)
    return failed


# -- zvol data -------------------------------------------------------------
#
# Raw data travels as records: an 8-byte big-endian offset and an 8-byte
# length, then that many bytes. Zero regions are simply not sent; a record
# of length 0 ends the stream and carries the total size as its offset.

HEADER = 16
# The driver sends records of at most CHUNK bytes; a longer one is refused
# before anything is allocated for it.
MAX_RECORD = 4 * CHUNK
# Records read ahead of the zvol writes: reading the next records from the
# SSH pipe overlaps writing the current one (both let go of the GIL). With
# MAX_RECORD, a stream holds at most 32 MiB of root's memory, and at most
# host.conf's ``max_streams`` streams run at once (:func:`stream_slot`).
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
        with stream_slot(host):
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


def stream_slot(host):
    """One of host.conf's ``max_streams`` places for a zvol data stream.

    Every key holder's stream costs root memory and zvol bandwidth; past
    the limit a stream waits (up to the lock wait), then is refused.
    """
    return locks.hold_any(host.target_lock_dir, 'stream',
                          host.config.max_streams, wait=host.lock_wait,
                          what='zvol data streams',
                          hint='Raise max_streams in %s if the storage host '
                               'can take more at once.' % config_mod.PATH)


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
    log.set_origin('root helper request for %s'
                   % os.environ.get('SUDO_USER', 'root'))
    try:
        host = agent.Host(config_mod.load())
    except errors.HostError as e:
        agent._write(agent.reply_error(e))
        return 1
    if argv == ['session']:
        return agent.session(host, target_only=True)
    if argv == ['restore']:   # root only: sudoers never allows it
        return 1 if restore(host) else 0
    return agent.one_request(host, argv, target_only=True)
