"""An nvmet configfs tree in a temporary directory.

What the kernel does on its own is imitated where the backend depends on
it: a new subsystem, namespace or port comes with its attributes and
default groups, rmdir takes them away again (and refuses an object that
still holds user-made children), a namespace's identity cannot change while
it is enabled, and a port's address cannot change while a subsystem is
linked to it. Every change the backend makes still passes its grammar.
"""

import errno
import os
import shutil
import tempfile

from cinder_zol.host import grammar
from cinder_zol.host.root import nvmet

DEFAULTS = {
    'subsystems': ({'attr_allow_any_host': '1', 'attr_serial': 'abc'},
                   ('allowed_hosts', 'namespaces')),
    'namespaces': ({'device_path': '', 'device_uuid': '', 'device_nguid': '',
                    'enable': '0', 'revalidate_size': ''}, ()),
    'ports': ({'addr_trtype': '', 'addr_adrfam': '', 'addr_traddr': '',
               'addr_trsvcid': ''}, ('subsystems',)),
    'hosts': ({'dhchap_key': ''}, ()),
}


class FakeNvmet(nvmet.Backend):

    def __init__(self, executor=None, revalidate=True):
        self.tmp = tempfile.mkdtemp(prefix='fake-nvmet-')
        root = os.path.join(self.tmp, 'nvmet')
        modules = os.path.join(self.tmp, 'module')
        for d in ('subsystems', 'ports', 'hosts'):
            os.makedirs(os.path.join(root, d))
        for m in ('nvmet', 'nvmet_tcp'):
            os.makedirs(os.path.join(modules, m))
        super().__init__(executor, root=root, module_dir=modules)
        self.revalidate = revalidate
        # (relative path, errno[, times]) of a failing write: every time,
        # or its first ``times`` writes
        self.fail_on = None

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def _kind(rel):
        return rel.split('/')[-2]

    def _mkdir(self, rel):
        super()._mkdir(rel)
        attrs, groups = DEFAULTS[self._kind(rel)]
        for name, value in attrs.items():
            if name == 'revalidate_size' and not self.revalidate:
                continue
            with open(os.path.join(self._path(rel), name), 'w') as f:
                f.write(value)
        for name in groups:
            os.mkdir(os.path.join(self._path(rel), name))

    def _rmdir(self, rel):
        grammar.check_nvmet('rmdir', rel)
        path = self._path(rel)
        attrs, groups = DEFAULTS[self._kind(rel)]
        for name in groups:
            if os.listdir(os.path.join(path, name)):
                raise OSError(errno.ENOTEMPTY, 'Directory not empty')
        if rel.startswith('hosts/') and self._host_used(rel.split('/')[1]):
            raise OSError(errno.EBUSY, 'Device or resource busy')
        if self._kind(rel) == 'namespaces' and self._read(rel + '/enable') \
                == '1':
            raise OSError(errno.EBUSY, 'Device or resource busy')
        for name in groups:
            os.rmdir(os.path.join(path, name))
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)

    def _write(self, rel, value):
        if self.fail_on and self.fail_on[0] == rel and (
                len(self.fail_on) < 3 or self.fail_on[2] > 0):
            grammar.check_nvmet('write', rel, value)
            if len(self.fail_on) == 3:
                self.fail_on = self.fail_on[:2] + (self.fail_on[2] - 1,)
            raise OSError(self.fail_on[1], os.strerror(self.fail_on[1]), rel)
        parent, attr = rel.rsplit('/', 1)
        if attr in ('device_path', 'device_uuid', 'device_nguid') and \
                self._read(parent + '/enable') == '1':
            raise OSError(errno.EBUSY, 'Device or resource busy')
        if attr.startswith('addr_') and self._list(parent + '/subsystems'):
            raise OSError(errno.EACCES, 'Permission denied')
        if not os.path.exists(self._path(rel)):
            raise OSError(errno.ENOENT, 'No such file or directory')
        super()._write(rel, value)

    # -- inspection -------------------------------------------------------

    def tree(self):
        """Every user-made object and link, relative to the root."""
        found = []
        for top in ('subsystems', 'ports', 'hosts'):
            for dirpath, dirnames, filenames in os.walk(self._path(top)):
                rel = os.path.relpath(dirpath, self.root)
                for name in dirnames + filenames:
                    path = os.path.join(dirpath, name)
                    if os.path.islink(path):
                        found.append('%s/%s -> %s' % (
                            rel, name,
                            os.path.relpath(os.readlink(path), self.root)))
                    elif os.path.isdir(path) and not os.path.islink(path) \
                            and name not in ('allowed_hosts', 'namespaces',
                                             'subsystems'):
                        found.append('%s/%s' % (rel, name))
                dirnames[:] = [d for d in dirnames
                               if not os.path.islink(os.path.join(dirpath,
                                                                  d))]
        return sorted(found)

    def attr(self, rel):
        return self._read(rel)
