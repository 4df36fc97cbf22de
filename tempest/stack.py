"""MariaDB, RabbitMQ, keystone and the Cinder services, all on 127.0.0.1.

Everything lives in one state directory: config files, the MariaDB data
directory and socket, the RabbitMQ node, keystone's key repositories and
one log per service. Every process is started here in its own session
(process group) and stopped here by that group's id, never by name.

The process handling and the private RabbitMQ node are shared with the
e2e harness (cinder_zol_lab/services.py); keystone and MariaDB are what
tempest needs on top of them.
"""

from __future__ import annotations

import json
import os
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
HOST = 'tempest'             # [DEFAULT] host of the cinder services
REGION = 'RegionOne'
ADMIN_PASSWORD = 'tempest-admin'
SERVICE_PASSWORD = 'tempest-service'
DB_PASSWORD = 'tempest-db'
VOLUME_READY = 'Driver post RPC initialization completed successfully.'
VOLUME_INIT_FAILED = 'Error encountered during initialization of driver'

FAKE_DRIVER = 'cinder.tests.fake_driver.FakeLoggingVolumeDriver'


ServiceError = services.ServiceError
Proc = services.Proc
free_port = services.free_port
tail = services.tail


def run_logged(argv: list[str], log: Path, what: str, env=None,
               timeout: float = 300) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'ab') as out:
        out.write(f'\n$ {" ".join(argv)}\n'.encode())
        out.flush()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, env=env,
                           timeout=timeout)
    if r.returncode:
        raise ServiceError(f'{what} exited {r.returncode}\n{tail(log)}')


class Stack:
    """MariaDB + RabbitMQ + keystone + cinder-api/scheduler/volume."""

    def __init__(self, state: Path, lab_env: dict, keystone_venv: Path,
                 fake_backend: bool = False, api_workers: int = 2):
        self.state = state
        self.lab_env = lab_env
        self.keystone_venv = keystone_venv
        self.fake_backend = fake_backend
        self.api_workers = api_workers
        self.bindir = Path(sys.executable).parent
        self.logs = state / 'logs'
        self.conf = state / 'cinder.conf'
        self.ks_dir = state / 'keystone'
        self.ks_conf = self.ks_dir / 'keystone.conf'
        self.db_dir = state / 'mysql'
        self.db_sock = state / 'mysqld.sock'
        self.amqp_port = free_port()
        self.ks_port = free_port(5000)
        self.api_port = free_port(8776)
        self.procs: dict[str, Proc] = {}
        self.timings: dict[str, float] = {}
        self.admin_project_id: str | None = None

    # -- URLs ------------------------------------------------------------

    @property
    def keystone_url(self) -> str:
        return f'http://127.0.0.1:{self.ks_port}'

    @property
    def cinder_url(self) -> str:
        return f'http://127.0.0.1:{self.api_port}/v3'

    def db_url(self, name: str) -> str:
        return (f'mysql+pymysql://{name}:{DB_PASSWORD}@localhost/{name}'
                f'?unix_socket={self.db_sock}&charset=utf8')

    # -- MariaDB ---------------------------------------------------------

    def start_mariadb(self) -> None:
        """A private server: own datadir, unix socket only, no fsyncs."""
        if not shutil.which('mariadbd', path='/usr/sbin:/usr/bin'):
            raise ServiceError('mariadbd missing: apt-get install '
                               'mariadb-server')
        log = self.logs / 'mariadb.log'
        (self.state / 'mysql-tmp').mkdir(parents=True, exist_ok=True)
        run_logged(['mariadb-install-db', '--no-defaults',
                    f'--datadir={self.db_dir}', '--user=root',
                    '--auth-root-authentication-method=socket',
                    '--skip-test-db'], log, 'mariadb-install-db')
        self.procs['mariadb'] = Proc('mariadb', [
            '/usr/sbin/mariadbd', '--no-defaults', f'--datadir={self.db_dir}',
            f'--socket={self.db_sock}', f'--pid-file={self.state}/mysqld.pid',
            f'--tmpdir={self.state}/mysql-tmp', '--skip-networking',
            '--user=root', '--skip-log-bin', '--innodb-doublewrite=0',
            '--innodb-flush-log-at-trx-commit=0', '--sync-binlog=0',
            '--innodb-buffer-pool-size=256M', '--max-connections=1000',
            '--character-set-server=utf8mb4',
            '--collation-server=utf8mb4_general_ci',
        ], log).start()

    def sql(self, statements: str) -> None:
        run_logged(['mariadb', '--no-defaults', f'--socket={self.db_sock}',
                    '-u', 'root', '-e', statements],
                   self.logs / 'mariadb-client.log', 'mariadb client')

    def wait_mariadb(self, timeout: float = 60) -> None:
        t0 = self.procs['mariadb'].started_at
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive('mariadb')
            if self.db_sock.exists():
                r = subprocess.run(
                    ['mariadb-admin', '--no-defaults',
                     f'--socket={self.db_sock}', '-u', 'root', 'ping'],
                    capture_output=True)
                if r.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise ServiceError(f'MariaDB not up within {timeout:.0f}s\n'
                                   f'{self.log_tail("mariadb")}')
            time.sleep(0.3)
        stmts = []
        for name in ('keystone', 'cinder'):
            stmts += [f'CREATE DATABASE {name} CHARACTER SET utf8mb4;',
                      f"CREATE USER '{name}'@'localhost' IDENTIFIED BY "
                      f"'{DB_PASSWORD}';",
                      f"GRANT ALL ON {name}.* TO '{name}'@'localhost';"]
        self.sql(' '.join(stmts))
        self.timings['mariadb up'] = time.monotonic() - t0

    # -- RabbitMQ ----------------------------------------------------

    def start_rabbit(self) -> None:
        """A private node: own epmd, own ports, own mnesia, loopback only."""
        self.procs['epmd'], self.procs['rabbitmq'] = services.start_rabbit(
            self.state / 'rabbit', self.logs, self.amqp_port, 'tempest')

    def wait_rabbit(self, timeout: float = 90) -> None:
        t0 = self.procs['rabbitmq'].started_at
        services.wait_rabbit(self.amqp_port,
                             lambda: self._check_alive('rabbitmq'), timeout)
        self.timings['rabbitmq up'] = time.monotonic() - t0

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

    def _keystone_manage(self, *args: str) -> None:
        run_logged([str(self.keystone_venv / 'bin' / 'keystone-manage'),
                    '--config-file', str(self.ks_conf), *args],
                   self.logs / 'keystone-manage.log',
                   f'keystone-manage {args[0]}')

    def setup_keystone(self) -> None:
        t0 = time.monotonic()
        self.ks_dir.mkdir(parents=True, exist_ok=True)
        self.ks_conf.write_text(self.keystone_conf())
        self._keystone_manage('db_sync')
        self._keystone_manage('fernet_setup', '--keystone-user', 'root',
                              '--keystone-group', 'root')
        self._keystone_manage('credential_setup', '--keystone-user', 'root',
                              '--keystone-group', 'root')
        url = f'{self.keystone_url}/v3/'
        self._keystone_manage(
            'bootstrap', '--bootstrap-password', ADMIN_PASSWORD,
            '--bootstrap-username', 'admin',
            '--bootstrap-project-name', 'admin',
            '--bootstrap-role-name', 'admin',
            '--bootstrap-service-name', 'keystone',
            '--bootstrap-region-id', REGION,
            '--bootstrap-admin-url', url, '--bootstrap-public-url', url,
            '--bootstrap-internal-url', url)
        self.timings['keystone setup'] = time.monotonic() - t0

    def start_keystone(self) -> None:
        # gunicorn's argv would reach keystone's option parser: the app is
        # loaded from tempest/keystone_wsgi.py, which clears sys.argv first.
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=str(self.ks_conf))
        self.procs['keystone'] = Proc('keystone', [
            str(self.keystone_venv / 'bin' / 'gunicorn'),
            '--no-control-socket', '--bind', f'127.0.0.1:{self.ks_port}',
            '--workers', '2', '--threads', '4', '--timeout', '120',
            '--chdir', str(HERE), 'keystone_wsgi:application',
        ], self.logs / 'keystone.log', env).start()

    def wait_keystone(self, timeout: float = 90) -> None:
        t0 = self.procs['keystone'].started_at
        self._wait_http('keystone', f'{self.keystone_url}/v3', timeout)
        self.timings['keystone answering'] = time.monotonic() - t0

    def _token(self, user: str, password: str, project: str) -> tuple:
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

    def register_cinder(self) -> None:
        """service project, cinder user, volumev3 + block-storage."""
        token, body = self._token('admin', ADMIN_PASSWORD, 'admin')
        self.admin_project_id = body['project']['id']
        s = requests.Session()
        s.headers['X-Auth-Token'] = token
        base = f'{self.keystone_url}/v3'

        def post(path, key, obj):
            r = s.post(f'{base}/{path}', json={key: obj}, timeout=30)
            if r.status_code >= 300:
                raise ServiceError(f'keystone POST {path}: {r.status_code} '
                                   f'{r.text}')
            return r.json()[key]

        roles = {r['name']: r['id'] for r in
                 s.get(f'{base}/roles', timeout=30).json()['roles']}
        if 'service' not in roles:
            roles['service'] = post('roles', 'role', {'name': 'service'})['id']
        project = post('projects', 'project',
                       {'name': 'service', 'domain_id': 'default'})
        user = post('users', 'user',
                    {'name': 'cinder', 'password': SERVICE_PASSWORD,
                     'domain_id': 'default',
                     'default_project_id': project['id']})
        for role in ('admin', 'service'):
            r = s.put(f'{base}/projects/{project["id"]}/users/{user["id"]}'
                      f'/roles/{roles[role]}', timeout=30)
            if r.status_code >= 300:
                raise ServiceError(f'role assignment: {r.status_code} '
                                   f'{r.text}')
        for stype, name in (('block-storage', 'cinder'),
                            ('volumev3', 'cinderv3')):
            svc = post('services', 'service', {'type': stype, 'name': name})
            for iface in ('public', 'internal', 'admin'):
                post('endpoints', 'endpoint', {
                    'service_id': svc['id'], 'interface': iface,
                    'region_id': REGION, 'url': self.cinder_url})

    # -- Cinder --------------------------------------------------------

    def cinder_conf(self) -> str:
        lines = [
            '[DEFAULT]',
            f'host = {HOST}',
            'my_ip = 127.0.0.1',
            f'state_path = {self.state}',
            'auth_strategy = keystone',
            f'transport_url = rabbit://guest:guest@127.0.0.1:'
            f'{self.amqp_port}/',
            f'api_paste_config = {self.state}/api-paste.ini',
            f'resource_query_filters_file = '
            f'{self.state}/resource_filters.json',
            'osapi_volume_listen = 127.0.0.1',
            f'osapi_volume_listen_port = {self.api_port}',
            f'osapi_volume_workers = {self.api_workers}',
            f'enabled_backends = {BACKEND}',
            'debug = True',
            '',
            '[database]',
            f'connection = {self.db_url("cinder")}',
            'max_pool_size = 10',
            'max_overflow = 20',
            '',
            '[keystone_authtoken]',
            f'www_authenticate_uri = {self.keystone_url}/v3',
            f'auth_url = {self.keystone_url}',
            'auth_type = password',
            'username = cinder',
            f'password = {SERVICE_PASSWORD}',
            'project_name = service',
            'user_domain_name = Default',
            'project_domain_name = Default',
            f'region_name = {REGION}',
            '',
            '[oslo_concurrency]',
            f'lock_path = {self.state}/lock',
            '',
            '[coordination]',
            f'backend_url = file://{self.state}/coordination',
            '',
            f'[{BACKEND}]',
        ]
        if self.fake_backend:
            lines += [f'volume_driver = {FAKE_DRIVER}',
                      f'volume_backend_name = {BACKEND}']
        else:
            opts = backend.settings(GuestShell.from_env(self.lab_env))
            assert opts['volume_backend_name'] == BACKEND, opts
            lines.append('volume_driver = cinder_zol.ZFSonLinuxISCSIDriver')
            lines += [f'{k} = {v}' for k, v in opts.items()]
        return '\n'.join(lines) + '\n'

    def write_cinder_files(self) -> None:
        for sub in ('lock', 'coordination'):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / 'api-paste.ini', self.state / 'api-paste.ini')
        shutil.copy(HERE / 'resource_filters.json',
                    self.state / 'resource_filters.json')
        self.conf.write_text(self.cinder_conf())

    def _cinder_argv(self, prog: str, *extra: str) -> list[str]:
        return [str(self.bindir / prog), '--config-file', str(self.conf),
                *extra]

    def cinder_db_sync(self) -> None:
        t0 = time.monotonic()
        run_logged(self._cinder_argv('cinder-manage', 'db', 'sync'),
                   self.logs / 'cinder-manage.log', 'cinder-manage db sync')
        self.timings['cinder db sync'] = time.monotonic() - t0

    def start_cinder(self, name: str) -> Proc:
        proc = Proc(name, self._cinder_argv(
            name, '--log-file', str(self.logs / f'{name}.log')),
            self.logs / f'{name}.out')
        self.procs[name] = proc.start()
        return proc

    def wait_cinder_api(self, timeout: float = 120) -> None:
        t0 = self.procs['cinder-api'].started_at
        self._wait_http('cinder-api', f'http://127.0.0.1:{self.api_port}/',
                        timeout)
        self.timings['cinder-api answering'] = time.monotonic() - t0

    def wait_volume(self, timeout: float = 240) -> None:
        t0 = self.procs['cinder-volume'].started_at
        log = self.logs / 'cinder-volume.log'
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive('cinder-volume')
            try:
                text = log.read_text(errors='replace')
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
        self.timings['cinder-volume ready'] = time.monotonic() - t0

    def wait_scheduler_pool(self, timeout: float = 120) -> list:
        """Pools the scheduler knows (with capabilities), once non-empty."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            token, _ = self._token('admin', ADMIN_PASSWORD, 'admin')
            r = requests.get(
                f'{self.cinder_url}/{self.admin_project_id}/scheduler-stats/'
                'get_pools?detail=True',
                headers={'X-Auth-Token': token}, timeout=30)
            if r.status_code == 200 and r.json().get('pools'):
                self.timings['scheduler has the pool'] = (
                    time.monotonic() - t0)
                return r.json()['pools']
            if time.monotonic() > deadline:
                raise ServiceError(f'no pool in the scheduler after '
                                   f'{timeout:.0f}s: {r.status_code} '
                                   f'{r.text[:300]}')
            time.sleep(1)

    # -- common --------------------------------------------------------

    def _wait_http(self, name: str, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(name)
            try:
                r = requests.get(url, timeout=5)
                if r.status_code in (200, 300):
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f'{name} did not answer {url} within '
                                   f'{timeout:.0f}s\n{self.log_tail(name)}')
            time.sleep(0.3)

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if not proc.alive():
            code = proc.popen.returncode if proc.popen else None
            raise ServiceError(f'{name} exited ({code})\n'
                               f'{self.log_tail(name)}')

    def log_tail(self, name: str, lines: int = 40, debug: bool = True) -> str:
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

    def start(self, log=print) -> None:
        """Cold start of everything; returns when cinder-volume is ready."""
        t0 = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.start_rabbit()          # boots while MariaDB/keystone set up
        self.start_mariadb()
        self.wait_mariadb()
        log(f'tempest: MariaDB up ({self.timings["mariadb up"]:.1f}s)')
        self.write_cinder_files()
        # cinder's db sync runs while keystone sets itself up
        sync = subprocess.Popen(
            self._cinder_argv('cinder-manage', 'db', 'sync'),
            stdin=subprocess.DEVNULL,
            stdout=open(self.logs / 'cinder-manage.log', 'ab'),
            stderr=subprocess.STDOUT)
        try:
            self.setup_keystone()
            self.start_keystone()
        finally:
            rc = sync.wait(timeout=300)
        if rc:
            raise ServiceError(f'cinder-manage db sync exited {rc}\n'
                               f'{tail(self.logs / "cinder-manage.log")}')
        self.wait_keystone()
        self.register_cinder()
        log(f'tempest: keystone up, cinder registered '
            f'({time.monotonic() - t0:.1f}s)')
        self.wait_rabbit()
        for name in ('cinder-api', 'cinder-scheduler', 'cinder-volume'):
            self.start_cinder(name)
        self.wait_cinder_api()
        self.wait_volume()
        self.timings['stack up'] = time.monotonic() - t0

    def stop(self) -> None:
        order = ['cinder-api', 'cinder-scheduler', 'cinder-volume',
                 'keystone', 'rabbitmq', 'epmd', 'mariadb']
        for name in order:
            proc = self.procs.get(name)
            if proc is not None:
                try:
                    proc.stop()
                except Exception as exc:  # keep stopping the others
                    print(f'tempest: stopping {name} (pid {proc.pid}): '
                          f'{exc}', file=sys.stderr, flush=True)

    def dump_timings(self) -> str:
        return json.dumps({k: round(v, 1) for k, v in self.timings.items()})
