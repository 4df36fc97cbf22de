"""The table of target helpers (cinder_zol.host.helpers): what the
installer finds on a host, and the ports it opens for them."""

import io
import subprocess
from unittest import mock

import testtools

from cinder_zol.host import helpers


class HelpersTestCase(testtools.TestCase):

    def test_default_ports_once_each(self):
        self.assertEqual([3260], helpers.default_ports(['tgtadm', 'lioadm']))
        self.assertEqual([3260, 4420], helpers.default_ports(helpers.NAMES))
        self.assertEqual([], helpers.default_ports([]))

    def test_program_helper_is_found_on_the_path(self):
        with mock.patch.object(helpers.shutil, 'which',
                               return_value=None) as which:
            self.assertFalse(helpers.is_installed('tgtadm'))
        which.assert_called_once_with('tgtadm')

    def test_python_helper_is_found_by_import(self):
        with mock.patch.object(helpers.importlib, 'import_module',
                               side_effect=ImportError('no')):
            self.assertFalse(helpers.is_installed('lioadm'))
        with mock.patch.object(helpers.importlib, 'import_module'):
            self.assertTrue(helpers.is_installed('lioadm'))

    def test_kernel_module_helper_without_modinfo_is_not_installed(self):
        with mock.patch.object(helpers.subprocess, 'run',
                               side_effect=FileNotFoundError('modinfo')):
            self.assertFalse(helpers.is_installed('nvmet'))
        done = subprocess.CompletedProcess(['modinfo'], 0)
        with mock.patch.object(helpers.subprocess, 'run', return_value=done):
            self.assertTrue(helpers.is_installed('nvmet'))

    def test_main_prints_what_the_installer_reads(self):
        with mock.patch.object(helpers, 'is_installed',
                               side_effect=lambda name: name != 'lioadm'), \
                mock.patch('sys.stdout', new_callable=io.StringIO) as out:
            self.assertEqual(0, helpers.main(['installed']))
            self.assertEqual(0, helpers.main(['ports', 'tgtadm', 'nvmet']))
        self.assertEqual('tgtadm nvmet\n3260 4420\n', out.getvalue())
        self.assertEqual(2, helpers.main([]))
