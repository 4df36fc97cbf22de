"""NVMe-oF/TCP exports through the kernel nvmet target, in the root helper.

Plain configfs (no nvmetcli): every path and value the backend touches
under ``/sys/kernel/config/nvmet`` goes through
:func:`cinder_zol.host.grammar.check_nvmet` first. Layout per volume:

* ``subsystems/<nqn>`` with ``attr_allow_any_host = 0`` (written before
  anything can connect; never 1);
* namespace 1 on ``/dev/zvol/<parent>/<name>`` whose ``device_uuid`` and
  ``device_nguid`` are the volume's serial (its name_id), so a re-created
  export, after a reboot too, shows the initiator the same identity;
* ``hosts/<host nqn>`` linked from the subsystem's ``allowed_hosts``, one
  per attached host;
* one TCP port ``0.0.0.0:<port>`` (``ports/<id>``, shared by every
  subsystem on that port) linked to the subsystem; a port left without
  subsystems is removed, as is a host no subsystem allows any more.

Removing the subsystem's port link ends its controllers. Removing a host
from ``allowed_hosts`` stops new connections only: nvmet has no way to end
one host's live controller, so a host that is denied while connected keeps
its controller until it disconnects (os-brick disconnects before Cinder
terminates the connection).

Online extend: ``revalidate_size`` (Linux 5.11+) makes nvmet re-read the
zvol's size and tell the hosts (an asynchronous event, they rescan).

nvmet saves nothing: the root helper records each export
(:mod:`cinder_zol.host.root.records`) and re-creates them at boot
(``cinder-zol-target restore``, same NQN, uuid and nguid); ``ensure_export``
does the same when cinder-volume starts.
"""

import errno
import os

from .. import errors
from .. import grammar
from . import backend

ROOT = '/sys/kernel/config/nvmet'
MODULES = ('nvmet', 'nvmet-tcp')
NSID = 1
PORTAL_IP = '0.0.0.0'
MAX_PORT_ID = 65535


def _error(what, e):
    where = getattr(e, 'filename', None)
    return errors.TargetError(what, '%s: %s%s' % (
        type(e).__name__, getattr(e, 'strerror', None) or e,
        ' (%s)' % where if where else ''))


class Backend(backend.Backend):

    tool = 'nvmet'
    restores_itself = False   # .records and exports.restore() bring it back

    def __init__(self, executor, root=ROOT, module_dir='/sys/module'):
        self.executor = executor
        self.root = root
        self.module_dir = module_dir

    # -- configfs, checked ---------------------------------------------------

    def _path(self, rel):
        return os.path.join(self.root, rel)

    def _exists(self, rel):
        return os.path.lexists(self._path(rel))

    def _list(self, rel):
        try:
            return sorted(os.listdir(self._path(rel)))
        except FileNotFoundError:
            return []

    def _read(self, rel):
        with open(self._path(rel)) as f:
            return f.read().strip()

    def _mkdir(self, rel):
        grammar.check_nvmet('mkdir', rel)
        os.mkdir(self._path(rel))

    def _rmdir(self, rel):
        grammar.check_nvmet('rmdir', rel)
        os.rmdir(self._path(rel))

    def _write(self, rel, value):
        grammar.check_nvmet('write', rel, value)
        try:
            with open(self._path(rel), 'w') as f:
                f.write(value)
        except OSError as e:
            # the kernel's refusal comes from the write: name the attribute
            e.filename = e.filename or rel
            raise

    def _enable(self, ns):
        """Enable a namespace: the kernel opens its zvol now.

        Right after the zvol appeared that open may fail (ENOENT, ENXIO)
        though its link is there: retried while udev catches up.
        """
        refused = []

        def enabled():
            try:
                self._write(ns + '/enable', '1')
                return True
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENXIO):
                    raise
                refused[:] = [e]
                return False
        if not backend.wait_for_udev(enabled, self.executor):
            raise refused[0]

    def _link(self, rel, target_rel):
        grammar.check_nvmet('link', rel, target_rel)
        os.symlink(self._path(target_rel), self._path(rel))

    def _unlink(self, rel):
        grammar.check_nvmet('unlink', rel)
        os.unlink(self._path(rel))

    # -- modules ---------------------------------------------------------

    def _ready(self):
        """Load nvmet and nvmet-tcp unless both are there."""
        loaded = all(os.path.isdir(os.path.join(self.module_dir,
                                                m.replace('-', '_')))
                     for m in MODULES)
        if loaded and os.path.isdir(self.root):
            return
        r = self.executor.run(['modprobe', '-a'] + list(MODULES))
        if r.returncode != 0 or not os.path.isdir(self.root):
            raise errors.Unavailable(
                'the kernel NVMe target (nvmet, nvmet-tcp) is not available',
                (r.stderr or '').strip() or '%s is missing' % self.root,
                'Install a kernel with CONFIG_NVME_TARGET_TCP (modinfo '
                'nvmet-tcp) and mount configfs on /sys/kernel/config.')

    # -- lookups -----------------------------------------------------------

    @staticmethod
    def _subsys(nqn):
        return 'subsystems/%s' % nqn

    def _ns(self, nqn):
        return '%s/namespaces/%d' % (self._subsys(nqn), NSID)

    def _allowed(self, nqn):
        return self._list('%s/allowed_hosts' % self._subsys(nqn))

    def _port_id(self, port):
        """id of our TCP port on ``port``, or None."""
        wanted = ('tcp', PORTAL_IP, str(port))
        for pid in self._list('ports'):
            base = 'ports/%s/' % pid
            try:
                have = tuple(self._read(base + a) for a in
                             ('addr_trtype', 'addr_traddr', 'addr_trsvcid'))
            except OSError:
                continue
            if have == wanted:
                return int(pid)
        return None

    def _ports_of(self, nqn):
        return [pid for pid in self._list('ports')
                if self._exists('ports/%s/subsystems/%s' % (pid, nqn))]

    def _host_used(self, host):
        return any(self._exists('subsystems/%s/allowed_hosts/%s' % (s, host))
                   for s in self._list('subsystems'))

    # -- building blocks (each records what to undo) -----------------------

    def _add_port(self, port, created):
        pid = self._port_id(port)
        if pid is not None:
            return pid
        used = {int(p) for p in self._list('ports') if p.isdigit()}
        pid = next(i for i in range(1, MAX_PORT_ID + 1) if i not in used)
        base = 'ports/%d' % pid
        self._mkdir(base)
        created.append(lambda: self._rmdir(base))
        for attr, value in (('addr_trtype', 'tcp'), ('addr_adrfam', 'ipv4'),
                            ('addr_traddr', PORTAL_IP),
                            ('addr_trsvcid', str(port))):
            self._write('%s/%s' % (base, attr), value)
        return pid

    def _allow(self, nqn, host, created):
        link = '%s/allowed_hosts/%s' % (self._subsys(nqn), host)
        if self._exists(link):
            return False
        if not self._exists('hosts/%s' % host):
            self._mkdir('hosts/%s' % host)
            created.append(lambda: self._rmdir('hosts/%s' % host))
        self._link(link, 'hosts/%s' % host)
        created.append(lambda: self._unlink(link))
        return True

    def _drop_hosts(self, nqn, hosts):
        for host in hosts:
            self._unlink('%s/allowed_hosts/%s' % (self._subsys(nqn), host))
            if not self._host_used(host):
                self._rmdir('hosts/%s' % host)

    @staticmethod
    def _undo(created):
        for func in reversed(created):
            try:
                func()
            except (OSError, errors.HostError):
                pass

    # -- operations ------------------------------------------------------

    def storage(self, name, nqn):
        """The device of each namespace that has one.

        None when there is no such subsystem.
        """
        subsys = self._subsys(nqn)
        if not self._exists(subsys):
            return None
        try:
            paths = [self._read('%s/namespaces/%s/device_path'
                                % (subsys, nsid))
                     for nsid in self._list(subsys + '/namespaces')]
        except OSError as e:
            raise _error('reading the nvmet export %s failed' % nqn, e)
        return [p for p in paths if p]

    def export(self, name, nqn, device, chap, initiators, ports, serial):
        if chap:
            raise errors.Invalid('nvmet export of %s failed' % name,
                                 'NVMe/TCP exports take no CHAP credentials')
        if len(ports) != 1:
            raise errors.Invalid('nvmet export of %s failed' % name,
                                 'nvmet listens on one port (target_port), '
                                 'not %s' % ports)
        port = ports[0]
        grammar.check_nvmet('write', self._ns(nqn) + '/device_uuid', serial)
        self._ready()
        created = []
        subsys, ns = self._subsys(nqn), self._ns(nqn)
        try:
            if not self._exists(subsys):
                self._mkdir(subsys)
                created.append(lambda: self._rmdir(subsys))
            # only the hosts in allowed_hosts, before anything can connect
            if self._read(subsys + '/attr_allow_any_host') != '0':
                self._write(subsys + '/attr_allow_any_host', '0')
            if not self._exists(ns):
                self._mkdir(ns)
                created.append(lambda: self._rmdir(ns))
            enabled = self._read(ns + '/enable') == '1'
            current = self._read(ns + '/device_path')
            if enabled and current != device:
                raise errors.TargetError(
                    'nvmet namespace %s/%d is on %s, not %s'
                    % (nqn, NSID, current, device))
            if not enabled:
                self._write(ns + '/device_path', device)
                self._write(ns + '/device_uuid', serial)
                self._write(ns + '/device_nguid', serial)
                self._enable(ns)
                created.append(lambda: self._write(ns + '/enable', '0'))
            for host in initiators:
                self._allow(nqn, host, created)
            pid = self._add_port(port, created)
            link = 'ports/%d/subsystems/%s' % (pid, nqn)
            if not self._exists(link):
                self._link(link, subsys)
                created.append(lambda: self._unlink(link))
            result = {'port_id': pid, 'nsid': NSID, 'chap': None,
                      'changed': bool(created),
                      'initiators': self._allowed(nqn)}
        except errors.HostError:
            self._undo(created)
            raise
        except OSError as e:
            self._undo(created)
            raise _error('nvmet export of %s failed' % name, e)
        return result

    def remove(self, name, nqn):
        subsys = self._subsys(nqn)
        if not self._exists(subsys):
            return {'removed': False}
        try:
            for pid in self._ports_of(nqn):
                # ends the subsystem's controllers on that port
                self._unlink('ports/%s/subsystems/%s' % (pid, nqn))
                if not self._list('ports/%s/subsystems' % pid):
                    self._rmdir('ports/%s' % pid)
            self._drop_hosts(nqn, self._allowed(nqn))
            for nsid in self._list(subsys + '/namespaces'):
                ns = '%s/namespaces/%s' % (subsys, nsid)
                self._write(ns + '/enable', '0')
                self._rmdir(ns)
            self._rmdir(subsys)
        except OSError as e:
            raise _error('removing nvmet export %s failed' % nqn, e)
        return {'removed': True}

    def allow(self, name, nqn, initiator, chap):
        if not self._exists(self._ns(nqn)):
            raise errors.NotFound('nvmet subsystem %s with the namespace of '
                                  '%s does not exist: the volume is not '
                                  'exported' % (nqn, name))
        created = []
        try:
            self._allow(nqn, initiator, created)
            return {'initiators': self._allowed(nqn)}
        except OSError as e:
            self._undo(created)
            raise _error('allowing %s on %s failed' % (initiator, nqn), e)

    def deny(self, name, nqn, initiators):
        if not self._exists(self._subsys(nqn)):
            return {'initiators': []}
        allowed = self._allowed(nqn)
        gone = allowed if initiators is None else \
            [h for h in allowed if h in initiators]
        try:
            self._drop_hosts(nqn, gone)
            return {'initiators': self._allowed(nqn)}
        except OSError as e:
            raise _error('removing hosts from nvmet export %s failed'
                         % nqn, e)

    def resize(self, name, nqn, device, serial):
        attr = self._ns(nqn) + '/revalidate_size'
        if not self._exists(self._ns(nqn)):
            return {'changed': False}
        if not self._exists(attr):
            # older kernels: the size is re-read at the host's next
            # Identify (nvme ns-rescan), without an event
            return {'changed': False, 'revalidate': False}
        try:
            self._write(attr, '1')
        except OSError as e:
            raise _error('nvmet revalidate of %s failed' % nqn, e)
        return {'changed': True, 'revalidate': True}

    def show(self, name, nqn):
        ns = self._ns(nqn)
        try:
            exists = self._exists(ns)
            return {'exists': exists,
                    'device': self._read(ns + '/device_path')
                    if exists else None,
                    'uuid': self._read(ns + '/device_uuid')
                    if exists else None,
                    'initiators': self._allowed(nqn),
                    'ports': self._ports_of(nqn),
                    'chap_user': None}
        except OSError as e:
            raise _error('reading the nvmet export %s failed' % nqn, e)

    def version(self):
        self._ready()
        return {'helper': self.tool, 'targets': len(self._list('subsystems'))}
