"""Functional tier: the real driver over real SSH against the lab guest.

Run through ``python -m cinder_zol_lab run -- ...`` (tox -e functional),
which boots the QEMU ZoL guest and exports CINDER_ZOL_LAB_*. Without them
every test here fails with the reason: the real-host tier is never skipped.
"""

import dataclasses

from oslo_utils import units

from cinder import context
from cinder.tests.unit import test
from cinder.volume import configuration as conf

from cinder_zol import driver as driver_mod
from cinder_zol import options
from cinder_zol_lab import backend
from cinder_zol_lab import shell
from tests import scenarios

GROUP = backend.NAME


def lab():
    """The lab guest's GuestShell, or a loud failure saying why not."""
    try:
        return shell.GuestShell.from_env()
    except shell.LabError as exc:
        raise RuntimeError(
            'The functional tier needs the lab ZoL guest, but %s. '
            'Run it with "tox -e functional" (or "python -m cinder_zol_lab '
            'run -- stestr --test-path tests/functional run"), which boots '
            'the guest.' % exc)


class LabTestCase(test.TestCase):
    """A driver configured exactly as an operator would, against the lab."""

    def setUp(self):
        super().setUp()
        self.shell = lab()
        # the guest's coordinates by field name: parent, pool, mode, ...
        self.lab = dataclasses.asdict(self.shell)
        self.ctxt = context.get_admin_context()
        self.parent = self.lab['parent']
        self.driver = self.make_driver()
        self.addCleanup(self.assert_host_clean)

    def make_driver(self, **overrides):
        configuration = conf.Configuration(options.ALL_OPTS,
                                           config_group=GROUP)
        drv = driver_mod.ZFSonLinuxISCSIDriver(configuration=configuration)
        settings = backend.settings(self.shell)
        settings.update(overrides)
        for key, value in settings.items():
            self.override_config(key, value, GROUP)
        drv.do_setup(self.ctxt)
        drv.check_for_setup_error()
        self.addCleanup(drv.runner.close)
        return drv

    # -- the guest, seen directly (not through the driver) ---------------

    def guest(self, script, check=True, input=None):
        """Run a shell script on the guest as root; return its stdout."""
        r = self.shell.run(script, input=input, check=False)
        if check and r.returncode:
            self.fail('guest: %s -> %s: %s' % (script, r.returncode,
                                               r.stderr))
        return r.stdout

    def zfs_names(self):
        return self.shell.zfs_names()

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
        self.shell.scrub()

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
