"""A real ZFS-on-Linux storage host for tests: a Debian guest under QEMU.

Standard library only (no cinder, no paramiko): the lab talks to its guest
through ``g.shell`` (shell.GuestShell: the system ``ssh`` client, key-only,
against a known_hosts file that holds the guest's real host key, never with
host key checking turned off). LabGuest owns QEMU: boot, storage host
setup, target choice, stop.

    from cinder_zol_lab.guest import LabGuest
    with LabGuest() as g:
        g.run(['zfs', 'list'])
        g.use_target('lioadm')

The image is built once by build-image.sh and kept in
``CACHE_DIR/image-<recipe hash>/``; each boot uses a throw-away qcow2 overlay
and scratch disk in ``CACHE_DIR/runs/run-*/``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import os
from pathlib import Path
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

from cinder_zol.host import helpers

from . import link as lablink
from . import services
from .shell import CONTROL_SOCKET
from .shell import GuestShell
from .shell import LabError
from .shell import REBOOT_DONE
from .shell import REBOOT_REQUEST

LAB_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = LAB_DIR / 'build-image.sh'
# every file whose content shapes the image: a change to any rebuilds it
RECIPE_FILES = (BUILD_SCRIPT,)

# Storage-host releases the lab can build: name -> build-image.sh options.
# debian13 (OpenZFS 2.3 from contrib) is the default: what an operator
# installs today, and what CI runs every tier on; debian12 (OpenZFS 2.1) and
# debian13-zfs24 (2.4 from trixie-backports) are the release matrix
# (tox -e matrix). CINDER_ZOL_LAB_PROFILE or --profile picks one.
PROFILES = {
    'debian12': ('--suite', 'bookworm', '--zfs', 'suite'),
    'debian13': ('--suite', 'trixie', '--zfs', 'suite'),
    'debian13-zfs24': ('--suite', 'trixie', '--zfs', 'backports'),
}
DEFAULT_PROFILE = 'debian13'

# How the storage host is set up: the driver logs in as an unprivileged
# account through the forced-command wrapper (the default, as the README
# recommends), or as root.
MODES = ('least-privilege', 'root')
DRIVER_ACCOUNT = 'cinder-zol'


def default_cache_dir() -> Path:
    env = os.environ.get('CINDER_ZOL_LAB_CACHE')
    if env:
        return Path(env).expanduser()
    return Path.home() / '.cache' / 'cinder-zol'


CACHE_DIR = default_cache_dir()

Log = Callable[[str], None]


def _tail(text: str, lines: int) -> str:
    return '\n'.join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int = 30) -> str:
    try:
        return _tail(path.read_text(errors='replace'), lines)
    except OSError as exc:
        return f'({path}: {exc})'


# ------------------------------------------------------------------ image --

def recipe_hash() -> str:
    """sha256 over the recipe files (name + content), first 16 hex digits."""
    h = hashlib.sha256()
    for path in RECIPE_FILES:
        h.update(path.name.encode() + b'\0')
        h.update(path.read_bytes())
        h.update(b'\0')
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Image:
    """A built guest image (all paths inside one ``image-<hash>`` dir)."""
    dir: Path
    kernel: Path
    initrd: Path
    root: Path
    client_key: Path
    host_pubkey: Path

    @classmethod
    def at(cls, path: Path) -> 'Image':
        path = Path(path)
        return cls(dir=path,
                   kernel=path / 'vmlinuz',
                   initrd=path / 'initrd.img',
                   root=path / 'root.img',
                   client_key=path / 'id_ed25519',
                   host_pubkey=path / 'ssh_host_ed25519_key.pub')

    def complete(self) -> bool:
        return all(p.is_file() and p.stat().st_size > 0
                   for p in (self.kernel, self.initrd, self.root,
                             self.client_key, self.host_pubkey))

    def host_key(self) -> str:
        """'<type> <base64>' of the guest's ed25519 host key."""
        fields = self.host_pubkey.read_text().split()
        if len(fields) < 2:
            raise LabError(f'bad host key file {self.host_pubkey}')
        return f'{fields[0]} {fields[1]}'

    def info(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / 'build-info').read_text()
        return ''


def default_profile() -> str:
    return os.environ.get('CINDER_ZOL_LAB_PROFILE') or DEFAULT_PROFILE


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise LabError(f'unknown lab profile {profile!r}; '
                       f'choose one of {", ".join(sorted(PROFILES))}')
    return profile


def image_dir(cache_dir: Path | None = None,
              profile: str | None = None) -> Path:
    profile = check_profile(profile or default_profile())
    return Path(cache_dir or CACHE_DIR) / f'image-{profile}-{recipe_hash()}'


def ensure_image(log: Log = print, cache_dir: Path | None = None,
                 profile: str | None = None) -> Image:
    """Return the cached image for the current recipe, building it if missing.

    Building takes about 7 minutes and needs root; build-image.sh's progress
    lines are passed to ``log``. Raises LabError (with the log path and its
    tail) if the build fails.
    """
    cache = Path(cache_dir or CACHE_DIR)
    profile = check_profile(profile or default_profile())
    image = Image.at(image_dir(cache, profile))
    if image.complete():
        return image
    cache.mkdir(parents=True, exist_ok=True)
    # one builder at a time per cache dir; a second caller waits, then reuses
    with open(cache / 'build.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.complete():
            return image
        if image.dir.exists():
            log(f'lab: removing incomplete image dir {image.dir}')
            shutil.rmtree(image.dir)
        if os.geteuid() != 0:
            raise LabError('building the lab image needs root '
                           '(debootstrap, chroot); '
                           f'or provide a built image in {image.dir}')
        build_log = cache / f'build-{image.dir.name}.log'
        log(f'lab: building guest image {image.dir} (log: {build_log})')
        env = dict(os.environ, CINDER_ZOL_LAB_LOG=str(build_log))
        proc = subprocess.Popen(
            ['bash', str(BUILD_SCRIPT), *PROFILES[profile],
             str(image.dir), str(cache)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env, text=True, bufsize=1)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log(line.rstrip('\n'))
            rc = proc.wait()
        except BaseException:
            # Ctrl-C reaches the script too (same process group); other
            # exits: ask it to stop. Either way let its trap clean up.
            services.end(proc, 120)
            raise
        if rc != 0:
            raise LabError(f'guest image build failed (exit {rc}); '
                           f'log: {build_log}\n'
                           + _tail_file(build_log, 30))
        if not image.complete():
            raise LabError(f'image build finished but {image.dir} is '
                           f'incomplete; log: {build_log}')
        return image


# ------------------------------------------------------------------ guest --

def _free_port(exclude: set[int] = frozenset()) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port
    raise LabError('no free local port')


@contextlib.contextmanager
def _signals_deferred():
    """Hold off SIGINT/SIGTERM/SIGHUP (delivered on exit).

    So a second Ctrl-C cannot cut a teardown short. Only for code that
    starts no process: a child would inherit the blocked mask.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(
        signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _qemu_path(path: Path) -> str:
    """Escape a path for a QEMU -drive/-chardev option value."""
    return str(path).replace(',', ',,')


class LabGuest:
    """A booted lab storage host (context manager).

    Attributes, valid after start(): ``shell`` (a shell.GuestShell: the
    guest's coordinates and its one ssh client), ``host`` ('127.0.0.1'),
    ``ssh_port``, ``iscsi_port`` (forwarded to the same port in the guest,
    where the active target listens), ``iscsi_port2`` (forwarded the same
    way: a second portal, for multipath), ``nvme_port`` (the same for
    nvmet's NVMe/TCP port), ``user`` ('root', for the lab's own checks),
    ``login`` (the driver's account: cinder-zol, or root in root mode),
    ``private_key``, ``known_hosts``, ``pool``, ``parent_dataset``,
    ``run_dir``, ``console_log``, ``image``, ``pid`` (QEMU's), ``target``
    (last helper passed to use_target), ``timings`` (seconds).

    ``boot_timeout``: a boot takes 25-60 s under TCG, but over 3 minutes
    on a machine shared with other guests (measured at load 14): wait
    long rather than fail a run for the neighbours' load.
    """

    host = '127.0.0.1'
    user = 'root'

    def __init__(self, pool: str = 'tank',
                 parent_dataset: str | None = None, *,
                 memory_mb: int = 2048, smp: int = 2,
                 scratch_size_gb: int = 10,
                 boot_timeout: float | None = None, keep: bool = False,
                 cache_dir: Path | None = None, log: Log = print,
                 image: Image | None = None,
                 mode: str = 'least-privilege',
                 link: lablink.Port | None = None):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, not {mode!r}')
        self.mode = mode
        self.login = DRIVER_ACCOUNT if mode == 'least-privilege' else 'root'
        self.pool = pool
        self.parent_dataset = parent_dataset or f'{pool}/cinder'
        self.memory_mb = memory_mb
        self.smp = smp
        self.scratch_size_gb = scratch_size_gb
        # a loaded machine may need longer: CINDER_ZOL_LAB_BOOT_TIMEOUT
        self.boot_timeout = boot_timeout or float(
            os.environ.get('CINDER_ZOL_LAB_BOOT_TIMEOUT') or 420)
        self.keep = keep
        self.cache_dir = Path(cache_dir or CACHE_DIR)
        self.log = log
        self.image = image
        # its NIC on the lab's private link to other guests (link.py)
        self.link = link
        self.shell: GuestShell | None = None
        self.ssh_port: int | None = None
        self.iscsi_port: int | None = None
        self.iscsi_port2: int | None = None
        self.nvme_port: int | None = None
        self.private_key: Path | None = None
        self.known_hosts: Path | None = None
        self.run_dir: Path | None = None
        self.console_log: Path | None = None
        self.pid: int | None = None
        self.timings: dict[str, float] = {}
        self._proc: subprocess.Popen | None = None
        self._master: subprocess.Popen | None = None
        self._qemu_log = None

    @property
    def target(self) -> str | None:
        return (self.shell.target or None) if self.shell else None

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> 'LabGuest':
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> 'LabGuest':
        """Boot the guest, wait for ssh, run setup-storage-host.sh."""
        if self._proc is not None:
            raise LabError('guest already started')
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.image is None:
            self.image = ensure_image(log=self.log, cache_dir=self.cache_dir)
        if not self.image.complete():
            raise LabError(f'image {self.image.dir} is incomplete')
        runs = self.cache_dir / 'runs'
        runs.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix='run-', dir=runs))
        self.console_log = self.run_dir / 'console.log'
        # ssh refuses a private key readable by others; keep a private copy
        self.private_key = self.run_dir / 'id_ed25519'
        shutil.copyfile(self.image.client_key, self.private_key)
        os.chmod(self.private_key, 0o600)
        self.known_hosts = self.run_dir / 'known_hosts'
        overlay = self.run_dir / 'root.qcow2'
        scratch = self.run_dir / 'scratch.raw'
        with open(scratch, 'wb') as f:
            f.truncate(self.scratch_size_gb * 1024 ** 3)

        t0 = time.monotonic()
        for attempt in range(3):
            self.ssh_port = _free_port()
            self.iscsi_port = _free_port({self.ssh_port})
            self.iscsi_port2 = _free_port({self.ssh_port, self.iscsi_port})
            self.nvme_port = _free_port({self.ssh_port, self.iscsi_port,
                                         self.iscsi_port2})
            self.known_hosts.write_text(
                f'[{self.host}]:{self.ssh_port} {self.image.host_key()}\n')
            self.shell = GuestShell(
                host=self.host, ssh_port=self.ssh_port, key=self.private_key,
                known_hosts=self.known_hosts, parent=self.parent_dataset,
                iscsi_port=self.iscsi_port, iscsi_port2=self.iscsi_port2,
                pool=self.pool, user=self.user,
                login=self.login, mode=self.mode, run_dir=self.run_dir,
                nvme_port=self.nvme_port,
                link_address=self.link.address if self.link else '')
            subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F',
                            'raw', '-b', str(self.image.root), str(overlay)],
                           check=True, stdin=subprocess.DEVNULL)
            self._launch_qemu(overlay, scratch)
            try:
                self._wait_for_ssh(t0)
                break
            except _PortTaken:
                self.log('lab: a forwarded port was taken; '
                         'retrying with new ports')
                self._stop_qemu()
            except _BootPanic as exc:
                # seen once in many boots under TCG: an int3 oops in the
                # first seconds, before the root file system is mounted
                kept = self.console_log.with_name(f'console-{attempt}.log')
                self.console_log.rename(kept)
                self.log(f'lab: the guest kernel panicked while booting '
                         f'({exc}; console kept in {kept}); booting again')
                self._stop_qemu()
        else:
            raise LabError('could not boot QEMU in 3 attempts (ports taken '
                           'or kernel panics; see the lines above)')
        self.timings['boot_to_ssh'] = time.monotonic() - t0
        self.log(f'lab: guest up in {self.timings["boot_to_ssh"]:.1f}s '
                 f'(ssh 127.0.0.1:{self.ssh_port}, '
                 f'iscsi 127.0.0.1:{self.iscsi_port} and :{self.iscsi_port2}, '
                 f'run dir {self.run_dir})')
        self._start_master()
        if self.link is not None:
            self._configure_link()
        t1 = time.monotonic()
        self.setup_storage_host()
        self.timings['setup'] = time.monotonic() - t1

    def qemu_argv(self, overlay: Path, scratch: Path) -> list[str]:
        fwd = (f'hostfwd=tcp:{self.host}:{self.ssh_port}-:22,'
               f'hostfwd=tcp:{self.host}:{self.iscsi_port}-:{self.iscsi_port},'
               f'hostfwd=tcp:{self.host}:{self.iscsi_port2}-:'
               f'{self.iscsi_port2},'
               f'hostfwd=tcp:{self.host}:{self.nvme_port}-:{self.nvme_port}')
        return [
            'qemu-system-x86_64',
            '-name', 'cinder-zol-lab',
            '-accel', 'tcg,thread=multi', '-cpu', 'max', '-machine', 'q35',
            '-smp', str(self.smp), '-m', str(self.memory_mb),
            '-nodefaults', '-display', 'none', '-no-reboot',
            '-kernel', str(self.image.kernel),
            '-initrd', str(self.image.initrd),
            '-append', 'root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1',
            '-drive', f'file={_qemu_path(overlay)},format=qcow2,if=virtio,'
                      'cache=unsafe,discard=unmap',
            '-drive', f'file={_qemu_path(scratch)},format=raw,if=virtio,'
                      'cache=unsafe,discard=unmap',
            '-netdev', f'user,id=n0,restrict=on,{fwd}',
            '-device', 'virtio-net-pci,netdev=n0',
            *(self.link.qemu_args() if self.link else ()),
            '-chardev', f'file,id=ser0,path={_qemu_path(self.console_log)}',
            '-serial', 'chardev:ser0',
            '-pidfile', str(self.run_dir / 'qemu.pid'),
        ]

    def _configure_link(self) -> None:
        """The static address on the private link; kept across reboots."""
        unit, address = self.link.network_unit(), self.link.address
        self.run(f'''set -e
cat > {lablink.NETWORK_FILE} <<'EOF'
{unit}EOF
networkctl reload
for dev in /sys/class/net/*; do
    if [ "$(cat $dev/address)" = {self.link.mac} ]; then
        networkctl reconfigure "${{dev##*/}}"
    fi
done
for i in $(seq 1 100); do
    ip -4 -o addr show | grep -q ' {address}/' && exit 0
    sleep 0.1
done
echo "no {address} on any interface:" >&2; ip -o addr show >&2; exit 1
''', timeout=60)
        self.log(f'lab: private link address {address}')

    def _launch_qemu(self, overlay: Path, scratch: Path) -> None:
        argv = self.qemu_argv(overlay, scratch)
        (self.run_dir / 'qemu.cmd').write_text(shlex.join(argv) + '\n')
        self._qemu_log = open(self.run_dir / 'qemu.log', 'ab')
        # own session: a terminal's Ctrl-C goes to us, and we stop QEMU
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=self._qemu_log,
                                      stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.pid = self._proc.pid

    def ssh_argv(self, *remote: str) -> list[str]:
        """ssh command line (no connection sharing) for a human or a child."""
        return self.shell.ssh_argv(*remote)

    def _wait_for_ssh(self, t0: float) -> None:
        last = ['']

        def qemu_alive():
            rc = self._proc.poll()
            if rc is None:
                return
            raise _exited_during_boot(rc, self.run_dir / 'qemu.log',
                                      self.console_log)

        def ssh_answers():
            try:
                r = self.shell.run('true', check=False, timeout=30,
                                   control=False)
            except LabError:
                last[0] = 'ssh probe timed out'
                return False
            last[0] = r.stderr.strip()
            if ('host key' in last[0].lower()
                    and 'verification failed' in last[0].lower()):
                raise LabError(f'guest host key does not match '
                               f'{self.known_hosts}: {last[0]}')
            return r.returncode == 0

        try:
            services.wait_until(
                ssh_answers, t0 + self.boot_timeout - time.monotonic(),
                interval=1, what='guest ssh', alive=qemu_alive)
        except services.WaitTimeout:
            raise LabError(f'guest ssh not answering after '
                           f'{self.boot_timeout:.0f}s (last: {last[0]}).\n'
                           f'console.log ({self.console_log}):\n'
                           + _tail_file(self.console_log, 40)) from None

    def _start_master(self) -> None:
        """One shared ssh connection (ours, stopped in stop()).

        Saves ~0.3 s per command, here and in the children (GuestShell
        uses it while its socket exists).
        """
        path = self.run_dir / CONTROL_SOCKET
        if len(str(path)) > 100:  # unix socket path limit
            return
        argv = self.shell.ssh_options(control=False) + [
            '-M', '-N', '-o', f'ControlPath={path}', self.shell.destination]
        self._master = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.run_dir / 'ssh-master.log', 'ab'),
            start_new_session=True)
        try:
            services.wait_until(path.is_socket, 20, interval=0.1,
                                what='the shared ssh connection',
                                alive=self._master_alive)
        except services.ServiceError:
            self.log('lab: ssh connection sharing not available; '
                     'using one ssh per command')
            self._stop_master()

    def _master_alive(self) -> None:
        if self._master.poll() is not None:
            raise services.ServiceError('ssh master exited')

    def _stop_master(self) -> None:
        m, self._master = self._master, None
        if m is not None:
            services.end(m, 5)

    def _stop_qemu(self, timeout: float = 15) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            services.end(proc, timeout)  # QEMU exits at once on SIGTERM
        if self._qemu_log is not None:
            self._qemu_log.close()
            self._qemu_log = None

    def stop(self) -> None:
        """Stop QEMU (the process we started, by its PID).

        Remove the run dir unless keep=True. Idempotent; a Ctrl-C during it
        is held until it ends.
        """
        with _signals_deferred():
            t0 = time.monotonic()
            had_proc = self._proc is not None
            self._stop_master()
            self._stop_qemu()
            self._stop_orphan_qemu()
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)
            if self.run_dir is not None and self.run_dir.exists():
                if self.keep:
                    self.log(f'lab: kept run dir {self.run_dir}')
                else:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
            if had_proc:
                self.timings['teardown'] = time.monotonic() - t0

    def _stop_orphan_qemu(self) -> None:
        """Stop a QEMU we started but lost track of.

        If we were interrupted between starting QEMU and keeping its Popen,
        find it by the pidfile it wrote in our run dir (and check that the
        process's command line names our run dir) and stop it.
        """
        if self.run_dir is None:
            return
        pidfile = self.run_dir / 'qemu.pid'
        try:
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f'/proc/{pid}/cmdline').read_bytes()
        except (OSError, ValueError, IndexError):
            return
        if (str(self.run_dir).encode() not in cmdline
                or b'qemu-system' not in cmdline):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            try:
                services.wait_until(
                    lambda: not Path(f'/proc/{pid}').exists(), 15,
                    interval=0.1, what=f'QEMU {pid} to exit')
            except services.WaitTimeout:
                os.kill(pid, signal.SIGKILL)

    def reboot(self, crash: bool = False) -> None:
        """Reboot the storage host: the guest's own ``systemctl reboot``.

        ``crash``: no shutdown at all, a reset after ``sync`` (what a
        kernel panic or a power cut leaves, less the page cache): nothing
        stops, nothing is exported or saved on the way down.
        QEMU runs with -no-reboot, so the reboot ends it; it is started
        again with the same root overlay, pool disk and forwarded ports
        (the driver's san_ip/port and the initiator's portal stay valid).
        Nothing is set up again: what comes back is what the host itself
        restores at boot.
        """
        if self._proc is None:
            raise LabError('guest is not running')
        t0 = time.monotonic()
        self._stop_master()
        # the connection ends with the guest: its exit status means nothing
        self.shell.run('sync; echo b > /proc/sysrq-trigger' if crash
                       else 'systemctl reboot', check=False, timeout=60,
                       control=False)
        try:
            self._proc.wait(timeout=self.boot_timeout)
        except subprocess.TimeoutExpired:
            self.log('lab: the guest did not shut down; stopping QEMU')
        self._stop_qemu()
        self._launch_qemu(self.run_dir / 'root.qcow2',
                          self.run_dir / 'scratch.raw')
        try:
            self._wait_for_ssh(time.monotonic())
        except _PortTaken:
            raise LabError('a forwarded port was taken while the guest '
                           'rebooted') from None
        self._start_master()
        # sshd answers before the boot is over: tgt, for one, keeps its
        # targets offline until its ExecStartPost steps are done
        state = self.shell.run('systemctl is-system-running --wait',
                               check=False, timeout=self.boot_timeout)
        self.log(f'lab: guest booted: {state.stdout.strip()}')
        self.timings['reboot'] = time.monotonic() - t0
        self.log(f'lab: guest {"reset" if crash else "rebooted"} in '
                 f'{self.timings["reboot"]:.1f}s')

    def serve_requests(self) -> None:
        """Do what a test process asked for through the run dir.

        Only the lab process owns QEMU, so a test asks it to reboot the
        guest by creating ``REBOOT_REQUEST`` there (GuestShell.reboot; its
        text: 'crash' for a reset, '' for a reboot), and waits for
        ``REBOOT_DONE`` (its text: '' or the error).
        """
        request = self.run_dir / REBOOT_REQUEST
        if not request.exists():
            return
        crash = request.read_text().strip() == 'crash'
        request.unlink()
        try:
            self.reboot(crash=crash)
            error = ''
        except LabError as exc:
            error = str(exc) or type(exc).__name__
        tmp = self.run_dir / (REBOOT_DONE + '.tmp')
        tmp.write_text(error)
        tmp.replace(self.run_dir / REBOOT_DONE)   # whole, or not at all

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- commands -----------------------------------------------------------

    def run(self, argv_or_script: list[str] | str,
            input: bytes | str | None = None,
            check: bool = True, timeout: float | None = 300, text: bool = True
            ) -> subprocess.CompletedProcess:
        """Run a command in the guest as root: GuestShell.run of ``shell``."""
        if self._proc is None:
            raise LabError('guest is not running')
        return self.shell.run(argv_or_script, input=input, check=check,
                              timeout=timeout, text=text)

    def setup_storage_host(self) -> None:
        """Install the storage host component the operator's way.

        The self-contained installer of ``python -m cinder_zol.host.bundle``
        runs setup-storage-host.sh in the guest, least-privilege unless
        mode is 'root'; the driver's account gets the lab's client key.
        """
        if str(LAB_DIR.parent) not in sys.path:
            sys.path.insert(0, str(LAB_DIR.parent))
        from cinder_zol.host import bundle
        args = ['--pool', self.pool, '--dataset', self.parent_dataset,
                '--device', '/dev/vdb']
        # targets may listen on the ports the lab forwards, and only there
        for port in (self.iscsi_port, self.iscsi_port2, self.nvme_port):
            args += ['--target-port', str(port)]
        if self.mode == 'root':
            args.append('--root')
        else:
            key = (self.image.dir / 'id_ed25519.pub').read_text().strip()
            args += ['--user', DRIVER_ACCOUNT, '--authorized-key', key]
        r = self.run(['bash', '-s', '--'] + args,
                     input=bundle.script().encode(), check=False,
                     timeout=300)
        for line in r.stdout.splitlines():
            self.log(f'  {line}')
        if r.returncode != 0:
            raise LabError(f'setup-storage-host.sh failed ({r.returncode}):\n'
                           + _tail(r.stdout + r.stderr, 30))

    def use_target(self, helper: str) -> None:
        """Make tgt ('tgtadm'), LIO ('lioadm') or nvmet the one target."""
        # The driver advertises target_port = iscsi_port, and the forward
        # keeps that number inside the guest: tgt gets an extra portal on
        # it, LIO creates its portal there itself.
        # Both come back after a reboot of the guest: tgt is enabled, with
        # a drop-in that opens the extra portal; LIO's saved configuration
        # (its portal is the driver's target_port) is restored by
        # rtslib-fb-targetctl.
        if helper == 'tgtadm':
            script = r'''
set -e
if [ -d /sys/kernel/config/target/iscsi ] ||
        lsmod | grep -q '^iscsi_target_mod '; then
    targetcli clearconfig confirm=True >/dev/null
fi
rm -f /etc/rtslib-fb-target/saveconfig.json
mkdir -p /etc/systemd/system/tgt.service.d
cat > /etc/systemd/system/tgt.service.d/lab-portal.conf <<EOF
[Service]
# the lab forwards this port from the host to the same port here ("-":
# cinder-zol-tgt-portals may have opened it already)
ExecStartPost=-/usr/sbin/tgtadm --lld iscsi --mode portal --op new \\
    --param portal=0.0.0.0:PORT
EOF
systemctl daemon-reload
systemctl enable tgt >/dev/null 2>&1
systemctl restart tgt
for i in $(seq 1 100); do
    tgtadm --lld iscsi --mode target --op show >/dev/null 2>&1 && break
    sleep 0.1
done
tgtadm --lld iscsi --mode portal --op show | grep -q ":PORT\b"
'''.replace('PORT', str(self.iscsi_port))
        elif helper == 'nvmet':
            # the root helper loads nvmet and nvmet-tcp itself, and opens
            # the driver's target_port (nvme_port, forwarded as is)
            script = r'''
systemctl disable --now tgt >/dev/null 2>&1
true
'''
        elif helper == 'lioadm':
            script = r'''
set -e
systemctl disable --now tgt >/dev/null 2>&1
rm -f /etc/systemd/system/tgt.service.d/lab-portal.conf
systemctl daemon-reload
systemctl enable rtslib-fb-targetctl >/dev/null 2>&1
modprobe -a target_core_mod iscsi_target_mod target_core_iblock
targetcli ls / 1 >/dev/null
'''
        else:
            raise ValueError(f'target helper must be one of {helpers.NAMES}, '
                             f'not {helper!r}')
        self.run(script, timeout=180)
        self.shell.target = helper


def _exited_during_boot(rc: int, qemu_log: Path,
                        console_log: Path) -> Exception:
    """Why QEMU ended before ssh answered, as the exception to raise."""
    qlog = _tail_file(qemu_log, 20)
    if 'hostfwd' in qlog or 'host forwarding' in qlog:
        return _PortTaken()
    console = _tail_file(console_log, 40)
    panic = [line for line in console.splitlines() if 'Kernel panic' in line]
    if panic:
        return _BootPanic(panic[0].strip())
    return LabError(f'QEMU exited ({rc}) during boot.\n'
                    f'qemu.log:\n{qlog}\n'
                    f'console.log ({console_log}):\n{console}')


class _PortTaken(Exception):
    pass


class _BootPanic(Exception):
    """The guest kernel panicked before ssh answered (QEMU then exits)."""
