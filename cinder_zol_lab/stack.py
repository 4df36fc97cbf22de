"""The harnesses' Cinder stack, all on 127.0.0.1.

``CinderStack`` (e2e): a private RabbitMQ node, cinder-api with
``auth_strategy = noauth``, cinder-scheduler and cinder-volume with one
backend per lab guest (the guest through the real driver, or Cinder's
fake driver when there is no guest), MariaDB. ``KeystoneStack`` (tempest) adds
keystone, and registers the services in keystone's catalog. With
``glance=True`` either also runs glance-api (``GlanceService``) with a file
store, noauth or keystone like its stack.

Everything lives in one state directory: configuration files, databases,
lock and state paths, the RabbitMQ node and one log per service. Every
process is started here in its own session (process group) and stopped
here by that group's id, never by name. api-paste.ini,
resource_filters.json (which the cinder wheel does not ship) and
keystone's WSGI module are in ``stack-files/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time

import requests

from . import backend
from . import services
from . import venvs
from .services import Proc
from .services import ServiceError
from .shell import GuestShell

FILES = Path(__file__).resolve().parent / 'stack-files'
BACKEND = backend.NAME       # backend section name (and volume_backend_name)
VOLUME_READY = 'Driver post RPC initialization completed successfully.'
VOLUME_INIT_FAILED = 'Error encountered during initialization of driver'
FAKE_DRIVER = 'cinder.tests.fake_driver.FakeLoggingVolumeDriver'
CINDER = ('cinder-api', 'cinder-scheduler', 'cinder-volume')
MiB = 2 ** 20

# keystone flavour
REGION = 'RegionOne'
ADMIN_PASSWORD = 'tempest-admin'
SERVICE_PASSWORD = 'tempest-service'
DB_PASSWORD = 'tempest-db'


def answers(url: str) -> bool:
    """The URL answers 200 or 300 (version documents, health checks)."""
    try:
        return requests.get(url, timeout=5).status_code in (200, 300)
    except requests.RequestException:
        return False


class GlanceService:
    """glance-api 33 under gunicorn, a file store, one config directory.

    Without ``authtoken`` (the lines of a [keystone_authtoken] section) it
    runs glance's unauthenticated pipeline, which needs the deprecated
    allow-all policy rules: the unauthenticated context has no roles.
    """

    def __init__(self, state: Path, db_url: str,
                 authtoken: list[str] | None = None, log=print):
        self.dir = state / 'glance'
        self.db_url = db_url
        self.authtoken = authtoken
        self.venv = venvs.glance(log)
        self.port = services.free_port(9292)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def conf(self) -> str:
        store = self.dir / 'images'
        lines = [
            '[DEFAULT]',
            'enabled_backends = fs:file',
            'show_image_direct_url = True',
            f'image_cache_dir = {self.dir}/cache',
            '[database]',
            f'connection = {self.db_url}',
            '[glance_store]',
            'default_backend = fs',
            '[fs]',
            f'filesystem_store_datadir = {store}',
            '[os_glance_staging_store]',
            f'filesystem_store_datadir = {self.dir}/staging',
            '[os_glance_tasks_store]',
            f'filesystem_store_datadir = {self.dir}/tasks',
            '[oslo_concurrency]',
            f'lock_path = {self.dir}/lock',
        ]
        if self.authtoken:
            lines += ['[paste_deploy]', 'flavor = keystone', *self.authtoken]
        else:
            # no flavor: the unauthenticated-context pipeline
            lines += ['[oslo_policy]', 'enforce_new_defaults = False']
        return '\n'.join(lines) + '\n'

    def write_files(self) -> None:
        for sub in ('images', 'staging', 'tasks', 'lock', 'cache'):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / 'glance-api.conf').write_text(self.conf())
        shutil.copy(self.venv / 'etc' / 'glance' / 'glance-api-paste.ini',
                    self.dir / 'glance-api-paste.ini')

    def db_sync_argv(self) -> list[str]:
        return [str(self.venv / 'bin' / 'glance-manage'), '--config-file',
                str(self.dir / 'glance-api.conf'), 'db_sync']

    def argv(self) -> list[str]:
        return [str(self.venv / 'bin' / 'gunicorn'), '--no-control-socket',
                '--bind', f'127.0.0.1:{self.port}', '--workers', '1',
                '--threads', '4', '--timeout', '120',
                'glance.wsgi.api:application']

    def env(self) -> dict:
        return dict(os.environ, OS_GLANCE_CONFIG_DIR=str(self.dir))


def glance_smoke(url: str, headers: dict, size: int = MiB) -> float:
    """Create, upload, download and delete a raw image; return seconds.

    Raises ServiceError when a step fails or the data comes back changed.
    """
    t0 = time.monotonic()
    s = requests.Session()
    s.headers.update(headers)
    data = os.urandom(size)

    def call(method, path, ok, **kw):
        r = s.request(method, f'{url}/v2{path}', timeout=60, **kw)
        if r.status_code not in ok:
            raise ServiceError(f'glance {method} {path}: {r.status_code} '
                               f'{r.text[:300]}')
        return r

    image = call('POST', '/images', (201,), json={
        'name': 'cinder-zol-smoke', 'disk_format': 'raw',
        'container_format': 'bare'}).json()
    path = f'/images/{image["id"]}'
    try:
        call('PUT', path + '/file', (204,), data=data,
             headers={'Content-Type': 'application/octet-stream'})
        shown = call('GET', path, (200,)).json()
        if shown['status'] != 'active' or shown['size'] != size:
            raise ServiceError(f'glance image after upload: {shown}')
        back = call('GET', path + '/file', (200,)).content
        if hashlib.sha512(back).digest() != hashlib.sha512(data).digest():
            raise ServiceError(f'glance returned {len(back)} other bytes')
    finally:
        call('DELETE', path, (204,))
    call('GET', path, (404,))
    return time.monotonic() - t0


class CinderStack:
    """MariaDB + RabbitMQ + cinder-api (noauth) + scheduler + volume.

    ``shell`` is the lab guest behind the one backend (None: Cinder's fake
    driver, no guest). ``host`` is cinder's [DEFAULT] host, which survives
    cinder-volume restarts.
    """

    auth = 'noauth'
    # [database] options beside connection: room for concurrent requests
    pool_options = ('max_pool_size = 10', 'max_overflow = 20')

    def __init__(self, state: Path, shell: GuestShell | None, *,
                 host: str = 'e2e', glance: bool = False,
                 api_workers: int = 1, log=print,
                 more_shells: tuple[GuestShell, ...] = ()):
        self.state = state
        self.shell = shell
        # further storage hosts, one backend each (backend_names())
        self.more_shells = tuple(more_shells)
        self.host = host
        self.api_workers = api_workers
        self.log = log
        self.bindir = Path(sys.executable).parent
        self.logs = state / 'logs'
        self.conf = state / 'cinder.conf'
        self.amqp_port = services.free_port()
        self.api_port = services.free_port(8776)
        self.procs: dict[str, Proc] = {}
        self.timings: dict[str, float] = {}
        # extra environment of cinder-volume (restart_volume(env=...)), e.g.
        # OS_CINDER_DISABLE_EVENTLET_PATCHING=1 for native threads
        self.volume_env: dict[str, str] = {}
        # extra cinder.conf lines ([DEFAULT], the backend's section), e.g.
        # Cinder's image volume cache; write_files() and a restart apply
        self.extra_conf: dict[str, list[str]] = {'DEFAULT': [], BACKEND: []}
        self.db_dir = state / 'mysql'
        self.db_sock = state / 'mysqld.sock'
        self.glance = (GlanceService(state, self.db_url('glance'),
                                     self.authtoken('glance'), log)
                       if glance else None)

    @property
    def endpoint(self) -> str:
        return f'http://127.0.0.1:{self.api_port}/v3'

    def backend_names(self) -> list[str]:
        """Section and volume_backend_name of each storage host's backend."""
        return [BACKEND] + [f'{BACKEND}{k}'
                            for k in range(2, len(self.more_shells) + 2)]

    # -- what differs with keystone ---------------------------------------

    def db_url(self, name: str) -> str:
        # MariaDB, not sqlite: Cinder's quota reservations read, then
        # write, and under concurrent requests sqlite fails them at once
        # with "database is locked" (HTTP 500 from cinder-api)
        return (f'mysql+pymysql://{name}:{DB_PASSWORD}@localhost/{name}'
                f'?unix_socket={self.db_sock}&charset=utf8')

    def databases(self) -> tuple[str, ...]:
        return ('cinder',) + (('glance',) if self.glance else ())

    def authtoken(self, user: str) -> list[str] | None:
        """[keystone_authtoken] lines for a service user (None: noauth)."""
        return None

    def auth_headers(self) -> dict:
        """Headers that make a request admin's."""
        return {'X-Auth-Token': 'admin:admin'}

    # -- MariaDB ---------------------------------------------------------

    def start_databases(self) -> None:
        """A private MariaDB: own datadir, unix socket only, no fsyncs."""
        if not shutil.which('mariadbd', path='/usr/sbin:/usr/bin'):
            raise ServiceError('mariadbd missing: apt-get install '
                               'mariadb-server')
        (self.state / 'mysql-tmp').mkdir(parents=True, exist_ok=True)
        self.run_once('mariadb-install-db', [
            'mariadb-install-db', '--no-defaults', f'--datadir={self.db_dir}',
            '--user=root', '--auth-root-authentication-method=socket',
            '--skip-test-db'], log='mariadb')
        self.procs['mariadb'] = Proc('mariadb', [
            '/usr/sbin/mariadbd', '--no-defaults', f'--datadir={self.db_dir}',
            f'--socket={self.db_sock}', f'--pid-file={self.state}/mysqld.pid',
            f'--tmpdir={self.state}/mysql-tmp', '--skip-networking',
            '--user=root', '--skip-log-bin', '--innodb-doublewrite=0',
            '--innodb-flush-log-at-trx-commit=0', '--sync-binlog=0',
            '--innodb-buffer-pool-size=256M', '--max-connections=1000',
            '--character-set-server=utf8mb4',
            '--collation-server=utf8mb4_general_ci',
        ], self.logs / 'mariadb.log').start()
        mariadb = ['--no-defaults', f'--socket={self.db_sock}', '-u', 'root']

        def pings():
            return self.db_sock.exists() and subprocess.run(
                ['mariadb-admin', *mariadb, 'ping'],
                capture_output=True).returncode == 0
        services.wait_until(pings, 60, what='MariaDB',
                            alive=lambda: self.check_alive('mariadb'))
        stmts = []
        for name in self.databases():
            stmts += [f'CREATE DATABASE {name} CHARACTER SET utf8mb4;',
                      f"CREATE USER '{name}'@'localhost' IDENTIFIED BY "
                      f"'{DB_PASSWORD}';",
                      f"GRANT ALL ON {name}.* TO '{name}'@'localhost';"]
        self.run_once('mariadb', ['mariadb', *mariadb, '-e', ' '.join(stmts)],
                      log='mariadb-client')
        self.timings['mariadb up'] = (time.monotonic()
                                      - self.procs['mariadb'].started_at)
        self.log(f'stack: MariaDB up ({self.timings["mariadb up"]:.1f}s)')

    def sql(self, database: str, query: str) -> list[tuple[str, ...]]:
        """Rows of a query on one of the stack's databases (as text)."""
        out = subprocess.run(
            ['mariadb', '--no-defaults', f'--socket={self.db_sock}', '-u',
             'root', '-N', '-B', database, '-e', query],
            capture_output=True, text=True, check=True).stdout
        return [tuple(line.split('\t')) for line in out.splitlines()]

    def start_identity(self) -> None:
        pass

    # -- files -----------------------------------------------------------

    def cinder_conf(self) -> str:
        default = [
            f'host = {self.host}',
            'my_ip = 127.0.0.1',
            f'state_path = {self.state}',
            f'auth_strategy = {self.auth}',
            f'transport_url = rabbit://guest:guest@127.0.0.1:'
            f'{self.amqp_port}/',
            f'api_paste_config = {self.state}/api-paste.ini',
            f'resource_query_filters_file = '
            f'{self.state}/resource_filters.json',
            'osapi_volume_listen = 127.0.0.1',
            f'osapi_volume_listen_port = {self.api_port}',
            f'osapi_volume_workers = {self.api_workers}',
            f'enabled_backends = {",".join(self.backend_names())}',
            'debug = True',
            f'image_conversion_dir = {self.state}/conversion',
            # upload-to-image of an attached volume (--force): the driver
            # reads a temporary clone
            'enable_force_upload = True',
        ]
        if self.glance and self.auth == 'noauth':
            # with keystone, cinder finds glance in the token's catalog
            default.append(f'glance_api_servers = {self.glance.url}')
        default += self.extra_conf['DEFAULT']
        database = [f'connection = {self.db_url("cinder")}',
                    *self.pool_options]
        lines = ['[DEFAULT]', *default, '', '[database]', *database, '',
                 *(self.authtoken('cinder') or []), '',
                 '[oslo_concurrency]', f'lock_path = {self.state}/lock', '',
                 # image_utils runs qemu-img info through privsep: the
                 # helper is in this venv, not on root's PATH via sudo
                 '[cinder_sys_admin]',
                 f'helper_command = {self.bindir}/privsep-helper '
                 f'--config-file {self.conf}', '',
                 '[coordination]',
                 f'backend_url = file://{self.state}/coordination', '',
                 f'[{BACKEND}]']
        if self.shell is None:
            lines += [f'volume_driver = {FAKE_DRIVER}',
                      f'volume_backend_name = {BACKEND}']
        else:
            lines.append('volume_driver = cinder_zol.ZFSonLinuxISCSIDriver')
            lines += [f'{k} = {v}'
                      for k, v in backend.settings(self.shell).items()]
        lines += self.extra_conf[BACKEND]
        for name, shell in zip(self.backend_names()[1:], self.more_shells):
            settings = dict(backend.settings(shell), volume_backend_name=name)
            lines += ['', f'[{name}]',
                      'volume_driver = cinder_zol.ZFSonLinuxISCSIDriver',
                      *(f'{k} = {v}' for k, v in settings.items())]
        return '\n'.join(lines) + '\n'

    def write_files(self) -> None:
        for sub in ('logs', 'lock', 'coordination', 'conversion'):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        for name in ('api-paste.ini', 'resource_filters.json'):
            shutil.copy(FILES / name, self.state / name)
        self.conf.write_text(self.cinder_conf())

    # -- processes -------------------------------------------------------

    def run_once(self, name: str, argv: list[str], log: str | None = None,
                 env=None, timeout: float = 300) -> None:
        """A one-shot command; raise with its log if it fails."""
        Proc(name, argv, self.logs / f'{log or name}.log', env).start(
            ).finish(timeout)

    def check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if not proc.alive():
            code = proc.popen.returncode if proc.popen else None
            raise ServiceError(f'{name} exited ({code})\n'
                               f'{self.log_tail(name)}')

    def wait_http(self, name: str, url: str, timeout: float = 120) -> None:
        t0 = self.procs[name].started_at
        try:
            services.wait_until(lambda: answers(url), timeout,
                                what=f'{name} to answer {url}',
                                alive=lambda: self.check_alive(name))
        except services.WaitTimeout as exc:
            raise ServiceError(f'{exc}\n{self.log_tail(name)}') from None
        self.timings[f'{name} answering'] = time.monotonic() - t0

    def log_offset(self, name: str) -> int:
        try:
            return (self.logs / f'{name}.log').stat().st_size
        except OSError:
            return 0

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
                out.append(f'--- tail of {p}{what}\n'
                           f'{services.tail(p, lines, debug)}')
        return '\n'.join(out) or f'(no log for {name})'

    # -- RabbitMQ ------------------------------------------------------

    def start_rabbit(self) -> None:
        """A private node: own epmd, own ports, own mnesia, loopback only."""
        self.procs['epmd'], self.procs['rabbitmq'] = services.start_rabbit(
            self.state / 'rabbit', self.logs, self.amqp_port, self.host)

    def wait_rabbit(self, timeout: float = 90) -> None:
        t0 = self.procs['rabbitmq'].started_at
        services.wait_rabbit(self.amqp_port,
                             lambda: self.check_alive('rabbitmq'), timeout)
        self.timings['rabbitmq up'] = time.monotonic() - t0

    # -- Cinder and glance ---------------------------------------------

    def cinder_argv(self, prog: str, *extra: str) -> list[str]:
        return [str(self.bindir / prog), '--config-file', str(self.conf),
                *extra]

    def start_cinder(self, name: str) -> Proc:
        env = None
        if name == 'cinder-volume' and self.volume_env:
            env = dict(os.environ, **self.volume_env)
        proc = Proc(name, self.cinder_argv(
            name, '--log-file', str(self.logs / f'{name}.log')),
            self.logs / f'{name}.out', env)
        self.procs[name] = proc.start()
        return proc

    def wait_api(self, timeout: float = 120) -> None:
        self.wait_http('cinder-api', f'http://127.0.0.1:{self.api_port}/',
                       timeout)

    def wait_volume(self, offset: int = 0, timeout: float = 240) -> float:
        """Wait for each backend's driver init (log lines after ``offset``).

        Returns the seconds since cinder-volume started.
        """
        log = self.logs / 'cinder-volume.log'

        def initialised():
            try:
                with open(log, 'rb') as f:
                    f.seek(offset)
                    text = f.read().decode(errors='replace')
            except OSError:
                return False
            if VOLUME_INIT_FAILED in text:
                raise ServiceError('cinder-volume: driver initialisation '
                                   f'failed\n{self.log_tail("cinder-volume")}')
            return text.count(VOLUME_READY) >= len(self.backend_names())
        try:
            services.wait_until(
                initialised, timeout, what='cinder-volume driver init',
                alive=lambda: self.check_alive('cinder-volume'))
        except services.WaitTimeout as exc:
            raise ServiceError(f'{exc}\n{self.log_tail("cinder-volume")}'
                               ) from None
        return time.monotonic() - self.procs['cinder-volume'].started_at

    def restart_volume(self, between=None, env=None) -> float:
        """Stop cinder-volume, run ``between()``, start it, wait for init.

        Returns the seconds all that took. After kill_volume() the stop is
        a no-op: that is a restart after a crash. ``env`` replaces
        ``volume_env`` (extra environment) from this start on.
        """
        t0 = time.monotonic()
        if env is not None:
            self.volume_env = dict(env)
        self.procs['cinder-volume'].stop()
        if between:
            between()
        offset = self.log_offset('cinder-volume')
        self.start_cinder('cinder-volume')
        self.wait_volume(offset)
        return time.monotonic() - t0

    def kill_volume(self) -> None:
        """SIGKILL cinder-volume's process group: a crash, no cleanup."""
        self.procs['cinder-volume'].kill()

    def smoke_glance(self) -> float:
        """An image round trip through glance's API, as admin."""
        return glance_smoke(self.glance.url, self.auth_headers())

    # -- the whole stack ------------------------------------------------

    def start(self) -> None:
        """Cold start of everything; returns when cinder-volume is ready."""
        t0 = time.monotonic()
        self.write_files()
        self.start_rabbit()          # boots while the databases set up
        self.start_databases()
        syncs = [Proc('cinder-manage',
                      self.cinder_argv('cinder-manage', 'db', 'sync'),
                      self.logs / 'cinder-manage.log').start()]
        if self.glance:
            self.glance.write_files()
            syncs.append(Proc('glance-manage', self.glance.db_sync_argv(),
                              self.logs / 'glance-manage.log').start())
        self.start_identity()        # while the db syncs run
        for sync in syncs:
            sync.finish()
        self.timings['db sync'] = time.monotonic() - syncs[0].started_at
        if self.glance:
            self.procs['glance'] = Proc(
                'glance', self.glance.argv(), self.logs / 'glance.log',
                self.glance.env()).start()
        self.wait_rabbit()
        for name in CINDER:
            self.start_cinder(name)
        if self.glance:
            self.wait_http('glance', f'{self.glance.url}/healthcheck')
        self.wait_api()
        self.timings['cinder-volume ready'] = self.wait_volume()
        self.timings['stack up'] = time.monotonic() - t0

    def stop(self) -> None:
        """Stop every process we started, the last started first."""
        for name, proc in reversed(list(self.procs.items())):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                print(f'stack: stopping {name} (pid {proc.pid}): {exc}',
                      file=sys.stderr, flush=True)

    def dump_timings(self) -> str:
        return json.dumps({k: round(v, 1) for k, v in self.timings.items()})


class KeystoneStack(CinderStack):
    """CinderStack with MariaDB and keystone, services in the catalog.

    cinder-api uses ``auth_strategy = keystone``; glance (with
    ``glance=True``) the keystone pipeline, as user ``glance``.
    """

    auth = 'keystone'

    def __init__(self, state: Path, shell: GuestShell | None,
                 keystone_venv: Path, *, host: str = 'tempest',
                 glance: bool = False, api_workers: int = 2, log=print,
                 more_shells: tuple[GuestShell, ...] = ()):
        self.keystone_venv = keystone_venv
        self.ks_dir = state / 'keystone'
        self.ks_conf = self.ks_dir / 'keystone.conf'
        self.ks_port = services.free_port(5000)
        self.admin_project_id: str | None = None
        super().__init__(state, shell, host=host, glance=glance,
                         api_workers=api_workers, log=log,
                         more_shells=more_shells)

    @property
    def keystone_url(self) -> str:
        return f'http://127.0.0.1:{self.ks_port}'

    def databases(self) -> tuple[str, ...]:
        return ('keystone',) + super().databases()

    def authtoken(self, user: str) -> list[str]:
        return ['[keystone_authtoken]',
                f'www_authenticate_uri = {self.keystone_url}/v3',
                f'auth_url = {self.keystone_url}',
                'auth_type = password',
                f'username = {user}',
                f'password = {SERVICE_PASSWORD}',
                'project_name = service',
                'user_domain_name = Default',
                'project_domain_name = Default',
                f'region_name = {REGION}']

    def token(self, user: str = 'admin', password: str = ADMIN_PASSWORD,
              project: str = 'admin') -> tuple[str, dict]:
        body = {'auth': {
            'identity': {'methods': ['password'], 'password': {'user': {
                'name': user, 'domain': {'id': 'default'},
                'password': password}}},
            'scope': {'project': {'name': project,
                                  'domain': {'id': 'default'}}}}}
        r = requests.post(f'{self.keystone_url}/v3/auth/tokens', json=body,
                          timeout=30)
        r.raise_for_status()
        return r.headers['X-Subject-Token'], r.json()['token']

    def auth_headers(self) -> dict:
        return {'X-Auth-Token': self.token()[0]}

    # -- keystone ----------------------------------------------------

    def keystone_conf(self) -> str:
        return '\n'.join([
            '[DEFAULT]',
            'debug = False',
            '[database]',
            f'connection = {self.db_url("keystone")}',
            '[token]',
            'provider = fernet',
            'expiration = 14400',
            '[fernet_tokens]',
            f'key_repository = {self.ks_dir}/fernet-keys',
            '[fernet_receipts]',
            f'key_repository = {self.ks_dir}/fernet-keys',
            '[credential]',
            f'key_repository = {self.ks_dir}/credential-keys',
            '[cache]',
            'enabled = false',
            '',
        ])

    def keystone_manage(self, *args: str) -> None:
        self.run_once(f'keystone-manage {args[0]}', [
            str(self.keystone_venv / 'bin' / 'keystone-manage'),
            '--config-file', str(self.ks_conf), *args],
            log='keystone-manage')

    def start_identity(self) -> None:
        """Set keystone up, serve it, register cinder (and glance)."""
        t0 = time.monotonic()
        self.ks_dir.mkdir(parents=True, exist_ok=True)
        self.ks_conf.write_text(self.keystone_conf())
        self.keystone_manage('db_sync')
        for repo in ('fernet_setup', 'credential_setup'):
            self.keystone_manage(repo, '--keystone-user', 'root',
                                 '--keystone-group', 'root')
        url = f'{self.keystone_url}/v3/'
        self.keystone_manage(
            'bootstrap', '--bootstrap-password', ADMIN_PASSWORD,
            '--bootstrap-username', 'admin',
            '--bootstrap-project-name', 'admin',
            '--bootstrap-role-name', 'admin',
            '--bootstrap-service-name', 'keystone',
            '--bootstrap-region-id', REGION,
            '--bootstrap-admin-url', url, '--bootstrap-public-url', url,
            '--bootstrap-internal-url', url)
        self.timings['keystone setup'] = time.monotonic() - t0
        # gunicorn's argv would reach keystone's option parser: the app is
        # loaded from stack-files/keystone_wsgi.py, which clears sys.argv.
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=str(self.ks_conf))
        self.procs['keystone'] = Proc('keystone', [
            str(self.keystone_venv / 'bin' / 'gunicorn'),
            '--no-control-socket', '--bind', f'127.0.0.1:{self.ks_port}',
            '--workers', '2', '--threads', '4', '--timeout', '120',
            '--chdir', str(FILES), 'keystone_wsgi:application',
        ], self.logs / 'keystone.log', env).start()
        self.wait_http('keystone', f'{self.keystone_url}/v3', 90)
        self.register()
        self.log(f'stack: keystone up, services registered '
                 f'({time.monotonic() - t0:.1f}s)')

    def register(self) -> None:
        """service project; cinder (and glance) users, services, endpoints."""
        token, body = self.token()
        self.admin_project_id = body['project']['id']
        s = requests.Session()
        s.headers['X-Auth-Token'] = token
        base = f'{self.keystone_url}/v3'

        def call(method, path, key=None, obj=None):
            r = s.request(method, f'{base}/{path}', timeout=30,
                          json={key: obj} if key else None)
            if r.status_code >= 300:
                raise ServiceError(f'keystone {method} {path}: '
                                   f'{r.status_code} {r.text}')
            return r.json()[key] if key else None

        roles = {r['name']: r['id'] for r in
                 s.get(f'{base}/roles', timeout=30).json()['roles']}
        if 'service' not in roles:
            roles['service'] = call('POST', 'roles', 'role',
                                    {'name': 'service'})['id']
        project = call('POST', 'projects', 'project',
                       {'name': 'service', 'domain_id': 'default'})
        catalog = [('cinder', 'block-storage', 'cinder', self.endpoint),
                   ('cinder', 'volumev3', 'cinderv3', self.endpoint)]
        if self.glance:
            catalog.append(('glance', 'image', 'glance', self.glance.url))
        for user_name in dict.fromkeys(c[0] for c in catalog):
            user = call('POST', 'users', 'user', {
                'name': user_name, 'password': SERVICE_PASSWORD,
                'domain_id': 'default', 'default_project_id': project['id']})
            for role in ('admin', 'service'):
                call('PUT', f'projects/{project["id"]}/users/{user["id"]}'
                            f'/roles/{roles[role]}')
        for _, stype, name, url in catalog:
            svc = call('POST', 'services', 'service',
                       {'type': stype, 'name': name})
            for iface in ('public', 'internal', 'admin'):
                call('POST', 'endpoints', 'endpoint', {
                    'service_id': svc['id'], 'interface': iface,
                    'region_id': REGION, 'url': url})

    def wait_scheduler_pool(self, timeout: float = 120) -> list:
        """Pools the scheduler knows (with capabilities), once non-empty."""
        t0 = time.monotonic()
        last = {}

        def pools():
            r = requests.get(
                f'{self.endpoint}/{self.admin_project_id}/scheduler-stats/'
                'get_pools?detail=True', headers=self.auth_headers(),
                timeout=30)
            last['answer'] = f'{r.status_code} {r.text[:300]}'
            return r.status_code == 200 and r.json().get('pools')
        found = services.wait_until(
            pools, timeout, interval=1,
            what=lambda: f'a pool in the scheduler (last: {last["answer"]})')
        self.timings['scheduler has the pool'] = time.monotonic() - t0
        return found
