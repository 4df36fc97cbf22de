"""e2e over NVMe-oF/TCP: Cinder's attachment API with the nvmet helper.

Mixed into ``run.E2E``; it runs in the ``--target nvmet`` pass
(e2e/all.py), where the iSCSI scenarios do not. This machine has no NVMe
initiator, so the guest is its own (nvme-cli and nvme-tcp over loopback,
on the port the driver advertises).

* 24: a multiattach volume attached through the attachment API with a
  host NQN: the connection info is os-brick's NVMe-oF format and the
  target allows that host only (another host's connect is refused); data
  written over NVMe/TCP is in the zvol; a second host's attachment is
  added and detached while the first stays connected and keeps reading;
  the last detach removes the subsystem, and the delete leaves only the
  parent dataset.
"""

import hashlib
import shlex
import sys

MiB = 2 ** 20
NVMET = '/sys/kernel/config/nvmet'
MTYPE = 'e2e-multi'
q = shlex.quote


class Scenarios:
    """Scenario 24; it uses run.E2E's CLI, wait and check helpers."""

    @property
    def _e2e(self):
        """run.py's module (``__main__`` when run as a script)."""
        return sys.modules[type(self).__module__]

    def _nvme_attach(self, volume: str, host_nqn: str, host: str) -> tuple:
        """POST /attachments with an NVMe connector; (id, connection info)."""
        r = self.api('POST', '/attachments', json={'attachment': {
            'volume_uuid': self.ids[volume],
            'connector': {'nqn': host_nqn, 'host': host,
                          'ip': '127.0.0.1', 'multipath': False}}})
        self._e2e.check(r.status_code == 200,
                        f'attachment for {host}: HTTP {r.status_code} '
                        f'{r.text[:300]}')
        att = r.json()['attachment']
        r = self.api('POST', f'/attachments/{att["id"]}/action',
                     json={'os-complete': {}})
        self._e2e.check(r.status_code == 204,
                        f'attachment-complete: HTTP {r.status_code}')
        return att['id'], att['connection_info']

    def _nvme_detach(self, att: str) -> None:
        r = self.api('DELETE', f'/attachments/{att}')
        self._e2e.check(r.status_code == 200,
                        f'attachment-delete: HTTP {r.status_code} '
                        f'{r.text[:300]}')

    def _nvme_connect(self, info: dict, host_nqn: str, check=True):
        address, port, transport = info['portals'][0]
        return self.guest.run(
            f'nvme connect -t {q(transport)} -a {q(address)} -s {q(port)} '
            f'-n {q(info["target_nqn"])} --hostnqn {q(host_nqn)}',
            check=check)

    def _nvme_device(self, vol_uuid: str) -> str:
        """The namespace's block device in the guest, found by its uuid."""
        # nvmeXcYnZ are native multipath's hidden per-path nodes
        return self.guest.run(
            'for i in $(seq 1 100); do for d in /sys/block/nvme*n*; do '
            'case ${d##*/} in nvme*c*) continue;; esac; '
            f'[ "$(cat $d/uuid 2>/dev/null)" = {q(vol_uuid)} ] && '
            'echo /dev/${d##*/} && exit 0; done; sleep 0.1; done; '
            f'echo "no namespace with uuid {vol_uuid}" >&2; exit 1'
        ).stdout.strip()

    def _nvmet_allowed(self, nqn: str) -> list[str]:
        return self.guest.run(
            f'ls {NVMET}/subsystems/{q(nqn)}/allowed_hosts 2>/dev/null '
            '|| true').stdout.split()

    def s24_nvme_attachments(self):
        g = self.guest
        check = self._e2e.check
        say = self._e2e.say
        self._ensure_type(MTYPE, 'multiattach=<is> True')
        self.create('n24-vol', 1, '--volume-type', MTYPE)
        vid = self.wait('volumes', 'n24-vol', 'available')['id']
        g.run('modprobe nvme-tcp')
        host_a, host_b, stranger = (
            g.run('nvme gen-hostnqn').stdout.strip() for _ in range(3))
        try:
            att_a, info = self._nvme_attach('n24-vol', host_a, 'host-a')
            say(f'      connection info: {info}')
            check(info.get('driver_volume_type') == 'nvmeof',
                  f'not NVMe-oF: {info}')
            nqn = info['target_nqn']
            check(info.get('vol_uuid') == vid and info.get('host_nqn') ==
                  host_a and info['portals'][0][2] == 'tcp',
                  f'connection info: {info}')
            check(self._nvmet_allowed(nqn) == [host_a],
                  f'allowed hosts: {self._nvmet_allowed(nqn)}')
            refused = self._nvme_connect(info, stranger, check=False)
            check(refused.returncode != 0,
                  'a host no attachment named could connect')
            self._nvme_connect(info, host_a)
            dev = self._nvme_device(vid)
            data = bytes(range(256)) * (4 * MiB // 256)
            g.run(f'dd of={dev} bs=1M oflag=direct status=none',
                  input=data, text=False)
            zvol = f'/dev/zvol/{g.parent}/volume-{vid}'
            digest = hashlib.md5(data).hexdigest()
            for where in (dev, zvol):
                got = g.run(f'head -c {4 * MiB} {where} | md5sum').stdout
                check(got.split()[0] == digest,
                      f'{where}: not the data written over NVMe/TCP')
            say(f'      4 MiB written over NVMe/TCP ({dev}) read back '
                'there and from the zvol')

            att_b, info_b = self._nvme_attach('n24-vol', host_b, 'host-b')
            check(info_b['target_nqn'] == nqn, f'second export: {info_b}')
            check(sorted(self._nvmet_allowed(nqn)) ==
                  sorted([host_a, host_b]),
                  f'allowed hosts: {self._nvmet_allowed(nqn)}')
            self._nvme_detach(att_b)
            check(self._nvmet_allowed(nqn) == [host_a],
                  'detaching host-b changed host-a\'s access: '
                  f'{self._nvmet_allowed(nqn)}')
            got = g.run(f'dd if={dev} bs=1M count=4 iflag=direct '
                        'status=none | md5sum').stdout
            check(got.split()[0] == digest,
                  'host-a lost its data after host-b detached')
            say('      host-b attached and detached; host-a still reads')
        finally:
            g.run('nvme disconnect-all >/dev/null 2>&1; true', check=False)
        self._nvme_detach(att_a)
        self.wait('volumes', 'n24-vol', 'available')
        left = g.run(f'ls {NVMET}/subsystems').stdout.split()
        check(nqn not in left, f'subsystem left after the last detach: '
              f'{left}')
        self.cinder('delete', 'n24-vol')
        self.wait_gone('volumes', 'n24-vol')
        self.expect_only_parent()


SCENARIOS = [
    (24, 'NVMe-oF/TCP through the attachment API (nvmet)',
     's24_nvme_attachments', ()),
]
