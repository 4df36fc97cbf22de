"""The one way commands reach the storage host: over SSH or locally.

Callers pass argv lists; this module is the only place that turns them into
a command line (``shlex.quote``), applies timeouts and retries, logs with
secrets masked, and turns a non-zero exit into
``processutils.ProcessExecutionError``. Three shapes of traffic:

* ``run``: one command, its output and exit status;
* ``request``: one request to the storage host agent. Over SSH each pooled
  connection keeps one agent session open (``cinder-zol-host session``),
  so a request costs a JSON line each way instead of a channel, a process
  start and a Python start on the storage host;
* ``send_stream``/``receive_stream``: bulk data (images) through a command's
  stdin or stdout, bounded by progress rather than by total time. Over SSH
  they have their own allowance of connections: however long they run,
  requests never wait behind them.

Cinder's ``SanDriver._run_ssh`` is not used: it loads only RSA keys, trusts
unknown host keys, drops stdin and ignores exit codes unless asked.
"""

import collections
import contextlib
import json
import os
import shlex
import socket
import subprocess
import threading
import time

from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import strutils
import paramiko

from cinder.i18n import _

from cinder_zol import exception
from cinder_zol.host import wire

LOG = logging.getLogger(__name__)

Result = collections.namedtuple('Result', 'stdout stderr exit_code')

# Failures that mean "the connection is unusable", after which a command that
# never started may safely be sent again on a fresh connection.
_CONNECTION_ERRORS = (paramiko.SSHException, socket.error, EOFError)


def command_line(argv):
    """Quote argv for a POSIX shell: the only quoting point of the driver."""
    if not isinstance(argv, (list, tuple)) or not argv or \
            not all(isinstance(a, str) for a in argv):
        raise ValueError('command must be a non-empty list of strings: %r'
                         % (argv,))
    for arg in argv:
        # shlex.quote keeps newlines (scripts given to sh -c) literal; a NUL
        # cannot travel in an argument at all.
        if '\0' in arg:
            raise exception.UnsafeName(
                reason='command argument contains a NUL byte: %r' % arg)
    return ' '.join(shlex.quote(a) for a in argv)


class Runner(object):
    """Runs argv on the storage host; subclasses choose the transport."""

    host = 'localhost'

    def __init__(self, timeout):
        self.timeout = timeout

    def run(self, argv, input=None, timeout=None, check_exit_code=True):
        """Run argv, return Result(stdout, stderr) as text.

        ``input`` (str or bytes) is fed to stdin and never logged: pass
        secrets that way rather than as arguments. A non-zero exit raises
        ProcessExecutionError carrying the command's stderr.
        """
        argv = list(argv)
        cmd = command_line(argv)
        masked = strutils.mask_password(cmd)
        timeout = timeout or self.timeout
        if isinstance(input, str):
            input = input.encode()
        start = time.monotonic()
        exit_code, out, err = self._execute(argv, cmd, input, timeout)
        out = out.decode('utf-8', 'replace')
        err = err.decode('utf-8', 'replace')
        LOG.debug('%(host)s: %(cmd)s -> %(rc)s in %(t).2fs',
                  {'host': self.host, 'cmd': masked, 'rc': exit_code,
                   't': time.monotonic() - start})
        if check_exit_code and exit_code != 0:
            raise processutils.ProcessExecutionError(
                stdout=strutils.mask_password(out),
                stderr=strutils.mask_password(err),
                exit_code=exit_code, cmd=masked)
        return Result(out, err, exit_code)

    def request(self, program, argv, payload, timeout=None):
        """One request to the storage host agent; its reply line (text).

        ``argv`` is ``[OP, ARG...]`` (logged), ``payload`` a dict (never
        logged: it may carry CHAP secrets). The base version starts
        ``program OP ARG...`` once per request, the payload as JSON on its
        stdin; SshRunner keeps one agent session per pooled connection
        instead (:func:`cinder_zol.host.wire.request_line`).
        """
        result = self.run([program] + list(argv),
                          input=json.dumps(payload or {}),
                          timeout=timeout, check_exit_code=False)
        return _reply_line(result, program)

    def send_stream(self, argv, chunks, timeout=None):
        """Run argv with ``chunks`` (bytes, an iterable) as its stdin.

        ``timeout`` bounds the wait for progress, not the whole transfer.
        Returns Result (exit status not checked).
        """
        raise NotImplementedError()

    def receive_stream(self, argv, timeout=None):
        """A context manager: a reader over argv's stdout (``read(n)``).

        On leaving, the exit status is checked (ProcessExecutionError).
        """
        raise NotImplementedError()

    def _execute(self, argv, cmd, input, timeout):
        raise NotImplementedError()

    def close(self):
        pass


def _reply_line(result, program):
    """The agent's JSON reply line from a finished command."""
    lines = result.stdout.strip().splitlines()
    if lines and lines[-1].startswith('{'):
        return lines[-1]
    raise processutils.ProcessExecutionError(
        stdout='', stderr=strutils.mask_password(result.stderr.strip()),
        exit_code=result.exit_code, cmd=program,
        description='no reply from %s' % program)


class LocalRunner(Runner):
    """For cinder-volume running on the storage host itself (san_is_local)."""

    def _execute(self, argv, cmd, input, timeout):
        return self._call(argv, [input] if input else [], timeout,
                          whole=True)

    def send_stream(self, argv, chunks, timeout=None):
        code, out, err = self._call(argv, chunks, timeout or self.timeout,
                                    whole=False)
        return Result(out.decode('utf-8', 'replace'),
                      err.decode('utf-8', 'replace'), code)

    def _call(self, argv, chunks, timeout, whole):
        """Run argv with chunks as stdin: (exit status, stdout, stderr).

        ``whole``: timeout bounds the whole command, else each wait.
        stdin is a socket rather than a pipe: under eventlet, writing to a
        pipe whose command ended retries EPIPE forever (processutils too),
        where a socket fails; and a command that stops reading times out.
        """
        deadline = time.monotonic() + timeout

        def left():
            return max(0.01, deadline - time.monotonic()) if whole \
                else timeout

        ours, theirs = socket.socketpair()
        try:
            # eventlet made both ends non-blocking; the command's must block
            os.set_blocking(theirs.fileno(), True)
            proc = subprocess.Popen(list(argv), stdin=theirs,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as e:
            ours.close()
            return 127, b'', str(e).encode()
        finally:
            theirs.close()
        # Output is read while the input is written: a command that writes
        # more than a pipe's buffer before reading all of its input would
        # otherwise block, and so would this writer.
        out, err = [], []
        readers = [_drain_in_background(proc.stdout, out),
                   _drain_in_background(proc.stderr, err)]
        try:
            try:
                for chunk in chunks:
                    ours.settimeout(left())
                    ours.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass   # the command ended early: its exit status says why
            finally:
                ours.close()
            proc.wait(timeout=left())
            for reader in readers:
                reader.join(left())
        except BaseException as e:
            proc.kill()
            proc.wait()
            if _is_timeout(e) or isinstance(e, socket.timeout):
                raise exception.CommandTimeout(
                    cmd=strutils.mask_password(command_line(argv)),
                    host=self.host, timeout=timeout)
            raise
        return proc.returncode, b''.join(out), b''.join(err)

    @contextlib.contextmanager
    def receive_stream(self, argv, timeout=None):
        timeout = timeout or self.timeout
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        err = []
        # stderr read aside: a command blocked on a full stderr pipe would
        # never finish its stdout.
        err_reader = _drain_in_background(proc.stderr, err)
        try:
            yield proc.stdout
            # One byte tells whether data was left unread; the rest (maybe
            # gigabytes) is not read into memory: the command is stopped.
            rest = proc.stdout.read(1)
            if rest:
                proc.kill()
            proc.wait(timeout=timeout)
            err_reader.join(timeout)
        except BaseException as e:
            proc.kill()
            proc.wait()
            if _is_timeout(e):
                raise exception.CommandTimeout(
                    cmd=strutils.mask_password(command_line(argv)),
                    host=self.host, timeout=timeout)
            raise
        finally:
            proc.stdout.close()
        if proc.returncode or rest:
            raise processutils.ProcessExecutionError(
                stderr=strutils.mask_password(
                    b''.join(err).decode('utf-8', 'replace')),
                exit_code=proc.returncode,
                cmd=strutils.mask_password(command_line(argv)),
                description='unread data' if rest else None)


def _is_timeout(error):
    """Is error subprocess.TimeoutExpired (stdlib or eventlet's green)?"""
    return type(error).__name__ == 'TimeoutExpired'


def _drain_in_background(stream, sink):
    """Read ``stream`` to its end into the list ``sink``, in a thread."""
    def drain():
        try:
            sink.append(stream.read())
        finally:
            stream.close()
    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


class _RejectPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys with a message saying how to trust one."""

    def __init__(self, runner):
        self.runner = runner

    def missing_host_key(self, client, hostname, key):
        if self.runner.trust_on_first_use:
            LOG.warning('Trusting new SSH host key %(type)s %(fp)s of '
                        '%(host)s on first use; recorded in %(file)s.',
                        {'type': key.get_name(), 'fp': _fingerprint(key),
                         'host': hostname,
                         'file': self.runner.known_hosts})
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.runner.save_host_key(hostname, key)
            return
        raise self.runner.untrusted_key(key, 'not known')


def _fingerprint(key):
    return key.fingerprint  # "SHA256:..." in paramiko >= 3


# Bulk transfers reuse pooled connections; paramiko's own rekey in the
# middle of a long receive times out (paramiko issue 822), so it is left to
# the server (OpenSSH's RekeyLimit), which paramiko handles fine.
_REKEY_BYTES = 2 ** 40


def _gcm_first(ciphers):
    gcm = tuple(c for c in ciphers if c.endswith('-gcm@openssh.com'))
    return gcm + tuple(c for c in ciphers if c not in gcm)


class _Transport(paramiko.Transport):
    """paramiko's transport with AES-GCM preferred (when both ends have it).

    paramiko lists GCM last; its default aes128-ctr + hmac-sha2-256 costs a
    separate MAC pass on both ends. GCM is one AEAD call per packet: on the
    lab host image fills got about 20 % more from the wire and the client
    spent about 30 % less CPU. A server without GCM gets the old order.
    """
    _preferred_ciphers = _gcm_first(paramiko.Transport._preferred_ciphers)


class _Pooled(object):
    """A pooled SSH connection and the agent session open on it."""

    __slots__ = ('client', 'session', 'buffer')

    def __init__(self, client):
        self.client = client
        self.session = None
        self.buffer = b''

    def alive(self):
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def drop_session(self):
        if self.session is not None:
            self.session.close()
        self.session = None
        self.buffer = b''

    def close(self):
        self.drop_session()
        self.client.close()


class _Allowance(object):
    """At most ``size`` users at once, counted for the error messages."""

    def __init__(self, size):
        self.size = size
        self.in_use = 0
        self._free = threading.BoundedSemaphore(size)
        self._count_lock = threading.Lock()

    def acquire(self, timeout):
        if not self._free.acquire(timeout=timeout):
            return False
        with self._count_lock:
            self.in_use += 1
        return True

    def release(self):
        with self._count_lock:
            self.in_use -= 1
        self._free.release()


class SshRunner(Runner):
    """Pooled paramiko connections to one storage host.

    Connections are reused and replaced when broken. Requests and commands
    use at most ``max_size`` at once, image transfers at most
    ``max_transfers`` more: a transfer runs as long as its data keeps
    moving, and must not hold a connection a detach or a delete waits for.
    The pool is safe under native or green threads.
    """

    def __init__(self, host, port, login, password=None, key_file=None,
                 known_hosts=None, trust_on_first_use=False,
                 conn_timeout=30, timeout=300, max_size=5, max_transfers=5):
        super().__init__(timeout)
        self.host = host
        self.port = port
        self.login = login
        self.password = password
        self.key_file = key_file
        self.known_hosts = known_hosts
        self.trust_on_first_use = trust_on_first_use
        self.conn_timeout = conn_timeout
        self._idle = collections.deque()
        self._requests = _Allowance(max_size)
        self._transfers = _Allowance(max_transfers)
        self._key_lock = threading.Lock()
        self._pkey = None

    # -- host keys ---------------------------------------------------------

    def untrusted_key(self, key, state):
        key_type = key.get_name()
        short = key_type.replace('ssh-', '').split('-')[0]
        return exception.HostKeyNotTrusted(
            host=self.host, port=self.port, key_type=key_type,
            short_type='ecdsa' if short == 'ecdsa' else short,
            fingerprint=_fingerprint(key), state=state,
            known_hosts=self.known_hosts)

    def save_host_key(self, hostname, key):
        with self._key_lock:
            directory = os.path.dirname(self.known_hosts)
            if directory:
                os.makedirs(directory, exist_ok=True)
            line = '%s %s %s\n' % (hostname, key.get_name(),
                                   key.get_base64())
            with open(self.known_hosts, 'a') as f:
                f.write(line)

    # -- connections ---------------------------------------------------------

    def _load_key(self):
        if self.key_file and self._pkey is None:
            try:
                self._pkey = paramiko.PKey.from_path(
                    os.path.expanduser(self.key_file))
            except (OSError, paramiko.SSHException, ValueError) as e:
                raise exception.StorageHostUnreachable(
                    host=self.host, port=self.port,
                    reason='cannot load san_private_key %s: %s'
                    % (self.key_file, e))
        return self._pkey

    def _connect(self):
        client = paramiko.SSHClient()
        if self.known_hosts and os.path.exists(self.known_hosts):
            client.load_host_keys(self.known_hosts)
        client.set_missing_host_key_policy(_RejectPolicy(self))
        try:
            client.connect(self.host, port=self.port, username=self.login,
                           password=self.password, pkey=self._load_key(),
                           timeout=self.conn_timeout,
                           banner_timeout=self.conn_timeout,
                           auth_timeout=self.conn_timeout,
                           look_for_keys=False, allow_agent=False,
                           transport_factory=_Transport)
        except exception.HostKeyNotTrusted:
            client.close()
            raise
        except paramiko.BadHostKeyException as e:
            client.close()
            raise self.untrusted_key(e.key, 'CHANGED (possible '
                                     'man-in-the-middle) compared with '
                                     'the entry')
        except (paramiko.SSHException, OSError, EOFError) as e:
            client.close()
            raise exception.StorageHostUnreachable(
                host=self.host, port=self.port, reason=e)
        transport = client.get_transport()
        transport.set_keepalive(30)
        transport.packetizer.REKEY_BYTES = _REKEY_BYTES
        transport.packetizer.REKEY_PACKETS = _REKEY_BYTES
        return client

    @contextlib.contextmanager
    def _connection(self, allowance=None):
        """A pooled connection for one use; a failure inside discards it.

        ``allowance``: whose connections it counts against (requests').
        """
        allowance = allowance or self._requests
        if not allowance.acquire(self.timeout):
            raise self._pool_busy(allowance)
        try:
            conn = None
            while self._idle and conn is None:
                conn = self._idle.pop()
                if not conn.alive():
                    conn.close()
                    conn = None
            if conn is None:
                conn = _Pooled(self._connect())
            try:
                yield conn
            except BaseException:
                conn.close()
                raise
            if conn.alive():
                self._idle.append(conn)
            else:
                conn.close()
        finally:
            allowance.release()

    def _pool_busy(self, allowance):
        """No connection within the timeout: say what kept them busy."""
        values = {'host': self.host, 'port': self.port,
                  'timeout': self.timeout, 'size': allowance.size,
                  'transfers': self._transfers.in_use}
        if allowance is self._transfers:
            return exception.StorageHostError(_(
                'No free SSH connection to %(host)s:%(port)s for an image '
                'transfer within %(timeout)s s: %(size)d image transfer(s) '
                '(zol_max_image_transfers) ran all that time. Raise '
                'zol_max_image_transfers if this many run at once, or retry '
                'once they have ended.') % values)
        return exception.StorageHostError(_(
            'No free SSH connection to %(host)s:%(port)s within %(timeout)s '
            's: all %(size)d SSH connections for requests '
            '(ssh_max_pool_conn) stayed busy, with %(transfers)d image '
            'transfer(s) besides on their own connections. Raise '
            'ssh_max_pool_conn if this many operations run at once, or look '
            'on the storage host for what slows them down.') % values)

    def _open_channel(self, conn, cmd):
        """A channel running cmd; StaleConnection if it cannot even open."""
        try:
            channel = conn.client.get_transport().open_session(
                timeout=self.conn_timeout)
            channel.exec_command(cmd)
        except _CONNECTION_ERRORS as e:
            raise _StaleConnection(e)
        return channel

    def _with_fresh_retry(self, use):
        """Run ``use(conn)``, again on a new connection if stale.

        Only a connection found stale before anything was sent is replaced.
        """
        for attempt in (1, 2):
            try:
                with self._connection() as conn:
                    return use(conn)
            except _StaleConnection as e:
                if attempt == 2:
                    raise exception.StorageHostUnreachable(
                        host=self.host, port=self.port, reason=e.args[0])
                LOG.debug('Stale SSH connection to %s, reconnecting: %s',
                          self.host, e.args[0])

    @contextlib.contextmanager
    def _command_channel(self, cmd, allowance=None):
        """A pooled connection and a channel running cmd on it, for one use.

        Like ``_with_fresh_retry``: a pooled connection found stale before
        the command started is replaced once.
        """
        started = False
        for attempt in (1, 2):
            try:
                with self._connection(allowance) as conn:   # drops a stale one
                    channel = self._open_channel(conn, cmd)
                    started = True
                    try:
                        yield channel
                    finally:
                        channel.close()
                    return
            except _StaleConnection as e:
                if started:
                    raise
                if attempt == 2:
                    raise exception.StorageHostUnreachable(
                        host=self.host, port=self.port, reason=e.args[0])
                LOG.debug('Stale SSH connection to %s, reconnecting: %s',
                          self.host, e.args[0])

    def _execute(self, argv, cmd, input, timeout):
        with self._command_channel(cmd) as channel:
            return self._run_on_channel(channel, cmd, input, timeout)

    @staticmethod
    def _drain(channel, out, err):
        """Take whatever output is waiting, without blocking."""
        while channel.recv_ready():
            out.append(channel.recv(65536))
        while channel.recv_stderr_ready():
            err.append(channel.recv_stderr(65536))

    def _feed(self, channel, data, out, err, cmd, timeout):
        """Send data to the command's stdin, keeping its output drained.

        False if the command ended before taking it all (its exit status
        then says why); CommandTimeout if it takes nothing for ``timeout``.
        """
        try:
            channel.sendall(data)
        except socket.timeout:
            raise self._timeout(cmd, timeout)
        except _CONNECTION_ERRORS as e:
            if channel.closed and _transport_active(channel):
                return False    # the command closed its channel: it ended
            raise self._lost(cmd, e)
        self._drain(channel, out, err)
        return True

    def _run_on_channel(self, channel, cmd, input, timeout, out=None,
                        err=None):
        """Send input, then collect output and exit status.

        Output is read to the channel's EOF, not to the exit status: sshd
        may send the exit status before the last of the output.
        """
        deadline = time.monotonic() + timeout
        out = [] if out is None else out
        err = [] if err is None else err
        channel.settimeout(timeout)
        try:
            if input:
                self._feed(channel, input, out, err, cmd, timeout)
            channel.shutdown_write()
            channel.settimeout(0.05)
            while True:
                if time.monotonic() > deadline:
                    raise self._timeout(cmd, timeout)
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(65536))
                try:
                    data = channel.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                out.append(data)
            # EOF: all of stdout and stderr has arrived.
            while channel.recv_stderr_ready():
                err.append(channel.recv_stderr(65536))
            code = self._exit_status(channel, cmd, deadline, timeout)
            return code, b''.join(out), b''.join(err)
        except _CONNECTION_ERRORS as e:
            raise self._lost(cmd, e)
        finally:
            channel.close()

    def _exit_status(self, channel, cmd, deadline, timeout):
        """The exit status once output ended; -1 if the server sent none."""
        if not channel.status_event.wait(
                max(0.0, deadline - time.monotonic())):
            raise self._timeout(cmd, timeout)
        code = channel.recv_exit_status()
        if code == -1 and not _transport_active(channel):
            # A channel closed with its connection also reads as -1.
            raise self._lost(cmd, 'the connection closed')
        return code

    def _timeout(self, cmd, timeout):
        return exception.CommandTimeout(cmd=strutils.mask_password(cmd),
                                        host=self.host, timeout=timeout)

    def _lost(self, cmd, error):
        return exception.StorageHostConnectionLost(
            host=self.host, port=self.port, cmd=strutils.mask_password(cmd),
            reason=error)

    # -- agent sessions --------------------------------------------------

    def request(self, program, argv, payload, timeout=None):
        """One request over the pooled connection's agent session."""
        timeout = timeout or self.timeout
        cmd = command_line([program, 'session'])
        shown = strutils.mask_password(command_line(list(argv)))
        line = wire.request_line(argv, payload).encode()
        start = time.monotonic()

        def use(conn):
            session = conn.session
            fresh = session is None or session.closed or \
                session.eof_received or session.exit_status_ready()
            if fresh:
                conn.drop_session()
                conn.session = self._open_channel(conn, cmd)
            # A reply read leaves the channel's timeout short.
            conn.session.settimeout(timeout)
            try:
                conn.session.sendall(line)
            except _CONNECTION_ERRORS as e:
                # The agent acts on complete lines only: nothing ran.
                conn.drop_session()
                raise _StaleConnection(e)
            try:
                return self._read_reply(conn, shown, timeout)
            except BaseException:
                conn.drop_session()
                raise

        try:
            reply = self._with_fresh_retry(use)
        finally:
            LOG.debug('%(host)s: %(cmd)s in %(t).2fs',
                      {'host': self.host, 'cmd': shown,
                       't': time.monotonic() - start})
        return reply

    def _read_reply(self, conn, shown, timeout):
        channel = conn.session
        deadline = time.monotonic() + timeout
        stderr = []
        channel.settimeout(0.2)
        try:
            while b'\n' not in conn.buffer:
                if time.monotonic() > deadline:
                    raise self._timeout(shown, timeout)
                while channel.recv_stderr_ready():
                    stderr.append(channel.recv_stderr(65536))
                try:
                    data = channel.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    # The agent's last words arrived before the EOF, maybe
                    # after the drain above; its exit status may follow.
                    while channel.recv_stderr_ready():
                        stderr.append(channel.recv_stderr(65536))
                    channel.status_event.wait(
                        min(1.0, max(0.0, deadline - time.monotonic())))
                    err = b''.join(stderr).decode('utf-8', 'replace')
                    code = channel.recv_exit_status() \
                        if channel.status_event.is_set() else '?'
                    if not _transport_active(channel):
                        raise self._lost(shown, 'the connection closed')
                    raise self._lost(
                        shown, 'the storage host agent ended the session '
                        '(exit status %s): %s' % (
                            code, strutils.mask_password(err.strip())
                            or 'no message'))
                conn.buffer += data
        except _CONNECTION_ERRORS as e:
            raise self._lost(shown, e)
        line, _sep, conn.buffer = conn.buffer.partition(b'\n')
        return line.decode('utf-8', 'replace')

    # -- bulk data -------------------------------------------------------

    def send_stream(self, argv, chunks, timeout=None):
        timeout = timeout or self.timeout
        cmd = command_line(list(argv))
        start = time.monotonic()
        with self._command_channel(cmd, self._transfers) as channel:
            channel.settimeout(timeout)
            out, err = [], []
            for chunk in chunks:
                if not self._feed(channel, chunk, out, err, cmd, timeout):
                    break
            code, out, err = self._run_on_channel(channel, cmd, None,
                                                  timeout, out, err)
        LOG.debug('%(host)s: %(cmd)s -> %(rc)s in %(t).2fs',
                  {'host': self.host, 'cmd': strutils.mask_password(cmd),
                   'rc': code, 't': time.monotonic() - start})
        return Result(out.decode('utf-8', 'replace'),
                      err.decode('utf-8', 'replace'), code)

    @contextlib.contextmanager
    def receive_stream(self, argv, timeout=None):
        timeout = timeout or self.timeout
        cmd = command_line(list(argv))
        with self._command_channel(cmd, self._transfers) as channel:
            channel.settimeout(timeout)
            try:
                channel.shutdown_write()
            except _CONNECTION_ERRORS as e:
                raise self._lost(cmd, e)
            # Errors of the transfer are translated by the reader; what the
            # caller's own code raises passes through unchanged.
            reader = _ChannelReader(self, channel, cmd, timeout)
            yield reader
            rest = reader.read(1)
            code = None
            if not rest:
                code = self._exit_status(
                    channel, cmd, time.monotonic() + timeout, timeout)
            # else: the command may still be writing into a full window;
            # closing the channel (on leaving) stops it.
            err = reader.stderr()
        if code or rest:
            raise processutils.ProcessExecutionError(
                stderr=strutils.mask_password(err.decode('utf-8',
                                                         'replace')),
                exit_code=code, cmd=strutils.mask_password(cmd),
                description='unread data' if rest else None)

    def close(self):
        while self._idle:
            self._idle.pop().close()


def _transport_active(channel):
    transport = channel.get_transport()
    return transport is not None and transport.is_active()


class _ChannelReader(object):
    """read(n) over a channel's stdout, keeping stderr drained and kept."""

    def __init__(self, runner, channel, cmd, timeout):
        self.runner = runner
        self.channel = channel
        self.cmd = cmd
        self.timeout = timeout
        self._stderr = []

    def stderr(self):
        while self.channel.recv_stderr_ready():
            self._stderr.append(self.channel.recv_stderr(65536))
        return b''.join(self._stderr)

    def read(self, size=-1):
        try:
            return self._read(size)
        except socket.timeout:
            raise self.runner._timeout(self.cmd, self.timeout)
        except _CONNECTION_ERRORS as e:
            raise self.runner._lost(self.cmd, e)

    def _read(self, size):
        chunks = []
        want = size if size >= 0 else None
        while want is None or want > 0:
            while self.channel.recv_stderr_ready():
                self._stderr.append(self.channel.recv_stderr(65536))
            data = self.channel.recv(65536 if want is None
                                     else min(want, 65536))
            if not data:
                break
            chunks.append(data)
            if want is not None:
                want -= len(data)
        return b''.join(chunks)


class _StaleConnection(Exception):
    """A pooled connection failed before a command started on it."""


def from_configuration(conf):
    """Build the runner a backend section asks for."""
    timeout = conf.zol_ssh_command_timeout
    if conf.san_is_local:
        return LocalRunner(timeout)
    known_hosts = (conf.zol_ssh_known_hosts_file or
                   cfg.CONF.ssh_hosts_key_file)
    return SshRunner(conf.san_ip, conf.san_ssh_port, conf.san_login,
                     password=conf.san_password or None,
                     key_file=conf.san_private_key or None,
                     known_hosts=known_hosts,
                     trust_on_first_use=conf.zol_ssh_trust_on_first_use,
                     conn_timeout=conf.ssh_conn_timeout,
                     timeout=timeout,
                     max_size=conf.ssh_max_pool_conn,
                     max_transfers=conf.zol_max_image_transfers)
