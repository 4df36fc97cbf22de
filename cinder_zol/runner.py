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
  stdin or stdout, bounded by progress rather than by total time.

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

from cinder_zol import exception

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

        ``argv`` is ``[OP, ARG...]`` (logged), ``payload`` a JSON text
        (never logged: it may carry CHAP secrets). The base version starts
        ``program OP ARG...`` once per request; SshRunner keeps one agent
        session per pooled connection instead.
        """
        result = self.run([program] + list(argv), input=payload,
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


def request_line(argv, payload):
    return json.dumps({'argv': list(argv), 'payload': json.loads(payload)
                       if payload else {}}) + '\n'


class LocalRunner(Runner):
    """For cinder-volume running on the storage host itself (san_is_local)."""

    def _execute(self, argv, cmd, input, timeout):
        started = []
        try:
            out, err = processutils.execute(
                *argv, process_input=input, timeout=timeout, binary=True,
                on_execute=started.append)
            return 0, out, err
        except processutils.ProcessExecutionError as e:
            return e.exit_code, e.stdout.encode(), e.stderr.encode()
        except OSError as e:
            return 127, b'', str(e).encode()
        except Exception as e:
            # subprocess.TimeoutExpired, from whichever subprocess module
            # (stdlib or eventlet's green one) processutils used.
            if type(e).__name__ != 'TimeoutExpired':
                raise
            for proc in started:
                proc.kill()
                proc.wait()
            raise exception.CommandTimeout(cmd=strutils.mask_password(cmd),
                                           host=self.host, timeout=timeout)

    def send_stream(self, argv, chunks, timeout=None):
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
            proc.stdin.close()
            out, err = proc.communicate(timeout=timeout or self.timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return Result(out.decode('utf-8', 'replace'),
                      err.decode('utf-8', 'replace'), proc.returncode)

    @contextlib.contextmanager
    def receive_stream(self, argv, timeout=None):
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            yield proc.stdout
            rest = proc.stdout.read()
            err = proc.stderr.read().decode('utf-8', 'replace')
            proc.wait(timeout=timeout or self.timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode or rest:
            raise processutils.ProcessExecutionError(
                stderr=strutils.mask_password(err), exit_code=proc.returncode,
                cmd=command_line(argv),
                description='unread data' if rest else None)


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


class SshRunner(Runner):
    """Pooled paramiko connections to one storage host.

    Connections are reused, replaced when broken, and limited to
    ``max_size`` at once; the pool is safe under native or green threads.
    """

    def __init__(self, host, port, login, password=None, key_file=None,
                 known_hosts=None, trust_on_first_use=False,
                 conn_timeout=30, timeout=300, max_size=5):
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
        self._slots = threading.BoundedSemaphore(max_size)
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
                           look_for_keys=False, allow_agent=False)
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
    def _connection(self):
        """A pooled connection for one use; a failure inside discards it."""
        if not self._slots.acquire(timeout=self.timeout):
            raise exception.StorageHostUnreachable(
                host=self.host, port=self.port,
                reason='no free SSH connection within %ss '
                       '(ssh_max_pool_conn)' % self.timeout)
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
            self._slots.release()

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
        """Run ``use(conn)``; once more on a new connection if the pooled
        one was stale before anything was sent."""
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

    def _execute(self, argv, cmd, input, timeout):
        def use(conn):
            channel = self._open_channel(conn, cmd)
            return self._run_on_channel(channel, cmd, input, timeout)
        return self._with_fresh_retry(use)

    def _run_on_channel(self, channel, cmd, input, timeout):
        deadline = time.monotonic() + timeout
        channel.settimeout(timeout)
        try:
            if input:
                channel.sendall(input)
            channel.shutdown_write()
            out, err = [], []
            while True:
                if time.monotonic() > deadline:
                    raise socket.timeout()
                got = False
                while channel.recv_ready():
                    out.append(channel.recv(65536))
                    got = True
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(65536))
                    got = True
                if channel.exit_status_ready() and not (
                        channel.recv_ready() or channel.recv_stderr_ready()):
                    break
                if not got:
                    channel.status_event.wait(0.02)
            return channel.recv_exit_status(), b''.join(out), b''.join(err)
        except socket.timeout:
            raise self._timeout(cmd, timeout)
        except _CONNECTION_ERRORS as e:
            raise self._lost(cmd, e)
        finally:
            channel.close()

    def _timeout(self, cmd, timeout):
        return exception.CommandTimeout(cmd=strutils.mask_password(cmd),
                                        host=self.host, timeout=timeout)

    def _lost(self, cmd, error):
        return exception.StorageHostUnreachable(
            host=self.host, port=self.port,
            reason='connection lost while running %s: %s'
            % (strutils.mask_password(cmd), error))

    # -- agent sessions --------------------------------------------------

    def request(self, program, argv, payload, timeout=None):
        """One request over the pooled connection's agent session."""
        timeout = timeout or self.timeout
        cmd = command_line([program, 'session'])
        shown = command_line(list(argv))
        line = request_line(argv, payload).encode()
        start = time.monotonic()

        def use(conn):
            fresh = conn.session is None or conn.session.closed or \
                conn.session.exit_status_ready()
            if fresh:
                conn.drop_session()
                conn.session = self._open_channel(conn, cmd)
            try:
                conn.session.sendall(line)
            except _CONNECTION_ERRORS as e:
                conn.drop_session()
                raise _StaleConnection(e)
            try:
                return self._read_reply(conn, timeout)
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

    def _read_reply(self, conn, timeout):
        channel = conn.session
        deadline = time.monotonic() + timeout
        stderr = []
        channel.settimeout(0.2)
        try:
            while b'\n' not in conn.buffer:
                if time.monotonic() > deadline:
                    raise self._timeout('cinder-zol-host request', timeout)
                while channel.recv_stderr_ready():
                    stderr.append(channel.recv_stderr(65536))
                try:
                    data = channel.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    err = b''.join(stderr).decode('utf-8', 'replace')
                    raise exception.StorageHostUnreachable(
                        host=self.host, port=self.port,
                        reason='the storage host agent ended the session '
                               '(exit status %s): %s' % (
                                   channel.recv_exit_status()
                                   if channel.exit_status_ready() else '?',
                                   strutils.mask_password(err.strip())
                                   or 'no message'))
                conn.buffer += data
        except _CONNECTION_ERRORS as e:
            raise self._lost('cinder-zol-host request', e)
        line, _sep, conn.buffer = conn.buffer.partition(b'\n')
        return line.decode('utf-8', 'replace')

    # -- bulk data -------------------------------------------------------

    def send_stream(self, argv, chunks, timeout=None):
        timeout = timeout or self.timeout
        cmd = command_line(list(argv))

        def use(conn):
            channel = self._open_channel(conn, cmd)
            channel.settimeout(timeout)
            try:
                for chunk in chunks:
                    channel.sendall(chunk)
                    while channel.recv_stderr_ready():
                        channel.recv_stderr(65536)   # keep the window open
            except socket.timeout:
                channel.close()
                raise self._timeout(cmd, timeout)
            except _CONNECTION_ERRORS as e:
                channel.close()
                raise self._lost(cmd, e)
            return self._run_on_channel(channel, cmd, None, timeout)

        start = time.monotonic()
        code, out, err = self._with_fresh_retry(use)
        LOG.debug('%(host)s: %(cmd)s -> %(rc)s in %(t).2fs',
                  {'host': self.host, 'cmd': cmd, 'rc': code,
                   't': time.monotonic() - start})
        return Result(out.decode('utf-8', 'replace'),
                      err.decode('utf-8', 'replace'), code)

    @contextlib.contextmanager
    def receive_stream(self, argv, timeout=None):
        timeout = timeout or self.timeout
        cmd = command_line(list(argv))
        opened = []

        def use(conn):
            channel = self._open_channel(conn, cmd)
            channel.settimeout(timeout)
            channel.shutdown_write()
            opened.append(channel)
            return conn

        with self._connection() as conn:
            try:
                use(conn)
            except _StaleConnection as e:
                raise exception.StorageHostUnreachable(
                    host=self.host, port=self.port, reason=e.args[0])
            channel = opened[0]
            reader = _ChannelReader(channel)
            try:
                yield reader
                rest = reader.read(1)
                code = channel.recv_exit_status()
                err = b''
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
            except socket.timeout:
                raise self._timeout(cmd, timeout)
            except _CONNECTION_ERRORS as e:
                raise self._lost(cmd, e)
            finally:
                channel.close()
        if code or rest:
            raise processutils.ProcessExecutionError(
                stderr=strutils.mask_password(err.decode('utf-8',
                                                         'replace')),
                exit_code=code, cmd=cmd,
                description='unread data' if rest else None)

    def close(self):
        while self._idle:
            self._idle.pop().close()


class _ChannelReader(object):
    """read(n) over a channel's stdout, keeping stderr drained."""

    def __init__(self, channel):
        self.channel = channel

    def read(self, size=-1):
        chunks = []
        want = size if size >= 0 else None
        while want is None or want > 0:
            while self.channel.recv_stderr_ready():
                self.channel.recv_stderr(65536)
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
                     max_size=conf.ssh_max_pool_conn)
