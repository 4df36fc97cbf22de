"""A userspace iSCSI initiator on this machine: qemu-io's iscsi driver.

The machine has no kernel iSCSI initiator, so the lab reads and writes
exported LUNs with ``qemu-io`` (Debian qemu-utils + qemu-block-extra). The
CHAP secret goes through a 0600 file given to ``--object secret``, never
the command line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile


class LoginRefused(RuntimeError):
    """The target refused the session (CHAP, ACL, unknown IQN)."""


@dataclasses.dataclass
class Session:
    """Where and as whom to log in: built from Cinder's connection info."""

    portal: str            # '127.0.0.1:3260'
    iqn: str
    lun: int
    initiator: str
    user: str | None = None
    password: str | None = None

    @classmethod
    def from_connection_info(cls, info: dict, initiator: str,
                             **overrides) -> 'Session':
        data = info['data']
        kwargs = dict(portal=data['target_portal'], iqn=data['target_iqn'],
                      lun=int(data['target_lun']), initiator=initiator,
                      user=data.get('auth_username'),
                      password=data.get('auth_password'))
        kwargs.update(overrides)
        return cls(**kwargs)

    def qemu_io(self, *commands: str, timeout: float = 600) -> str:
        """Run qemu-io commands on the LUN; return stdout."""
        opts = ['driver=iscsi', 'transport=tcp', 'portal=' + self.portal,
                'target=' + self.iqn, 'lun=%d' % self.lun,
                'initiator-name=' + self.initiator]
        argv = ['qemu-io']
        with tempfile.TemporaryDirectory() as tmp:
            if self.user:
                secret = os.path.join(tmp, 'secret')
                fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, 'w') as f:
                    f.write(self.password or '')
                argv += ['--object', 'secret,id=chap,file=' + secret]
                opts += ['user=' + self.user, 'password-secret=chap']
            argv += ['--image-opts', ','.join(opts)]
            for c in commands:
                argv += ['-c', c]
            r = subprocess.run(argv, capture_output=True, text=True,
                               timeout=timeout)
        text = r.stdout + r.stderr
        if 'Pattern verification failed' in text:
            raise AssertionError(text.strip())
        if r.returncode or 'Could not open' in text:
            raise LoginRefused(text.strip() or 'qemu-io exit %d'
                               % r.returncode)
        return r.stdout

    def write_pattern(self, byte: int, length: int, offset: int = 0) -> None:
        self.qemu_io('write -P 0x%02x %d %d' % (byte, offset, length))

    def verify_pattern(self, byte: int, length: int, offset: int = 0) -> None:
        """Raise AssertionError unless the range holds ``byte`` throughout."""
        self.qemu_io('read -P 0x%02x %d %d' % (byte, offset, length))

    def size(self) -> int:
        out = self.qemu_io('length')
        m = re.search(r'(\d+(?:\.\d+)?)\s*([KMGT]i?B?)?', out)
        if not m:
            raise RuntimeError('cannot parse qemu-io length: %r' % out)
        units = {'K': 2 ** 10, 'M': 2 ** 20, 'G': 2 ** 30, 'T': 2 ** 40}
        factor = units.get((m.group(2) or ' ')[0], 1)
        return int(float(m.group(1)) * factor)
