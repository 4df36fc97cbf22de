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
:func:`.log.audit`), here and in the root helper (:mod:`.serve`, the
request loop both share). A malformed session line is refused and the
session goes on.

Replies (:mod:`.wire`): ``{"ok": true, "result": {...}, "notes": [...]}``
or ``{"ok": false, "error": {...}, "notes": [...]}`` (exit status 1, or
126 when refused: Refused or NotOwned, nothing ran). Root operations go to
the root helper (:mod:`.root`, the program ``wire.ROOT_PROGRAM``): one
session per agent, through sudo unless the agent is root already. The
agent imports nothing of the root helper's code.
"""

import json
import os
import shlex
import signal
import subprocess
import sys

from . import config as config_mod
from . import context
from . import errors
from . import execute
from . import groups  # noqa: F401 (binds group snapshots and clones)
from . import images
from . import log
from . import manage  # noqa: F401 (binds manage, retype)
from . import ops  # noqa: F401 (binds the volume operations)
from . import serve
from . import wire


def new_context(config, **kwargs):
    """The agent's request context: its sweeps know the image leases."""
    ctx = context.Context(config, **kwargs)
    ctx.transient_prefixes = images.Transients(ctx)
    return ctx


def dispatch(ctx, operation, args, payload):
    """Run one parsed request; the operation's result dict."""
    if operation.payload or operation.root:
        if not isinstance(payload, dict):
            raise errors.Refused('%s needs a JSON object payload'
                                 % operation.name)
    if operation.root:
        return run_root(ctx, operation, args, payload)
    func = serve.IMPLEMENTATIONS[operation.name]
    if operation.lock is None:
        return func(ctx, *args, payload=payload)
    with ctx.locked(args[0], operation.lock):
        return func(ctx, *args, payload=payload)


def request(ctx, argv, payload):
    """Parse and run ``[OP, ARG...]``: what a session line does."""
    operation, args = serve.parse(ctx, argv)
    return dispatch(ctx, operation, args, payload)


def run_root(ctx, operation, args, payload):
    """Root operations run in the root helper (or ``ctx.target_runner``)."""
    if ctx.target_runner is not None:
        return ctx.target_runner(operation, args, payload)
    if ctx.root_session is None:
        ctx.root_session = RootSession()
    return ctx.root_session.call([operation.name] + args, payload)


def root_command(argv):
    """The root helper's command line: through sudo unless already root."""
    if os.geteuid() == 0:
        return [wire.ROOT_PROGRAM] + list(argv)
    return ['sudo', '-n', '--', wire.ROOT_PROGRAM] + list(argv)


class RootSession(object):
    """Requests to the root helper, through one session.

    The session stays open for the life of this agent: a sudo and a
    Python start per agent, not per request.
    """

    def __init__(self):
        self.process = None

    def call(self, argv, payload):
        line = wire.request_line(argv, payload)
        for attempt in (1, 2):
            if self.process is None or self.process.poll() is not None:
                self.process = subprocess.Popen(
                    root_command(['session']),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, env=execute.ENV, close_fds=True)
            try:
                self.process.stdin.write(line.encode())
                self.process.stdin.flush()
            except OSError:
                self.process.kill()
                self.process.wait()
                if attempt == 2:
                    raise errors.TargetError('the root helper session '
                                             'closed its input')
                continue   # never reached the helper: safe to resend
            reply = self.process.stdout.readline()
            if reply:
                return _relay(execute.Completed(argv, 0, reply.decode(), ''))
            self.process.stdin.close()
            stderr = self.process.stderr.read().decode('utf-8', 'replace')
            rc = self.process.wait()
            self.process = None
            return _relay(execute.Completed(argv, rc, '', stderr))


def _relay(done):
    """The root helper's reply, or an error saying why there is none."""
    line = done.stdout.strip().splitlines()[-1:] if done.stdout else []
    reply = wire.decode(line[0]) if line else None
    if reply is not None and 'ok' in reply:
        return wire.outcome(reply, errors.from_dict, log.note)
    stderr = done.stderr.strip()
    if 'password is required' in stderr or 'not allowed' in stderr:
        raise errors.PermissionDenied(
            'sudo refused the root helper %s' % wire.ROOT_PROGRAM, stderr,
            'Install the sudoers rule of setup-storage-host.sh '
            '(/etc/sudoers.d/cinder-zol).')
    raise errors.TargetError('the root helper %s failed (exit %s)'
                             % (wire.ROOT_PROGRAM, done.returncode), stderr)


def _stream(ctx, operation, args, argv):
    """Raw data ops: hand stdin/stdout to the root helper as they are."""
    log.audit(argv, None, 'handed to the root helper')
    sys.stdout.flush()
    command = root_command(argv)
    program = '/usr/bin/sudo' if command[0] == 'sudo' else command[0]
    # nothing of the client's environment (sshd's AcceptEnv) goes on
    os.execve(program, command, execute.ENV)


def one_request(ctx, argv):
    """Run ``OP ARG...`` with stdin as payload; return the exit status."""
    return serve.one_request(ctx, argv, dispatch, _stream)


def session(ctx, inp=None, out=None):
    """Serve JSON-line requests until EOF (:func:`.serve.session`)."""
    return serve.session(ctx, dispatch, inp, out)


def canonical(argv):
    """The driver's quoting (cinder_zol.runner.command_line)."""
    return ' '.join(shlex.quote(a) for a in argv)


def parse_ssh_command(command):
    """SSH_ORIGINAL_COMMAND -> argv after the program, or Refused."""
    if command is None:
        raise errors.Refused('interactive logins are not allowed; this key '
                             'may only run cinder-zol-host requests')
    if len(command) > wire.MAX_COMMAND or any(c in command for c in '\0\r\n'):
        raise errors.Refused('command too long or with control characters')
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise errors.Refused('command does not parse: %s' % e)
    if canonical(argv) != command:
        raise errors.Refused('command is not quoted canonically')
    if not argv or argv[0] not in (wire.PROGRAM, 'cinder-zol-host'):
        raise errors.Refused('only %s may run' % wire.PROGRAM)
    return argv[1:]


def _note_origin():
    """Audit lines name the SSH client the requests come from."""
    client = (os.environ.get('SSH_CONNECTION') or 'local').split(' ')[0]
    log.set_origin('request from %s' % client)


def ssh_wrapper(ctx):
    command = os.environ.get('SSH_ORIGINAL_COMMAND')
    _note_origin()
    try:
        argv = parse_ssh_command(command)
    except errors.HostError as e:
        log.audit(None, None, 'REFUSED (%s: %s); command %s' % (
            e.kind, e, json.dumps((command or '')[:512])), True)
        sys.stderr.write('cinder-zol-host: refused: %s\n' % e)
        return wire.REFUSED_EXIT
    if argv == ['session']:
        log.audit(argv, None, 'session opened')
        return session(ctx)
    return one_request(ctx, argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # A dropped connection must not kill a half-done operation: finish it
    # (the reply is lost, the next request sees the result).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    log.enable_syslog()
    _note_origin()
    try:
        ctx = new_context(config_mod.load())
    except errors.HostError as e:
        serve.write(serve.reply_error(e))
        sys.stderr.write('cinder-zol-host: %s\n' % e)
        return 1
    if argv == ['--ssh-wrapper']:
        return ssh_wrapper(ctx)
    if argv == ['session']:
        return session(ctx)
    return one_request(ctx, argv)
