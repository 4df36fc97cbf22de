"""Service processes of the e2e and tempest harnesses, on 127.0.0.1 only.

One place for what both stacks need: free loopback ports, a process in its
own session stopped by its process group id (never by name), log tails, and
a private RabbitMQ node (own epmd, ports, mnesia and cookie, loopback only).
Stdlib only; ``amqp`` (an oslo.messaging dependency) is imported when
waiting for RabbitMQ.
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import socket
import subprocess
import time

RABBIT_SBIN = '/usr/lib/rabbitmq/bin/rabbitmq-server'
_RECORD = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d')


class ServiceError(RuntimeError):
    pass


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
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and group_alive(pgid):
                time.sleep(0.1)
            if not group_alive(pgid):
                break
        self.popen = None


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
    deadline = time.monotonic() + timeout
    while True:
        check_alive()
        try:
            c = amqp.Connection(f'127.0.0.1:{amqp_port}', userid='guest',
                                password='guest', connect_timeout=2)
            c.connect()
            c.close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise ServiceError('RabbitMQ did not accept AMQP '
                                   f'within {timeout:.0f}s')
            time.sleep(0.3)
