"""A small in-process SSH server on 127.0.0.1 for testing the runner.

Speaks real SSH (paramiko's server side): public-key auth, exec requests run
through ``sh -c`` locally with stdin, stdout, stderr and exit status, so the
runner's protocol handling is tested without a storage host.
"""

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
        self.owner.commands.append(command.decode())
        threading.Thread(target=self._exec, args=(channel, command),
                         daemon=True).start()
        return True

    def _exec(self, channel, command):
        proc = subprocess.Popen(['sh', '-c', command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        data = b''
        while True:
            chunk = channel.recv(65536)
            if not chunk:
                break
            data += chunk
        out, err = proc.communicate(data)
        if out:
            channel.sendall(out)
        if err:
            channel.sendall_stderr(err)
        channel.send_exit_status(proc.returncode)
        channel.close()


class SshServer(object):
    """Start with ``start()``; accepts ``client_key`` for user cinder."""

    def __init__(self, client_key):
        self.host_key = paramiko.ECDSAKey.generate()
        self.client_key = client_key
        self.commands = []
        self.transports = []
        self._sock = socket.socket()
        self._sock.bind(('127.0.0.1', 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._stop = False

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            try:
                transport.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError):
                continue

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
        self._stop = True
        self.drop_connections()
        self._sock.close()
