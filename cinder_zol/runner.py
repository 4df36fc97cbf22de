"""The one way commands reach the storage host: over SSH or locally.

Callers pass argv lists; this module is the only place that turns them into
a command line (``shlex.quote``), applies sudo, timeouts and retries, logs
with secrets masked, and turns a non-zero exit into
``processutils.ProcessExecutionError``. Cinder's ``SanDriver._run_ssh`` is
not used: it loads only RSA keys, trusts unknown host keys, drops stdin and
ignores exit codes unless asked.
"""

import collections
import contextlib
import os
import shlex
import socket
import threading
import time

from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import strutils
import paramiko

from cinder_zol import exception

LOG = logging.getLogger(__name__)

Result = collections.namedtuple('Result', 'stdout stderr')

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

    def __init__(self, timeout, sudo=False):
        self.timeout = timeout
        self.sudo = sudo

    def run(self, argv, input=None, timeout=None, check_exit_code=True):
        """Run argv, return Result(stdout, stderr) as text.

        ``input`` (str or bytes) is fed to stdin and never logged: pass
        secrets that way rather than as arguments. A non-zero exit raises
        ProcessExecutionError carrying the command's stderr.
        """
        argv = list(argv)
        if self.sudo:
            argv = ['sudo', '-n', '--'] + argv
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
        return Result(out, err)

    def _execute(self, argv, cmd, input, timeout):
        raise NotImplementedError()

    def close(self):
        pass


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


class SshRunner(Runner):
    """Pooled paramiko connections to one storage host.

    Connections are reused, replaced when broken, and limited to
    ``max_size`` at once; the pool is safe under native or green threads.
    """

    def __init__(self, host, port, login, password=None, key_file=None,
                 known_hosts=None, trust_on_first_use=False,
                 conn_timeout=30, timeout=300, max_size=5, sudo=False):
        super().__init__(timeout, sudo)
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
        client.get_transport().set_keepalive(30)
        return client

    @contextlib.contextmanager
    def _connection(self):
        if not self._slots.acquire(timeout=self.timeout):
            raise exception.StorageHostUnreachable(
                host=self.host, port=self.port,
                reason='no free SSH connection within %ss '
                       '(ssh_max_pool_conn)' % self.timeout)
        try:
            client = None
            while self._idle and client is None:
                client = self._idle.pop()
                transport = client.get_transport()
                if transport is None or not transport.is_active():
                    client.close()
                    client = None
            if client is None:
                client = self._connect()
            try:
                yield client
            except BaseException:
                client.close()
                raise
            self._idle.append(client)
        finally:
            self._slots.release()

    def _execute(self, argv, cmd, input, timeout):
        for attempt in (1, 2):
            with self._connection() as client:
                try:
                    channel = client.get_transport().open_session(
                        timeout=self.conn_timeout)
                except _CONNECTION_ERRORS as e:
                    # The command never started: retry once on a new
                    # connection (the pooled one was stale).
                    if attempt == 2:
                        raise exception.StorageHostUnreachable(
                            host=self.host, port=self.port, reason=e)
                    LOG.debug('Stale SSH connection to %s, reconnecting: %s',
                              self.host, e)
                    client.close()
                    continue
                return self._run_on_channel(channel, cmd, input, timeout)

    def _run_on_channel(self, channel, cmd, input, timeout):
        deadline = time.monotonic() + timeout
        channel.settimeout(timeout)
        try:
            channel.exec_command(cmd)
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
            channel.close()
            raise exception.CommandTimeout(cmd=strutils.mask_password(cmd),
                                           host=self.host, timeout=timeout)
        except _CONNECTION_ERRORS as e:
            raise exception.StorageHostUnreachable(
                host=self.host, port=self.port,
                reason='connection lost while running %s: %s'
                % (strutils.mask_password(cmd), e))
        finally:
            channel.close()

    def close(self):
        while self._idle:
            self._idle.pop().close()


def from_configuration(conf):
    """Build the runner a backend section asks for."""
    timeout = conf.zol_ssh_command_timeout
    if conf.san_is_local:
        return LocalRunner(timeout, sudo=conf.zol_use_sudo)
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
                     sudo=conf.zol_use_sudo)
