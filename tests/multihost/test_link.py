"""Several lab guests reach each other over the lab's private link.

Run through ``python -m cinder_zol_lab run --hosts 2 -- ...`` (tox -e
hosts). Two storage hosts as two backends, and a replication pair, stand
on this: each guest has its address on the link, reaches the other's sshd
there, and a zfs send stream crosses it intact. Without two guests every
test here fails with the reason; it is never skipped.
"""

import shlex
import time

import testtools

from cinder_zol_lab import shell

MiB = 2 ** 20
SIZE = 32 * MiB


def guests():
    try:
        found = shell.GuestShell.all_from_env()
    except shell.LabError as exc:
        found, why = [], str(exc)
    else:
        why = 'only %d guest(s) booted' % len(found)
    if len(found) < 2 or not all(g.link_address for g in found):
        raise RuntimeError(
            'The multi-host tests need two lab guests on the private link, '
            'but %s. Run them with "tox -e hosts" (python -m cinder_zol_lab '
            'run --hosts 2 -- stestr --test-path tests/multihost run).' % why)
    return found


class LinkTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.a, self.b = guests()[:2]

    def test_each_guest_has_its_address_on_the_link(self):
        for g in (self.a, self.b):
            out = g.run(['ip', '-4', '-o', 'addr', 'show']).stdout
            self.assertIn(' %s/' % g.link_address, out)
        self.assertNotEqual(self.a.link_address, self.b.link_address)

    def test_sshd_of_the_other_guest_answers_over_the_link(self):
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            r = src.run("timeout 10 bash -c 'exec 3<>/dev/tcp/%s/22 && "
                        "head -c 7 <&3'" % dst.link_address, check=False)
            self.assertEqual(0, r.returncode, r.stderr)
            self.assertEqual('SSH-2.0', r.stdout)

    def test_zfs_stream_crosses_the_link_intact(self):
        """What replication will do: send on one host, receive on the other.

        root on A logs in to B over the link with the lab's key, checking
        B's real host key (as the driver checks the storage host's).
        """
        src = '%s/lab-link-src' % self.a.pool
        dst = '%s/lab-link-dst' % self.b.pool
        key = '/root/.ssh/lab-link'
        known = '/root/.ssh/lab-link-known'
        self.addCleanup(self.a.run, ['zfs', 'destroy', '-r', src],
                        check=False)
        self.addCleanup(self.b.run, ['zfs', 'destroy', '-r', dst],
                        check=False)
        self.addCleanup(self.a.run, ['rm', '-f', key, known], check=False)
        host_key = self._host_key(self.b)
        self.a.run('umask 077; cat > %s' % key,
                   input=self.a.key.read_bytes())
        self.a.run('cat > %s' % known,
                   input='%s %s\n' % (self.b.link_address, host_key))
        self.a.run(['zfs', 'create', '-V', str(SIZE), src])
        device = self.a.wait_for_path('/dev/zvol/' + src)
        self.a.run('head -c %d /dev/urandom | dd of=%s bs=1M oflag=direct '
                   'status=none' % (SIZE, device))
        self.a.run(['zfs', 'snapshot', src + '@s'])
        ssh = ('ssh -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s '
               '-o StrictHostKeyChecking=yes -o BatchMode=yes root@%s'
               % (key, known, self.b.link_address))
        t0 = time.monotonic()
        self.a.run('set -o pipefail; zfs send %s@s | %s %s' % (
            src, ssh, shlex.quote('zfs recv ' + dst)), timeout=600)
        dt = time.monotonic() - t0
        print('zfs send/recv of %d MiB over the link: %.1fs (%.1f MiB/s)'
              % (SIZE // MiB, dt, SIZE / MiB / dt))
        self.assertEqual(self.a.md5(src, SIZE), self.b.md5(dst, SIZE))

    def _host_key(self, g):
        """The guest's host key, as the lab pinned it (type and key)."""
        line = g.known_hosts.read_text().split('\n')[0].split()
        return ' '.join(line[1:3])
