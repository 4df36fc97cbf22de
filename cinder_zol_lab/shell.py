"""One SSH client for the lab guest, in every process that talks to it.

``LabGuest`` (guest.py) boots the guest and hands its coordinates to child
processes as CINDER_ZOL_LAB_* variables; ``GuestShell.from_env()`` reads
them back and ``to_env()`` writes them: this module is the one place that
knows those names. Every command goes through ``GuestShell.run``: the
system ssh client, key-only, against the lab's known_hosts file (a changed
host key is refused), in batch mode, and over the connection the lab keeps
open when it has one (``ControlPath``, no master of its own).

The per-target helpers the harness checks with live here too: which IQNs
the active target (tgt or LIO) serves, dropping one, and scrubbing the
guest back to its parent dataset. Standard library only.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
import shlex
import subprocess
import time

from cinder_zol.host import devices

ENV_PREFIX = 'CINDER_ZOL_LAB_'
# how many guests a lab run booted; guest k > 1 is CINDER_ZOL_LAB_<k>_*
HOSTS_ENV = ENV_PREFIX + 'HOSTS'
# variables a guest cannot be reached without
REQUIRED = ('host', 'ssh_port', 'key', 'known_hosts', 'parent', 'iscsi_port')
CONTROL_SOCKET = 'ssh.ctl'   # in run_dir: the lab's shared connection
MiB = 2 ** 20
# in run_dir: a test asks the lab process (QEMU's owner) for a reboot
REBOOT_REQUEST = 'reboot.request'
REBOOT_DONE = 'reboot.done'


class LabError(RuntimeError):
    """The lab could not build, boot or drive its guest."""


class GuestCommandError(LabError, subprocess.CalledProcessError):
    """A command run in the guest exited non-zero (``run(check=True)``)."""

    def __init__(self, returncode, cmd, output=None, stderr=None):
        subprocess.CalledProcessError.__init__(self, returncode, cmd, output,
                                               stderr)

    def __str__(self):
        err = self.stderr
        if isinstance(err, bytes):
            err = err.decode(errors='replace')
        msg = subprocess.CalledProcessError.__str__(self)
        if self.returncode == 255:
            msg += ' (255: ssh could not connect, or the command exited 255)'
        if err:
            msg += '\nstderr:\n' + '\n'.join(err.splitlines()[-30:])
        return msg


@dataclasses.dataclass
class GuestShell:
    """Where the lab guest is and how to log in to it, and its commands.

    ``user`` is root, for the lab's own checks; ``login`` is the account
    the driver logs in as (cinder-zol in the least-privilege ``mode``, or
    root). ``target`` is the active target helper ('tgtadm', 'lioadm', or
    '' before the lab chose one).
    """

    host: str
    ssh_port: int
    key: Path
    known_hosts: Path
    parent: str
    iscsi_port: int
    # a second forwarded iSCSI port (multipath); 0 when there is none
    iscsi_port2: int = 0
    # the forwarded NVMe/TCP port (nvmet); 0 when there is none
    nvme_port: int = 0
    pool: str = 'tank'
    user: str = 'root'
    login: str = 'root'
    mode: str = ''
    target: str = ''
    run_dir: Path | None = None
    # its address on the lab's private link to the other guests (link.py)
    link_address: str = ''

    # -- the environment of child processes ---------------------------------

    @staticmethod
    def env_prefix(index: int = 1) -> str:
        """CINDER_ZOL_LAB_ for the first guest, CINDER_ZOL_LAB_<k>_ after."""
        return ENV_PREFIX if index == 1 else f'{ENV_PREFIX}{index}_'

    @classmethod
    def from_env(cls, env=os.environ, index: int = 1) -> 'GuestShell':
        """Guest ``index`` (1-based) as described by CINDER_ZOL_LAB_*.

        Raises LabError naming the variables a guest needs that are unset.
        """
        prefix = cls.env_prefix(index)
        values = {f.name: env.get(prefix + f.name.upper())
                  for f in dataclasses.fields(cls)}
        missing = [prefix + k.upper() for k in REQUIRED if not values[k]]
        if missing:
            raise LabError(', '.join(missing) + ' not set (no lab guest)')
        kwargs = {k: v for k, v in values.items() if v}
        for k in ('ssh_port', 'iscsi_port', 'iscsi_port2', 'nvme_port'):
            if k in kwargs:
                kwargs[k] = int(kwargs[k])
        for k in ('key', 'known_hosts', 'run_dir'):
            if k in kwargs:
                kwargs[k] = Path(kwargs[k])
        return cls(**kwargs)

    @classmethod
    def all_from_env(cls, env=os.environ) -> list['GuestShell']:
        """Every guest of the lab run (CINDER_ZOL_LAB_HOSTS, default 1)."""
        return [cls.from_env(env, k)
                for k in range(1, int(env.get(HOSTS_ENV) or 1) + 1)]

    def to_env(self, index: int = 1) -> dict[str, str]:
        """The variables describing this guest as guest ``index``."""
        prefix = self.env_prefix(index)
        return {prefix + k.upper(): '' if v is None else str(v)
                for k, v in dataclasses.asdict(self).items()}

    # -- ssh --------------------------------------------------------------

    @property
    def control_path(self) -> Path | None:
        """The lab's shared connection, while it is up."""
        if self.run_dir is None:
            return None
        path = self.run_dir / CONTROL_SOCKET
        return path if path.is_socket() else None

    def ssh_options(self, *, control: bool = True) -> list[str]:
        """``ssh`` and its options, without destination and command."""
        argv = ['ssh', '-F', '/dev/null',
                '-i', str(self.key), '-p', str(self.ssh_port),
                '-o', 'IdentitiesOnly=yes',
                '-o', f'UserKnownHostsFile={self.known_hosts}',
                '-o', 'GlobalKnownHostsFile=/dev/null',
                '-o', 'StrictHostKeyChecking=yes',
                '-o', 'BatchMode=yes',
                '-o', 'ConnectTimeout=15',
                '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4',
                '-o', 'LogLevel=ERROR']
        path = self.control_path if control else None
        if path is not None:
            # a dead master's socket: ssh falls back to its own connection
            argv += ['-o', f'ControlPath={path}', '-o', 'ControlMaster=no']
        return argv

    @property
    def destination(self) -> str:
        return f'{self.user}@{self.host}'

    def ssh_argv(self, *remote: str) -> list[str]:
        """ssh command line (no connection sharing) for a human or a child."""
        return self.ssh_options(control=False) + [self.destination, *remote]

    def run(self, argv_or_script: list[str] | str,
            input: bytes | str | None = None, check: bool = True,
            timeout: float | None = 300, text: bool = True,
            control: bool = True) -> subprocess.CompletedProcess:
        """Run a command in the guest as ``user`` over ssh.

        A list is an argv (quoted for the remote shell); a str is a bash
        script. stdout/stderr are captured (str if text else bytes). With
        check=True a non-zero exit raises GuestCommandError; a timeout
        raises LabError.
        """
        if isinstance(argv_or_script, str):
            remote = 'bash -c ' + shlex.quote(argv_or_script)
        else:
            remote = shlex.join(str(a) for a in argv_or_script)
        if isinstance(input, str):
            input = input.encode()
        argv = self.ssh_options(control=control) + [self.destination, remote]
        try:
            r = subprocess.run(
                argv, input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f'guest command timed out after {timeout}s: '
                           f'{remote}') from exc
        out, err = r.stdout, r.stderr
        if text:
            out = out.decode(errors='replace')
            err = err.decode(errors='replace')
        if check and r.returncode != 0:
            raise GuestCommandError(r.returncode, argv_or_script, out, err)
        return subprocess.CompletedProcess(argv_or_script, r.returncode, out,
                                           err)

    def reboot(self, timeout: float = 900, crash: bool = False) -> None:
        """Reboot the guest through the lab process; back when ssh answers.

        The lab process (``python -m cinder_zol_lab run``) owns QEMU: it
        reboots the guest and starts QEMU again with the same disks and
        ports (LabGuest.reboot). ``crash``: a reset after ``sync`` instead
        of a shutdown. Raises LabError if it could not.
        """
        if self.run_dir is None:
            raise LabError('no lab run dir: cannot ask for a reboot')
        done = self.run_dir / REBOOT_DONE
        done.unlink(missing_ok=True)
        tmp = self.run_dir / (REBOOT_REQUEST + '.tmp')
        tmp.write_text('crash' if crash else '')
        tmp.replace(self.run_dir / REBOOT_REQUEST)   # whole, or not at all
        deadline = time.monotonic() + timeout
        while not done.exists():
            if time.monotonic() > deadline:
                raise LabError(f'the lab did not reboot the guest within '
                               f'{timeout:.0f}s')
            time.sleep(1)
        error = done.read_text()
        done.unlink()
        if error:
            raise LabError(f'reboot failed: {error}')

    # -- ZFS ------------------------------------------------------------

    def zfs(self, dataset: str | None = None) -> dict[str, dict]:
        """Every dataset and snapshot under ``dataset`` (the parent), by name.

        Each row: type, volsize (bytes, None for non-volumes), origin (None
        if not a clone), defer_destroy (bool).
        """
        out = self.run(['zfs', 'list', '-H', '-p', '-t', 'all', '-r', '-o',
                        'name,type,volsize,origin,defer_destroy',
                        dataset or self.parent]).stdout
        rows = {}
        for line in out.splitlines():
            name, typ, volsize, origin, defer = line.split('\t')
            rows[name] = {'type': typ,
                          'volsize': (int(volsize) if volsize.isdigit()
                                      else None),
                          'origin': None if origin == '-' else origin,
                          'defer_destroy': defer == 'on'}
        return rows

    def zfs_names(self, dataset: str | None = None) -> list[str]:
        """Sorted names of ``dataset`` (the parent) and all below it."""
        return sorted(self.run(['zfs', 'list', '-H', '-o', 'name', '-t',
                                'all', '-r', dataset or self.parent]
                               ).stdout.split())

    def wait_for_path(self, path: str, timeout: float = 30) -> str:
        """Wait in the guest until ``path`` exists; return it.

        ZFS makes a new zvol's device, and udev its /dev/zvol link, a
        moment after `zfs create` or `zfs clone` returns: a test that
        writes right after Cinder says "available" waits as an attach does.
        A busy guest sometimes loses the udev event: the zvol events are
        replayed as often as the root helper replays them
        (cinder_zol.host.devices).
        """
        every = int(devices.RETRIGGER_AFTER * 10)
        self.run(f'for i in $(seq 1 {int(timeout * 10)}); do '
                 f'[ -e {shlex.quote(path)} ] && exit 0; '
                 f'[ $((i % {every})) = 0 ] && '
                 f'{shlex.join(devices.RETRIGGER)}; '
                 'sleep 0.1; done; '
                 f'echo "timed out waiting for {path}" >&2; exit 1',
                 timeout=timeout + 30)
        return path

    def fill(self, dataset: str, char: str, length: int = MiB,
             offset: int = 0) -> None:
        """Write ``char`` over a MiB-aligned range of a zvol."""
        assert length % MiB == 0 and offset % MiB == 0
        device = self.wait_for_path('/dev/zvol/' + dataset)
        self.run(f"head -c {length} /dev/zero | tr '\\000' "
                 f"{shlex.quote(char)} | "
                 f"dd of={shlex.quote(device)} bs=1M "
                 f"seek={offset // MiB} oflag=direct conv=fsync,notrunc "
                 "status=none")

    def md5(self, dataset: str, length: int = MiB, offset: int = 0) -> str:
        """md5 of a MiB-aligned range of a zvol, read on the guest."""
        assert length % MiB == 0 and offset % MiB == 0
        device = self.wait_for_path('/dev/zvol/' + dataset)
        out = self.run(f'dd if={shlex.quote(device)} bs=1M '
                       f'skip={offset // MiB} count={length // MiB} '
                       'iflag=direct status=none | md5sum').stdout
        return out.split()[0]

    # -- iSCSI targets ----------------------------------------------------

    @property
    def lio(self) -> bool:
        return self.target == 'lioadm'

    def targets(self) -> list[str]:
        """IQNs the active iSCSI target serves right now."""
        if self.lio:
            cmd = 'ls /sys/kernel/config/target/iscsi 2>/dev/null | grep ^iqn'
        else:
            cmd = ("tgtadm --lld iscsi --mode target --op show | "
                   "sed -n 's/^Target [0-9]*: //p'")
        return self.run(cmd + ' || true').stdout.split()

    def drop_target(self, iqn: str) -> None:
        """Remove one live target behind Cinder's back (lost runtime state)."""
        q = shlex.quote(iqn)
        if self.lio:
            self.run(f'targetcli /iscsi delete {q}')
        else:
            self.run("tid=$(tgtadm --lld iscsi --mode target --op show | "
                     f"awk -v q={q} '$1==\"Target\" && $3==q "
                     "{sub(\":\",\"\",$2); print $2}'); "
                     'test -n "$tid" && tgtadm --lld iscsi --mode target '
                     '--op delete --force --tid "$tid"')

    def drop_exports(self) -> subprocess.CompletedProcess:
        """Remove every export, best effort.

        The LIO configuration, tgt's targets and accounts, and the driver's
        tgt conf files.
        """
        return self.run(_DROP_EXPORTS + 'true\n', check=False)

    def scrub(self) -> subprocess.CompletedProcess:
        """Back to a bare parent dataset, whatever a failed test left.

        Removes every export (drop_exports) and every dataset below the
        parent. Best effort: errors do not raise.
        """
        script = _DROP_EXPORTS + _FORGET_RECORDS + _DESTROY_CHILDREN
        return self.run(script.replace('PARENT', shlex.quote(self.parent)),
                        check=False)


_DROP_EXPORTS = r'''
if [ -d /sys/kernel/config/target/iscsi ] ||
        lsmod | grep -q '^iscsi_target_mod '; then
    targetcli clearconfig confirm=True >/dev/null 2>&1
fi
tgt() { tgtadm --lld iscsi "$@" 2>/dev/null; }
for t in $(tgt --mode target --op show | sed -n 's/^Target \([0-9]*\):.*/\1/p')
do
    tgt --mode target --op delete --force --tid "$t"
done
for a in $(tgt --mode account --op show | awk 'NR > 1 {print $1}'); do
    tgt --mode account --op delete --user "$a"
done
rm -f /etc/tgt/conf.d/cinder-zol-*
n=/sys/kernel/config/nvmet
if [ -d $n ]; then
    rm -f $n/ports/*/subsystems/* $n/subsystems/*/allowed_hosts/*
    for d in $n/subsystems/*/namespaces/*; do
        [ -d "$d" ] && echo 0 > "$d/enable" && rmdir "$d"
    done
    rmdir $n/subsystems/* $n/ports/* $n/hosts/* 2>/dev/null
fi
'''

# the root helper's export records (nvmet's boot restore reads them)
_FORGET_RECORDS = 'rm -rf /var/lib/cinder-zol-target/*\n'

_DESTROY_CHILDREN = r'''
for d in $(zfs list -H -o name -t filesystem,volume -d 1 PARENT |
           grep -vxF PARENT); do
    zfs destroy -R "$d"
done
true
'''
