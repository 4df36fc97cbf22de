"""Processes of the lab and its harnesses, on 127.0.0.1 only.

One place for what the guest, the stacks and the runners need: waiting for
a condition with a deadline, free loopback ports, a process in its own
session stopped by its process group id (never by name), log tails, a
private RabbitMQ node (own epmd, ports, mnesia and cookie, loopback only),
and running a harness inside ``python -m cinder_zol_lab run`` with its
``N passed, M failed`` line read back.
Stdlib only; ``amqp`` (an oslo.messaging dependency) is imported when
waiting for RabbitMQ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
import re
import signal
import socket
import subprocess
import sys
import time

RABBIT_SBIN = '/usr/lib/rabbitmq/bin/rabbitmq-server'
_RECORD = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d')
REPO = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    pass


class Terminated(BaseException):
    """SIGTERM/SIGHUP: unwind through the finally blocks like Ctrl-C does."""


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def unwind_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into Terminated (main thread only)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)


class WaitTimeout(ServiceError, TimeoutError):
    """wait_until's deadline passed."""


def wait_until(probe, timeout: float, *, interval: float = 0.3, what,
               alive=None):
    """Call ``probe()`` until it returns something true; return that.

    ``alive()``, when given, runs before every probe and raises when what
    we wait for has died (a process, a guest). ``probe`` may raise to give
    up early. After ``timeout`` seconds raise WaitTimeout saying ``what``
    was awaited; ``what`` may be a callable, called then, to tell the last
    state seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise WaitTimeout(f'timed out after {timeout:g}s waiting for '
                              f'{text}')
        time.sleep(interval)


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens there on 127.0.0.1, else any."""
    for port in ([preferred] if preferred else []) + [0]:
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(('127.0.0.1', port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise ServiceError('no free port on 127.0.0.1')


def tail(path: Path, lines: int = 40, debug: bool = True) -> str:
    """Last lines of a log, without DEBUG records unless ``debug``.

    A DEBUG record's continuation lines go with it.
    """
    try:
        text = path.read_text(errors='replace')
    except OSError as exc:
        return f'(cannot read {path}: {exc})'
    rows = text.splitlines()
    if not debug:
        kept, skipping = [], False
        for r in rows:
            if _RECORD.match(r):
                skipping = ' DEBUG ' in r
            if not skipping:
                kept.append(r)
        rows = kept
    return '\n'.join(rows[-lines:])


def end(popen: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM one child process, SIGKILL it after ``timeout``; reap it."""
    if popen.poll() is None:
        popen.terminate()
        try:
            return popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
    return popen.wait()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Proc:
    """One service process in its own process group, output to a log."""

    def __init__(self, name: str, argv: list[str], log: Path,
                 env: dict | None = None, cwd: Path | None = None):
        self.name, self.argv, self.log = name, argv, log
        self.env, self.cwd = env, cwd
        self.popen: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> 'Proc':
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, 'ab') as out:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                start_new_session=True)
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM our process group, SIGKILL it after ``timeout``."""
        if self.popen is None:
            return
        pgid = self.popen.pid  # start_new_session: pgid == pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; give the rest of its group a moment
            with contextlib.suppress(WaitTimeout):
                wait_until(lambda: not group_alive(pgid), 5, interval=0.1,
                           what=f'process group {pgid} to end')
                break
        self.popen = None

    def kill(self) -> None:
        """SIGKILL our process group at once (a crash, for fault tests)."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self.stop()   # and whatever of its group outlived the leader

    def finish(self, timeout: float = 300) -> None:
        """Wait for a one-shot process; raise with its log if it failed."""
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise ServiceError(f'{self.name} did not end within '
                               f'{timeout:.0f}s\n{tail(self.log)}')
        self.popen = None
        if rc:
            raise ServiceError(f'{self.name} exited {rc}\n{tail(self.log)}')


def start_rabbit(rdir: Path, logs: Path, amqp_port: int,
                 node_prefix: str) -> tuple[Proc, Proc]:
    """Start a private RabbitMQ node; return (epmd, rabbitmq) processes."""
    if not os.path.exists(RABBIT_SBIN):
        raise ServiceError(f'{RABBIT_SBIN} missing: apt-get install '
                           'rabbitmq-server')
    rdir.mkdir(parents=True, exist_ok=True)
    epmd_port = free_port()
    dist_port = free_port()
    (rdir / 'rabbitmq-env.conf').write_text('')
    (rdir / 'enabled_plugins').write_text('[].\n')
    (rdir / 'rabbitmq.conf').write_text(
        f'listeners.tcp.1 = 127.0.0.1:{amqp_port}\n'
        'loopback_users.guest = true\n')
    env = dict(
        os.environ,
        HOME=str(rdir),  # .erlang.cookie
        ERL_EPMD_ADDRESS='127.0.0.1', ERL_EPMD_PORT=str(epmd_port),
        RABBITMQ_CONF_ENV_FILE=str(rdir / 'rabbitmq-env.conf'),
        RABBITMQ_NODENAME=f'{node_prefix}{os.getpid()}@localhost',
        RABBITMQ_NODE_IP_ADDRESS='127.0.0.1',
        RABBITMQ_NODE_PORT=str(amqp_port),
        RABBITMQ_DIST_PORT=str(dist_port),
        RABBITMQ_MNESIA_BASE=str(rdir / 'mnesia'),
        RABBITMQ_LOG_BASE=str(rdir / 'log'),
        RABBITMQ_CONFIG_FILE=str(rdir / 'rabbitmq.conf'),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(rdir / 'enabled_plugins'),
        RABBITMQ_PID_FILE=str(rdir / 'pid'),
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
            '-kernel inet_dist_use_interface {127,0,0,1}'),
    )
    # epmd first, in the foreground, so that it is ours to stop
    epmd = Proc('epmd', ['epmd', '-address', '127.0.0.1', '-port',
                         str(epmd_port)], logs / 'epmd.log', env).start()
    rabbit = Proc('rabbitmq', [RABBIT_SBIN], logs / 'rabbitmq.log', env,
                  cwd=rdir).start()
    return epmd, rabbit


def wait_rabbit(amqp_port: int, check_alive, timeout: float = 90) -> None:
    """Wait until the node accepts AMQP.

    ``check_alive()`` raises if the node died meanwhile.
    """
    import amqp

    def accepts():
        try:
            c = amqp.Connection(f'127.0.0.1:{amqp_port}', userid='guest',
                                password='guest', connect_timeout=2)
            c.connect()
            c.close()
            return True
        except Exception:
            return False
    wait_until(accepts, timeout, what='RabbitMQ to accept AMQP',
               alive=check_alive)


# -- harness runs and their closing line ------------------------------------

SUMMARY = re.compile(r'^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$')
# a harness's line for one failed scenario or test: "<what>: FAIL (<secs>s)"
FAILED_LINE = re.compile(r'^(.*): FAIL \([\d.]+s\)')


@dataclasses.dataclass
class Summary:
    """What a harness run reported on its closing line, and how it ended."""

    passed: int = 0
    failed: int = 0
    skipped: int | None = None
    rc: int = 0
    seconds: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rc and not self.failed

    def line(self) -> str:
        """The closing line: ``N passed, M failed[, K skipped]``."""
        text = f'{self.passed} passed, {self.failed} failed'
        if self.skipped is not None:
            text += f', {self.skipped} skipped'
        return text


def run_under_lab(target: str | None, argv: list[str], label: str,
                  out=sys.stdout, hosts: int = 1) -> Summary:
    """Run ``argv`` inside a lab guest with ``target`` (no guest if None).

    ``hosts``: that many guests on the lab's private link.
    The child's output is passed through; its ``N passed, M failed`` line
    gets ``label`` in front (only the caller's own last line stays bare),
    and its ``...: FAIL (Ns)`` lines are kept, for the caller's last lines.
    A run that died before that line, or exited non-zero without a
    failure, counts one failure.
    """
    if target is not None:
        argv = [sys.executable, '-m', 'cinder_zol_lab', 'run', '--target',
                target, *(['--hosts', str(hosts)] if hosts > 1 else []),
                '--', *argv]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    found = None
    failures = []
    try:
        for line in proc.stdout:
            m = SUMMARY.match(line.strip())
            if m:
                found = m
                line = f'{label}: {line}'
            failed = FAILED_LINE.match(line.strip())
            if failed:
                failures.append(failed.group(1))
            out.write(line)
            out.flush()
        rc = proc.wait()
    except KeyboardInterrupt:
        # the lab CLI got the Ctrl-C too and tears its guest down
        proc.wait()
        raise
    s = Summary(rc=rc, seconds=time.monotonic() - t0, failures=failures)
    if found is None:
        s.failed = 1
    else:
        s.passed, s.failed = int(found.group(1)), int(found.group(2))
        if found.group(3) is not None:
            s.skipped = int(found.group(3))
    if rc and not s.failed:
        s.failed = 1
    return s
