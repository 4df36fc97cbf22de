"""Functional tier: the real driver over real SSH against the lab guest.

Run through ``python -m cinder_zol_lab run -- ...`` (tox -e functional),
which boots the QEMU ZoL guest and exports CINDER_ZOL_LAB_*. Without them
every test here fails with the reason: the real-host tier is never skipped.
"""

import os
import shlex
import subprocess

from oslo_utils import units

from cinder import context
from cinder.tests.unit import test
from cinder.volume import configuration as conf

from cinder_zol import driver as driver_mod
from cinder_zol_lab import backend
from cinder_zol import options
from tests import scenarios

ENV = backend.ENV_PREFIX
GROUP = 'zol_lab'


def lab():
    """The lab guest's coordinates, or a loud failure saying why not."""
    missing = [k for k in ('HOST', 'SSH_PORT', 'KEY', 'KNOWN_HOSTS',
                           'PARENT', 'ISCSI_PORT')
               if not os.environ.get(ENV + k)]
    if missing:
        raise RuntimeError(
            'The functional tier needs the lab ZoL guest, but %s is not set. '
            'Run it with "tox -e functional" (or "python -m cinder_zol_lab '
            'run -- stestr --test-path tests/functional run"), which boots '
            'the guest.' % ', '.join(ENV + k for k in missing))
    return {k[len(ENV):].lower(): v for k, v in os.environ.items()
            if k.startswith(ENV)}


class LabTestCase(test.TestCase):
    """A driver configured exactly as an operator would, against the lab."""

    def setUp(self):
        super().setUp()
        self.lab = lab()
        self.ctxt = context.get_admin_context()
        self.parent = self.lab['parent']
        self.driver = self.make_driver()
        self.addCleanup(self.assert_host_clean)

    def make_driver(self, **overrides):
        configuration = conf.Configuration(options.ALL_OPTS,
                                           config_group=GROUP)
        drv = driver_mod.ZFSonLinuxISCSIDriver(configuration=configuration)
        settings = backend.settings(os.environ)
        settings.update(overrides)
        for key, value in settings.items():
            self.override_config(key, value, GROUP)
        drv.do_setup(self.ctxt)
        drv.check_for_setup_error()
        self.addCleanup(drv.runner.close)
        return drv

    # -- the guest, seen directly (not through the driver) ---------------

    def guest(self, script, check=True, input=None):
        """Run a shell script on the guest with the system ssh client."""
        argv = ['ssh', '-p', self.lab['ssh_port'], '-i', self.lab['key'],
                '-o', 'UserKnownHostsFile=' + self.lab['known_hosts'],
                '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes',
                '%s@%s' % (self.lab.get('user', 'root'), self.lab['host']),
                'bash -c ' + shlex.quote(script)]
        r = subprocess.run(argv, capture_output=True, text=True, input=input,
                           timeout=300)
        if check and r.returncode:
            self.fail('guest: %s -> %s: %s' % (script, r.returncode,
                                               r.stderr))
        return r.stdout

    def zfs_names(self):
        return self.guest('zfs list -H -o name -t all -r %s'
                          % shlex.quote(self.parent)).split()

    def zfs_get(self, name, prop):
        return self.guest('zfs get -H -p -o value %s %s/%s' % (
            prop, self.parent, name)).strip()

    def assert_host_clean(self):
        names = self.zfs_names()
        if names != [self.parent]:
            self.scrub()
        self.assertEqual([self.parent], names,
                         'the storage host must hold only the parent dataset')

    def scrub(self):
        """Clear exports and zvols after a failed test.

        The next test then starts clean; the failure is still reported.
        """
        self.guest(
            'targetcli clearconfig confirm=True >/dev/null 2>&1; '
            'for t in $(tgtadm --lld iscsi --mode target --op show 2>/dev/null'
            ' | sed -n "s/^Target \\([0-9]*\\):.*/\\1/p"); do '
            'tgtadm --lld iscsi --mode target --op delete --force --tid $t; '
            'done; rm -f /etc/tgt/conf.d/cinder-zol-*; '
            'for d in $(zfs list -H -o name -t volume -d 1 %s); do '
            'zfs destroy -R "$d"; done' % shlex.quote(self.parent),
            check=False)

    def assert_usable(self, name, size):
        """The zvol exists with the right size and its device reads."""
        self.assertEqual(str(size), self.zfs_get(name, 'volsize'))
        self.guest('udevadm settle; dd if=/dev/zvol/%s/%s of=/dev/null '
                   'bs=64k count=16 status=none' % (self.parent, name))

    # -- Cinder objects -------------------------------------------------

    def volume(self, size=1, **kwargs):
        return scenarios.make_volume(self.ctxt, size, **kwargs)

    def snapshot(self, vol):
        return scenarios.make_snapshot(self.ctxt, vol)

    def gib(self, n):
        return n * units.Gi
