"""RabbitMQ and the Cinder services of the end-to-end test, all on 127.0.0.1.

Everything lives in one state directory: cinder.conf, api-paste.ini,
resource_filters.json, the sqlite database, lock and state paths, the
RabbitMQ node's mnesia and logs, and one log file per service. Every
process is started here in its own session (process group) and stopped
here by that process group's id, never by name.
"""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess
import sys
import time

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from cinder_zol_lab import backend  # noqa: E402
from cinder_zol_lab import services  # noqa: E402
from cinder_zol_lab.shell import GuestShell  # noqa: E402

BACKEND = 'zol_lab'          # backend section name (and volume_backend_name)
HOST = 'e2e'                 # [DEFAULT] host: survives cinder-volume restarts
VOLUME_READY = 'Driver post RPC initialization completed successfully.'
VOLUME_INIT_FAILED = 'Error encountered during initialization of driver'


ServiceError = services.ServiceError
Proc = services.Proc
free_port = services.free_port
tail = services.tail


def cinder_conf(state: Path, lab_env: dict, amqp_port: int,
                api_port: int) -> str:
    """The cinder.conf e2e runs with (the README's operator config)."""
    opts = backend.settings(GuestShell.from_env(lab_env))
    assert opts['volume_backend_name'] == BACKEND, opts
    lines = [
        '[DEFAULT]',
        f'host = {HOST}',
        'my_ip = 127.0.0.1',
        f'state_path = {state}',
        'auth_strategy = noauth',
        f'transport_url = rabbit://guest:guest@127.0.0.1:{amqp_port}/',
        f'api_paste_config = {state}/api-paste.ini',
        f'resource_query_filters_file = {state}/resource_filters.json',
        'osapi_volume_listen = 127.0.0.1',
        f'osapi_volume_listen_port = {api_port}',
        'osapi_volume_workers = 1',
        f'enabled_backends = {BACKEND}',
        'debug = True',
        '',
        '[database]',
        f'connection = sqlite:///{state}/cinder.sqlite',
        '',
        '[oslo_concurrency]',
        f'lock_path = {state}/lock',
        '',
        '[coordination]',
        f'backend_url = file://{state}/coordination',
        '',
        f'[{BACKEND}]',
        'volume_driver = cinder_zol.ZFSonLinuxISCSIDriver',
    ]
    for key, value in opts.items():
        lines.append(f'{key} = {value}')
    return '\n'.join(lines) + '\n'


class Stack:
    """RabbitMQ + cinder-api + cinder-scheduler + cinder-volume."""

    def __init__(self, state: Path, lab_env: dict,
                 api_port: int | None = None):
        self.state = state
        self.lab_env = lab_env
        self.bindir = Path(sys.executable).parent
        self.logs = state / 'logs'
        self.conf = state / 'cinder.conf'
        self.amqp_port = free_port()
        self.api_port = api_port or free_port(8776)
        self.procs: dict[str, Proc] = {}
        self.timings: dict[str, float] = {}

    @property
    def endpoint(self) -> str:
        return f'http://127.0.0.1:{self.api_port}/v3'

    # -- files -----------------------------------------------------------

    def write_files(self) -> None:
        for sub in ('logs', 'lock', 'coordination', 'rabbit'):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / 'api-paste.ini', self.state / 'api-paste.ini')
        shutil.copy(HERE / 'resource_filters.json',
                    self.state / 'resource_filters.json')
        self.conf.write_text(cinder_conf(self.state, self.lab_env,
                                         self.amqp_port, self.api_port))

    # -- RabbitMQ ------------------------------------------------------

    def start_rabbit(self) -> None:
        """A private node: own epmd, own ports, own mnesia, loopback only."""
        self.procs['epmd'], self.procs['rabbitmq'] = services.start_rabbit(
            self.state / 'rabbit', self.logs, self.amqp_port, 'e2e')

    def wait_rabbit(self, timeout: float = 90) -> None:
        t0 = self.procs['rabbitmq'].started_at
        services.wait_rabbit(self.amqp_port,
                             lambda: self._check_alive('rabbitmq'), timeout)
        self.timings['rabbitmq up'] = time.monotonic() - t0

    # -- Cinder ----------------------------------------------------------

    def _cinder_argv(self, prog: str, *extra: str) -> list[str]:
        return [str(self.bindir / prog), '--config-file', str(self.conf),
                *extra]

    def db_sync(self) -> None:
        t0 = time.monotonic()
        log = self.logs / 'cinder-manage.log'
        with open(log, 'ab') as out:
            r = subprocess.run(self._cinder_argv('cinder-manage', 'db',
                                                 'sync'),
                               stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=300)
        if r.returncode:
            raise ServiceError(f'cinder-manage db sync exited {r.returncode}'
                               f'\n{tail(log)}')
        self.timings['db sync'] = time.monotonic() - t0

    def start_cinder(self, name: str) -> Proc:
        proc = Proc(name, self._cinder_argv(
            name, '--log-file', str(self.logs / f'{name}.log')),
            self.logs / f'{name}.out')
        self.procs[name] = proc.start()
        return proc

    def log_offset(self, name: str) -> int:
        try:
            return (self.logs / f'{name}.log').stat().st_size
        except OSError:
            return 0

    def wait_api(self, timeout: float = 90) -> None:
        t0 = self.procs['cinder-api'].started_at
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive('cinder-api')
            try:
                r = requests.get(f'http://127.0.0.1:{self.api_port}/',
                                 timeout=2)
                if r.status_code in (200, 300):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f'cinder-api did not answer within '
                                   f'{timeout:.0f}s\n'
                                   f'{self.log_tail("cinder-api")}')
            time.sleep(0.3)
        self.timings['cinder-api answering'] = time.monotonic() - t0

    def wait_volume(self, offset: int = 0, timeout: float = 180) -> float:
        """Wait for cinder-volume's driver init (log line after ``offset``)."""
        proc = self.procs['cinder-volume']
        log = self.logs / 'cinder-volume.log'
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive('cinder-volume')
            try:
                with open(log, 'rb') as f:
                    f.seek(offset)
                    text = f.read().decode(errors='replace')
            except OSError:
                text = ''
            if VOLUME_INIT_FAILED in text:
                raise ServiceError('cinder-volume: driver initialisation '
                                   f'failed\n{self.log_tail("cinder-volume")}')
            if VOLUME_READY in text:
                break
            if time.monotonic() > deadline:
                raise ServiceError('cinder-volume not ready within '
                                   f'{timeout:.0f}s\n'
                                   f'{self.log_tail("cinder-volume")}')
            time.sleep(0.3)
        return time.monotonic() - proc.started_at

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if not proc.alive():
            code = proc.popen.returncode if proc.popen else None
            raise ServiceError(f'{name} exited ({code})\n'
                               f'{self.log_tail(name)}')

    def log_tail(self, name: str, lines: int = 40, debug: bool = True) -> str:
        """The end of a service's log (and of its stdout if it died)."""
        paths = [self.logs / f'{name}.log']
        proc = self.procs.get(name)
        if proc is None or not proc.alive():
            paths.append(self.logs / f'{name}.out')
        out = []
        for p in paths:
            if p.exists() and p.stat().st_size:
                what = '' if debug else ' (without DEBUG lines)'
                out.append(f'--- tail of {p}{what}\n{tail(p, lines, debug)}')
        return '\n'.join(out) or f'(no log for {name})'

    def start(self) -> None:
        """Cold start of everything; returns when cinder-volume is ready."""
        t0 = time.monotonic()
        self.write_files()
        self.start_rabbit()
        self.db_sync()               # overlaps with RabbitMQ's boot
        self.wait_rabbit()
        self.start_cinder('cinder-api')
        self.start_cinder('cinder-scheduler')
        self.start_cinder('cinder-volume')
        self.wait_api()
        self.timings['cinder-volume ready'] = self.wait_volume()
        self.timings['stack up'] = time.monotonic() - t0

    def restart_volume(self, between=None) -> float:
        """Stop cinder-volume, run ``between()``, start it, wait for init."""
        t0 = time.monotonic()
        self.procs['cinder-volume'].stop()
        if between:
            between()
        offset = self.log_offset('cinder-volume')
        self.start_cinder('cinder-volume')
        self.wait_volume(offset)
        return time.monotonic() - t0

    def stop(self) -> None:
        order = ['cinder-volume', 'cinder-scheduler', 'cinder-api',
                 'rabbitmq', 'epmd']
        for name in order:
            proc = self.procs.get(name)
            if proc is not None:
                try:
                    proc.stop()
                except Exception as exc:  # keep stopping the others
                    print(f'e2e: stopping {name} (pid {proc.pid}): {exc}',
                          file=sys.stderr, flush=True)
