"""The target helpers: the one table both ends and the installer read.

For each helper (``zol_target_helper``, host.conf's ``target_helpers``):
the protocol and the driver's class for it (:mod:`cinder_zol.targets`),
the root helper's backend module (:mod:`.root`), what shows it is
installed (setup-storage-host.sh asks :func:`main`), the TCP port its
targets listen on by default, and a line for the option's help. Adding a
helper for a known protocol is one entry here and one backend module in
``root/``; a new protocol adds its driver class in ``cinder_zol/targets/``
(the README's "How it is built" says what else may change).
"""

import collections
import importlib
import shutil
import subprocess

Helper = collections.namedtuple(
    'Helper', 'name protocol target_class backend detect port what')

HELPERS = collections.OrderedDict((h.name, h) for h in (
    Helper('tgtadm', 'iscsi', 'ISCSITarget', 'tgt',
           ('program', 'tgtadm'), 3260,
           'iSCSI through the Linux SCSI target framework (tgtd), one '
           'config file per volume in /etc/tgt/conf.d'),
    Helper('lioadm', 'iscsi', 'ISCSITarget', 'lio',
           ('python', 'rtslib_fb'), 3260,
           'iSCSI through the LIO kernel target (rtslib-fb), saved '
           'with saveconfig'),
    Helper('nvmet', 'nvme', 'NVMeTCPTarget', 'nvmet',
           ('kmod', 'nvmet-tcp'), 4420,
           'NVMe-oF over TCP through the kernel nvmet target '
           '(configfs); needs target_protocol = nvmet_tcp'),
))
NAMES = tuple(HELPERS)


def is_installed(helper):
    """Whether this host has what ``helper`` needs (its ``detect``)."""
    how, what = HELPERS[helper].detect
    if how == 'program':
        return shutil.which(what) is not None
    if how == 'python':
        try:
            importlib.import_module(what)
        except Exception:
            return False
        return True
    if how == 'kmod':
        try:
            return subprocess.run(['modinfo', what],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0
        except OSError:     # no modinfo: no modules either
            return False
    raise AssertionError(how)


def installed():
    """The helpers installed here, in table order."""
    return [name for name in NAMES if is_installed(name)]


def default_ports(helpers):
    """The ports targets of ``helpers`` listen on by default, sorted."""
    return sorted({HELPERS[name].port for name in helpers})


def main(argv):
    """``installed``: the helpers here; ``ports H...``: their ports."""
    if argv[:1] == ['installed']:
        print(' '.join(installed()))
    elif argv[:1] == ['ports']:
        print(' '.join(map(str, default_ports(argv[1:]))))
    else:
        return 2
    return 0
