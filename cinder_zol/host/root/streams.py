"""zvol data streams: the records of :mod:`..wire` into and out of a zvol.

``write PARENT NAME`` reads data records from stdin into the zvol and
answers with one reply line; ``read PARENT NAME`` sends the zvol's
non-zero blocks as records on stdout. Both run only in the root helper
(the agent hands its stdin and stdout over with exec), never in a
session, and at most host.conf's ``max_streams`` at once.
"""

import os
import queue
import sys
import threading

from .. import config as config_mod
from .. import errors
from .. import locks
from .. import log
from .. import wire
from ..serve import IMPLEMENTATIONS
from ..serve import implements
from .exports import managed_zvol

# Records read ahead of the zvol writes: reading the next records from the
# SSH pipe overlaps writing the current one (both let go of the GIL). With
# wire.MAX_RECORD, a stream holds at most 32 MiB of root's memory, and at
# most host.conf's ``max_streams`` streams run at once (:func:`stream_slot`).
READ_AHEAD = 8
_POLL = 0.1


@implements('write')
def write(device, inp, out):
    """Write the records of ``inp`` into the zvol's ``device``."""
    return _receive(device, inp)


@implements('read')
def read(device, inp, out):
    """Send the zvol's ``device`` as records on ``out``."""
    return _send(device, out.buffer if hasattr(out, 'buffer') else out)


def stream(ctx, operation, args, inp, out):
    """Run write/read on raw stdin/stdout; the exit status.

    Only ``write`` answers with a reply line: ``read``'s stdout is the
    data.
    """
    parent, name = args
    try:
        device = managed_zvol(ctx, parent, name)
        with stream_slot(ctx):
            result = IMPLEMENTATIONS[operation.name](device, inp, out)
    except errors.HostError as e:
        sys.stderr.write('cinder-zol-target: %s\n' % e)
        if operation.name == 'write':
            _reply(out, wire.reply_error(e))
        return 1
    if operation.name == 'write':
        _reply(out, wire.reply_ok(result))
    return 0


def _reply(out, reply):
    # without notes and in this key order, as stream replies always were
    out.write(wire.encode(reply, sort_keys=False))
    out.flush()


def audited(ctx, operation, args, argv):
    """A stream on this process's stdin and stdout, with its audit line."""
    status = stream(ctx, operation, args, sys.stdin.buffer, sys.stdout)
    log.audit(argv, None, 'ok' if status == 0 else
              'failed (exit status %d)' % status, status != 0)
    return status


def stream_slot(ctx):
    """One of host.conf's ``max_streams`` places for a zvol data stream.

    Every key holder's stream costs root memory and zvol bandwidth; past
    the limit a stream waits (up to the lock wait), then is refused.
    """
    return locks.hold_any(ctx.target_lock_dir, 'stream',
                          ctx.config.max_streams, wait=ctx.lock_wait,
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
                offset, length = wire.parse_header(
                    _read_exact(self.inp, wire.HEADER))
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
        if length > wire.MAX_RECORD:
            raise errors.Invalid(
                'writing %s failed' % self.device,
                'a record of %d bytes; at most %d are allowed'
                % (length, wire.MAX_RECORD))
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
        zero = bytes(wire.CHUNK)
        while offset < size:
            data = os.pread(fd, min(wire.CHUNK, size - offset), offset)
            if not data:
                break
            if data != zero[:len(data)]:
                out.write(wire.record_header(offset, len(data)))
                out.write(data)
            offset += len(data)
        out.write(wire.end_record(size))
        out.flush()
    finally:
        os.close(fd)
    return {'size': size}
