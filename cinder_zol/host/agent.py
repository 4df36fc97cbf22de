"""cinder-zol-host: the storage host end of every driver request.

Three ways in, one dispatch:

``cinder-zol-host OP ARG...``
    one request; a JSON payload on stdin (or raw data for stream
    operations); one JSON reply line on stdout.
``cinder-zol-host session``
    many requests over one SSH channel: one JSON request per line
    (``{"argv": [...], "payload": {...}}``), one JSON reply per line. Saves
    a process start per request.
``ForceCommand /usr/libexec/cinder-zol/cinder-zol-host --ssh-wrapper``
    sshd runs this for the driver's account whatever the client asked;
    the command the client sent (``SSH_ORIGINAL_COMMAND``) must be one of
    the two forms above, quoted exactly as the driver quotes it, or it is
    refused with exit status 126.

Every request, run or refused, leaves one line in syslog (authpriv, see
:func:`.log.audit`), here and in the root helper. A malformed session line
is refused and the session goes on.

Replies: ``{"ok": true, "result": {...}, "notes": [...]}`` or
``{"ok": false, "error": {"kind": ..., "message": ..., "stderr": ...,
"hint": ...}, "notes": [...]}`` (exit status 1, or 126 when refused: Refused
or NotOwned, nothing ran).
"""

import json
import os
import shlex
import signal
import subprocess
import sys

from . import config as config_mod
from . import errors
from . import execute
from . import groups  # noqa: F401 (registers group snapshots and clones)
from . import images
from . import locks
from . import log
from . import manage  # noqa: F401 (registers manage, retype)
from . import names
from . import ops
from . import records
from . import target   # noqa: F401 (registers the target operations)
from . import zfs

PROGRAM = '/usr/libexec/cinder-zol/cinder-zol-host'
TARGET_PROGRAM = '/usr/libexec/cinder-zol/cinder-zol-target'
REFUSED_EXIT = 126
MAX_REQUEST = 1 << 20       # a JSON request or payload
MAX_COMMAND = 16 * 1024     # SSH_ORIGINAL_COMMAND


class Host(object):
    """Everything an operation may use on this storage host."""

    def __init__(self, config, executor=None, target_runner=None,
                 lock_dir=config_mod.LOCK_DIR,
                 target_lock_dir=config_mod.TARGET_LOCK_DIR,
                 lock_wait=locks.DEFAULT_WAIT):
        self.config = config
        self.executor = executor or execute.Executor()
        self.target_runner = target_runner
        self.lock_dir = lock_dir
        self.target_lock_dir = target_lock_dir
        self.lock_wait = lock_wait
        self.target_backends = {}
        self.wait_for_device = target.wait_for_device
        self.device_of = target.device_of
        self.target_state_dir = records.STATE_DIR
        # what a crash may leave half made: swept at start-up
        self.transient_prefixes = images.Transients(self)
        self._zfs = {}
        self._lock_owners = None
        self._root = None           # the root helper session (non-root)

    def zfs(self, parent):
        if parent not in self._zfs:
            self._zfs[parent] = zfs.ZfsHost(self.executor, parent,
                                            self.config.pool_features)
        return self._zfs[parent]

    def zfs_version(self):
        if not self.config.datasets:
            return None
        return self.zfs(self.config.datasets[0]).version()

    def locked(self, parent, mode):
        owners = self._lock_owners
        if owners is None:
            uid = config_mod.agent_uid(self.config.user)
            owners = self._lock_owners = {uid} if uid is not None else set()
        return locks.hold(self.lock_dir, locks.lock_name(parent),
                          shared=(mode == 'shared'), wait=self.lock_wait,
                          owners=owners)

    def run_target(self, operation, args, payload):
        """Target operations run as root: here, or through sudo."""
        if self.target_runner is not None:
            return self.target_runner(operation, args, payload)
        if os.geteuid() == 0:
            return target.dispatch(self, operation, args, payload)
        return self._root_call([operation.name] + args, payload)

    def _root_call(self, argv, payload):
        """One request to the root helper, through a sudo session.

        The session stays open for the life of this agent: a sudo and a
        Python start per agent, not per request.
        """
        line = (json.dumps({'argv': argv, 'payload': payload}) + '\n')
        for attempt in (1, 2):
            if self._root is None or self._root.poll() is not None:
                self._root = subprocess.Popen(
                    ['sudo', '-n', '--', TARGET_PROGRAM, 'session'],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, env=execute.ENV, close_fds=True)
            try:
                self._root.stdin.write(line.encode())
                self._root.stdin.flush()
            except OSError:
                self._root.kill()
                self._root.wait()
                if attempt == 2:
                    raise errors.TargetError('the root helper session '
                                             'closed its input')
                continue   # never reached the helper: safe to resend
            reply = self._root.stdout.readline()
            if reply:
                return _relay(execute.Completed(argv, 0, reply.decode(), ''))
            self._root.stdin.close()
            stderr = self._root.stderr.read().decode('utf-8', 'replace')
            rc = self._root.wait()
            self._root = None
            return _relay(execute.Completed(argv, rc, '', stderr))

    def dispatch(self, argv, payload):
        """Validate and run one request; the operation's result dict."""
        operation, args = ops.parse(argv, self.config)
        if operation.payload or operation.target:
            if not isinstance(payload, dict):
                raise errors.Refused('%s needs a JSON object payload'
                                     % operation.name)
        if operation.target:
            return self.run_target(operation, args, payload)
        if operation.lock is None:
            return operation.func(self, *args, payload=payload)
        with self.locked(args[0], operation.lock):
            return operation.func(self, *args, payload=payload)


def _relay(done):
    """The root helper's reply, or an error saying why there is none."""
    line = done.stdout.strip().splitlines()[-1:] if done.stdout else []
    try:
        reply = json.loads(line[0]) if line else None
    except ValueError:
        reply = None
    if isinstance(reply, dict) and 'ok' in reply:
        for note in reply.get('notes') or ():
            log.note(note)
        if reply['ok']:
            return reply.get('result') or {}
        raise errors.from_dict(reply.get('error') or {})
    stderr = done.stderr.strip()
    if 'password is required' in stderr or 'not allowed' in stderr:
        raise errors.PermissionDenied(
            'sudo refused the root helper %s' % TARGET_PROGRAM, stderr,
            'Install the sudoers rule of setup-storage-host.sh '
            '(/etc/sudoers.d/cinder-zol).')
    raise errors.TargetError('the root helper %s failed (exit %s)'
                             % (TARGET_PROGRAM, done.returncode), stderr)


def reply_ok(result):
    return {'ok': True, 'result': result, 'notes': log.take_notes()}


def reply_error(error):
    return {'ok': False, 'error': error.to_dict(),
            'notes': log.take_notes()}


def _write(reply, stream=None):
    stream = stream or sys.stdout
    try:
        stream.write(json.dumps(reply, sort_keys=True) + '\n')
        stream.flush()
    except BrokenPipeError:
        pass   # the client is gone; the operation itself is done


REFUSALS = (errors.Refused, errors.NotOwned)


def _decode(data, what):
    """A JSON object from UTF-8 bytes, or Refused (nothing ran)."""
    try:
        value = json.loads(data.decode('utf-8'))
    except (ValueError, RecursionError):   # bad UTF-8 is a ValueError
        raise errors.Refused('%s is not UTF-8 JSON (or nested too deeply)'
                             % what)
    if not isinstance(value, dict):
        raise errors.Refused('%s is not a JSON object' % what)
    return value


def _read_payload(stream):
    data = stream.read(MAX_REQUEST + 1)
    if len(data) > MAX_REQUEST:
        raise errors.Refused('payload larger than %d bytes' % MAX_REQUEST)
    if not data.strip():
        return {}
    return _decode(data, 'payload')


def _answer(run):
    """Run one request: its reply, and its audit line in syslog.

    ``run(seen)`` records the request's argv and payload in ``seen`` as
    soon as it knows them and returns the result. Whatever fails becomes
    an error reply: one bad request never ends a session.
    """
    seen = {'argv': None, 'payload': None}
    try:
        result = run(seen)
    except Exception as e:
        if not isinstance(e, errors.HostError):
            e = errors.HostError('unexpected %s in the storage host agent'
                                 % type(e).__name__, str(e))
        refused = isinstance(e, REFUSALS)
        log.audit(seen['argv'], seen['payload'], '%s (%s: %s)' % (
            'REFUSED' if refused else 'failed', e.kind, e), refused)
        return reply_error(e)
    log.audit(seen['argv'], seen['payload'], 'ok')
    return reply_ok(result)


def exit_status(reply):
    """0, 1, or REFUSED_EXIT when nothing ran because it was refused."""
    if reply['ok']:
        return 0
    refusals = [cls.kind for cls in REFUSALS]
    return REFUSED_EXIT if reply['error']['kind'] in refusals else 1


def one_request(host, argv, target_only=False):
    """Run ``OP ARG...`` with stdin as payload; return the exit status.

    ``target_only``: the root helper, which runs target operations only.
    """
    operation = _operation(host, argv, target_only)
    if operation is not None and operation.stream:
        return _stream(host, operation, argv)

    def run(seen):
        seen['argv'] = argv
        operation = _operation(host, argv, target_only, check=True)
        payload = seen['payload'] = _read_payload(sys.stdin.buffer) \
            if (operation.payload or operation.target) else {}
        return host.dispatch(argv, payload)

    reply = _answer(run)
    _write(reply)
    status = exit_status(reply)
    if status == REFUSED_EXIT:
        sys.stderr.write('%s: refused: %s\n' % (
            'cinder-zol-target' if target_only else 'cinder-zol-host',
            errors.from_dict(reply['error'])))
    return status


def _operation(host, argv, target_only, check=False):
    """The operation ``argv`` asks for; None or Refused when not allowed."""
    try:
        operation, _args = ops.parse(argv, host.config)
        if target_only and not operation.target:
            raise errors.Refused('%s is not a root helper operation'
                                 % operation.name)
    except errors.Refused:
        if check:
            raise
        return None
    return operation


def _stream(host, operation, argv):
    """Raw data ops: hand stdin/stdout to the root helper as they are."""
    if host.target_runner is None and os.geteuid() != 0:
        log.audit(argv, None, 'handed to the root helper')
        sys.stdout.flush()
        # nothing of the client's environment (sshd's AcceptEnv) goes on
        os.execve('/usr/bin/sudo', ['sudo', '-n', '--', TARGET_PROGRAM] +
                  argv, execute.ENV)
    status = target.stream(host, operation, argv[1:], sys.stdin.buffer,
                           sys.stdout)
    log.audit(argv, None, 'ok' if status == 0 else
              'failed (exit status %d)' % status, status != 0)
    return status


def session(host, inp=None, out=None, target_only=False):
    """Serve JSON-line requests until EOF; one reply line each.

    ``target_only``: the root helper's session, which refuses everything
    but target operations. A malformed line is refused and the session
    goes on with the next one.
    """
    inp = inp or sys.stdin.buffer
    out = out or sys.stdout
    while True:
        line = inp.readline(MAX_REQUEST + 1)
        if not line:
            return 0

        def run(seen, line=line):
            if len(line) > MAX_REQUEST and not line.endswith(b'\n'):
                _skip_line(inp)
                raise errors.Refused('request longer than %d bytes'
                                     % MAX_REQUEST)
            request = _decode(line, 'request')
            argv = seen['argv'] = request.get('argv')
            payload = seen['payload'] = request.get('payload') or {}
            if not isinstance(argv, list) or \
                    not all(isinstance(arg, str) for arg in argv):
                raise errors.Refused('a request is {"argv": [strings], '
                                     '"payload": {...}}')
            operation = _operation(host, argv, target_only, check=True)
            if operation.stream:
                raise errors.Refused('%s streams data: not in a session'
                                     % operation.name)
            return host.dispatch(argv, payload)

        _write(_answer(run), out)


def _skip_line(inp):
    """Discard the rest of an over-long line, up to its newline."""
    while True:
        rest = inp.readline(MAX_REQUEST)
        if not rest or rest.endswith(b'\n'):
            return


def canonical(argv):
    """The driver's quoting (cinder_zol.runner.command_line)."""
    return ' '.join(shlex.quote(a) for a in argv)


def parse_ssh_command(command):
    """SSH_ORIGINAL_COMMAND -> argv after the program, or Refused."""
    if command is None:
        raise errors.Refused('interactive logins are not allowed; this key '
                             'may only run cinder-zol-host requests')
    if len(command) > MAX_COMMAND or any(c in command for c in '\0\r\n'):
        raise errors.Refused('command too long or with control characters')
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise errors.Refused('command does not parse: %s' % e)
    if canonical(argv) != command:
        raise errors.Refused('command is not quoted canonically')
    if not argv or argv[0] not in (PROGRAM, 'cinder-zol-host'):
        raise errors.Refused('only %s may run' % PROGRAM)
    return argv[1:]


def _note_origin():
    """Audit lines name the SSH client the requests come from."""
    client = (os.environ.get('SSH_CONNECTION') or 'local').split(' ')[0]
    log.set_origin('request from %s' % client)


def ssh_wrapper(host):
    command = os.environ.get('SSH_ORIGINAL_COMMAND')
    _note_origin()
    try:
        argv = parse_ssh_command(command)
    except errors.HostError as e:
        log.audit(None, None, 'REFUSED (%s: %s); command %s' % (
            e.kind, e, json.dumps((command or '')[:512])), True)
        sys.stderr.write('cinder-zol-host: refused: %s\n' % e)
        return REFUSED_EXIT
    if argv == ['session']:
        log.audit(argv, None, 'session opened')
        return session(host)
    return one_request(host, argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # A dropped connection must not kill a half-done operation: finish it
    # (the reply is lost, the next request sees the result).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    log.enable_syslog()
    _note_origin()
    try:
        host = Host(config_mod.load())
    except errors.HostError as e:
        _write(reply_error(e))
        sys.stderr.write('cinder-zol-host: %s\n' % e)
        return 1
    if argv == ['--ssh-wrapper']:
        return ssh_wrapper(host)
    if argv == ['session']:
        return session(host)
    return one_request(host, argv)


__all__ = ['Host', 'main', 'names']
