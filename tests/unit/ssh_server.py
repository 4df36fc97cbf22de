"""A small in-process SSH server on 127.0.0.1 for testing the runner.

Speaks real SSH (paramiko's server side): public-key and password auth,
exec requests run through ``sh -c`` locally. Data streams both ways while
the command runs (channel -> stdin, stdout/stderr -> channel), so a
long-lived interactive command (an agent session) works as it does under
sshd; the exit status follows the output, then the channel closes.

For tests: ``commands`` (every exec request, in order), ``exec_count()``,
``kill()`` (a command dying mid-session), ``drop_connections()`` (a
restarted or flaky host) and ``exit_status_first`` (send the exit status
before the output, as OpenSSH may).
"""

import os
import signal
import socket
import subprocess
import threading

import paramiko


class _Server(paramiko.ServerInterface):

    def __init__(self, owner):
        self.owner = owner

    def check_auth_publickey(self, username, key):
        if username == 'cinder' and key == self.owner.client_key:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username, password):
        if username == 'cinder' and password == 'secret-pw':
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return 'publickey,password'

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == 'session' else \
            paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        self.owner._exec(channel, command.decode())
        return True


class _Command(object):
    """One exec request: a process and the threads pumping its streams."""

    def __init__(self, owner, channel, command):
        self.owner = owner
        self.channel = channel
        self.command = command
        # stdin is a socket: under eventlet, writing to a pipe whose
        # reader is gone retries EPIPE forever instead of failing.
        self.stdin, theirs = socket.socketpair()
        try:
            os.set_blocking(theirs.fileno(), True)   # eventlet unset it
            self.proc = subprocess.Popen(
                ['sh', '-c', command], stdin=theirs,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True)   # kill() takes the whole group
        finally:
            theirs.close()
        self.status_sent = threading.Event()
        if not owner.exit_status_first:
            self.status_sent.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pump_in(self):
        stdin = self.stdin
        try:
            while True:
                data = self.channel.recv(65536)
                if not data:
                    break
                if stdin is None:
                    continue       # the command stopped reading: discard
                try:
                    stdin.sendall(data)
                except OSError:
                    stdin = None
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            self.stdin.close()

    def _pump_out(self, stream, send):
        # what is there now (a reply line), not a full 64 KiB
        read = getattr(stream, 'read1', stream.read)
        try:
            while True:
                data = read(65536)
                if not data:
                    break
                self.status_sent.wait()
                send(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass   # the client closed the channel: like sshd, stop reading
        finally:
            stream.close()

    def _run(self):
        pumps = [threading.Thread(target=target, args=args, daemon=True)
                 for target, args in (
                     (self._pump_in, ()),
                     (self._pump_out, (self.proc.stdout,
                                       self.channel.sendall)),
                     (self._pump_out, (self.proc.stderr,
                                       self.channel.sendall_stderr)))]
        for pump in pumps:
            pump.start()
        code = self.proc.wait()
        if self.owner.exit_status_first:
            self._exit_status(code)
            self.status_sent.set()
        pumps[1].join()
        pumps[2].join()
        if not self.owner.exit_status_first:
            self._exit_status(code)
        try:
            self.channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        pumps[0].join()

    def _exit_status(self, code):
        if code < 0:
            # killed by a signal: no exit status (sshd would send an
            # exit-signal, which paramiko's client ignores)
            return
        try:
            self.channel.send_exit_status(code)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class SshServer(object):
    """Start with ``start()``; accepts ``client_key`` for user cinder."""

    def __init__(self, client_key):
        self.host_key = paramiko.ECDSAKey.generate()
        self.client_key = client_key
        self.commands = []
        self.transports = []
        self.exit_status_first = False
        self.disabled_algorithms = None   # as paramiko.Transport takes it
        self._running = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(('127.0.0.1', 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self._stop:
                conn.close()
                return
            transport = paramiko.Transport(
                conn, disabled_algorithms=self.disabled_algorithms)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            try:
                transport.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError):
                continue

    def _exec(self, channel, command):
        with self._lock:
            self.commands.append(command)
            self._running.append(_Command(self, channel, command))

    def exec_count(self, containing=''):
        """How many exec requests (with ``containing`` in them) arrived."""
        return len([c for c in self.commands if containing in c])

    def processes(self, containing=''):
        """The commands still running (with ``containing`` in them)."""
        with self._lock:
            return [c for c in self._running
                    if containing in c.command and c.running()]

    def finished(self, containing=''):
        """Have the commands (with ``containing``) ended, channels closed?"""
        with self._lock:
            return all(not c.thread.is_alive() for c in self._running
                       if containing in c.command)

    def kill(self, containing=''):
        """SIGKILL running commands (an agent dying); how many."""
        victims = self.processes(containing)
        for command in victims:
            command.kill()
        for command in victims:
            command.proc.wait()
        return len(victims)

    def drop_connections(self):
        """Break every open connection (a restarted or flaky host)."""
        for t in self.transports:
            t.close()
        del self.transports[:]

    def known_hosts_line(self, key=None):
        key = key or self.host_key
        return '[127.0.0.1]:%d %s %s\n' % (self.port, key.get_name(),
                                           key.get_base64())

    def stop(self):
        """Stop accepting, break connections, kill and reap commands."""
        if not self._stop:
            self._stop = True
            # Wake the accept loop by connecting: closing the socket under
            # it wakes neither a native thread nor a green one (whose
            # listener would then trip over the next user of its fd).
            if self._thread is not None:
                try:
                    socket.create_connection(('127.0.0.1', self.port),
                                             timeout=5).close()
                except OSError:
                    pass
                self._thread.join(5)
            self._sock.close()
        for command in list(self._running):
            command.kill()
        self.drop_connections()
        for command in list(self._running):
            command.proc.wait()
            command.thread.join(5)
