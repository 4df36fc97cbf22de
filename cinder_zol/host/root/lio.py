"""LIO exports through rtslib-fb (python3-rtslib-fb), in the root helper.

Layout per volume: block backstore named after the volume on the zvol
device, with the volume's serial as its WWN (a re-created backstore keeps
the identity multipath saw); target ``<iqn>``; TPG 1 with
``generate_node_acls=0`` (only explicit ACLs) and ``authentication=1`` when
CHAP is on; a portal ``0.0.0.0:<port>`` for each port of the driver's
portals (``target_port``, and each other port a
``target_secondary_ip_addresses`` entry names: multipath; a port some
portal of the TPG already serves is left as it is); LUN 0; one NodeACL per
initiator carrying the volume's CHAP credentials. Each change ends with
``RTSRoot().save_to_file()``, which ``rtslib-fb-targetctl`` restores at
boot, portals included; they go with the target.

LIO reads the size from the block device: a resize needs nothing here.
"""

from .. import errors
from . import backend

LUN = 0
PORTAL_IP = '0.0.0.0'


def _rtslib():
    try:
        import rtslib_fb
    except ImportError:
        raise errors.Unavailable('python3-rtslib-fb is not installed on the '
                                 'storage host',
                                 hint='apt install python3-rtslib-fb')
    return rtslib_fb


class _Restore(object):
    """Undoes a change to an object that the current call did not create.

    ``_undo`` calls ``delete()`` on everything it is given.
    """

    def __init__(self, func, *args):
        self.func = func
        self.args = args

    def delete(self):
        self.func(*self.args)


class Backend(backend.Backend):

    tool = 'lioadm'
    restores_itself = True    # rtslib-fb-targetctl loads saveconfig.json

    def __init__(self, executor):
        self.executor = executor
        self.rtslib = None

    def _root(self):
        if self.rtslib is None:
            self.rtslib = _rtslib()
        # rtslib-fb caches backstore name -> index for the life of the
        # process (tcm.bs_cache) and never rereads it. The root helper is a
        # long-lived session, so a backstore removed behind its back
        # (targetcli clearconfig, a restarted target) would stay "exists"
        # forever: forget the cache, configfs is the truth.
        tcm = getattr(self.rtslib, 'tcm', None)
        cache = getattr(tcm, 'bs_cache', None)
        if isinstance(cache, dict):
            cache.clear()
        try:
            return self.rtslib.RTSRoot()
        except Exception as e:
            raise errors.Unavailable(
                'cannot open the LIO configuration', str(e),
                'Load the modules (modprobe -a target_core_mod '
                'iscsi_target_mod target_core_iblock) and mount configfs.')

    # -- lookups -----------------------------------------------------------

    @staticmethod
    def _target(root, iqn):
        # rtslib normalizes target WWNs to lower case
        for target in root.targets:
            if target.wwn.lower() == iqn.lower():
                return target
        return None

    @staticmethod
    def _storage_object(root, name):
        for so in root.storage_objects:
            if so.name == name:
                return so
        return None

    @staticmethod
    def _tpg(target):
        for tpg in target.tpgs if target else ():
            return tpg
        return None

    @staticmethod
    def _acl(tpg, initiator):
        for acl in tpg.node_acls:
            if acl.node_wwn.lower() == initiator.lower():
                return acl
        return None

    @staticmethod
    def _lun(tpg, so):
        for lun in tpg.luns:
            if lun.storage_object.name == so.name:
                return lun
        return None

    @staticmethod
    def _chap_of(tpg):
        for acl in tpg.node_acls:
            if acl.chap_userid:
                return [acl.chap_userid, acl.chap_password]
        return None

    @classmethod
    def _agreed_chap(cls, tpg, proposed):
        """The credentials of an export, as a list or None.

        Those its ACLs carry, or none when its ACLs carry none: the first
        export wins, with or without CHAP. The proposal only counts for a
        TPG without ACLs.
        """
        if any(True for _ in tpg.node_acls):
            chap = cls._chap_of(tpg)
        else:
            chap = proposed
        return list(chap) if chap else None

    @staticmethod
    def _undo(created):
        for obj in reversed(created):
            try:
                obj.delete()
            except Exception:
                pass

    def _save(self, root):
        try:
            root.save_to_file()
        except Exception as e:
            raise errors.TargetError('saving the LIO configuration failed',
                                     str(e))

    @staticmethod
    def _save_quietly(root):
        """Save after a removal that failed half way.

        The boot configuration must not bring back what is gone; the
        caller raises the first error.
        """
        try:
            root.save_to_file()
        except Exception:
            pass

    @staticmethod
    def _set_attribute(tpg, name, value, created):
        """Set a TPG attribute; a change is recorded to undo (and save)."""
        old = tpg.get_attribute(name)
        if old != value:
            tpg.set_attribute(name, value)
            created.append(_Restore(tpg.set_attribute, name, old))

    @staticmethod
    def _set_chap(acl, chap):
        acl.chap_userid, acl.chap_password = chap

    def _allow(self, tpg, lun, initiator, chap, created):
        acl = self._acl(tpg, initiator)
        if acl is None:
            acl = self.rtslib.NodeACL(tpg, initiator, mode='create')
            created.append(acl)
        if chap:
            old = [acl.chap_userid, acl.chap_password]
            if old != list(chap):
                self._set_chap(acl, chap)
                created.append(_Restore(self._set_chap, acl, old))
        if not any(m.tpg_lun.lun == lun.lun for m in acl.mapped_luns):
            created.append(self.rtslib.MappedLUN(acl, lun.lun, lun.lun))

    # -- operations ------------------------------------------------------

    def storage(self, name, iqn):
        """The devices behind the target's LUNs and the backstore ``name``.

        A removal deletes both; None when neither exists.
        """
        root = self._root()
        try:
            target = self._target(root, iqn)
            so = self._storage_object(root, name)
            if target is None and so is None:
                return None
            found = [so.udev_path] if so is not None else []
            for tpg in target.tpgs if target else ():
                found.extend(lun.storage_object.udev_path
                             for lun in tpg.luns)
            return found
        except Exception as e:
            raise errors.TargetError('reading the LIO export %s failed'
                                     % iqn, '%s: %s' % (type(e).__name__, e))

    def _wait_for_disk(self, device):
        """Until rtslib takes DEVICE for a disk (backend.wait_for_udev).

        After that BlockStorageObject fails with rtslib's own message.
        """
        backend.wait_for_udev(
            lambda: self.rtslib.utils.get_blockdev_type(device) == 0,
            self.executor)

    def export(self, name, iqn, device, chap, initiators, ports, serial):
        root = self._root()
        rts = self.rtslib
        created = []
        try:
            so = self._storage_object(root, name)
            target = self._target(root, iqn)
            tpg = self._tpg(target)
            if so is None:
                self._wait_for_disk(device)
                so = rts.BlockStorageObject(name, dev=device, wwn=serial)
                created.append(so)
            elif so.udev_path != device:
                raise errors.TargetError(
                    'LIO block backstore %s exists for %s, not %s'
                    % (name, so.udev_path, device))
            if target is None:
                target = rts.Target(rts.FabricModule('iscsi'), iqn,
                                    mode='create')
                created.append(target)
            if tpg is None:
                tpg = rts.TPG(target, 1, mode='create')
                created.append(tpg)
            # The first export wins, with or without CHAP: all agree.
            chap = self._agreed_chap(tpg, chap)
            # Only explicit per-initiator ACLs may log in.
            self._set_attribute(tpg, 'generate_node_acls', '0', created)
            self._set_attribute(tpg, 'authentication',
                                '1' if chap else '0', created)
            served = {p.port for p in tpg.network_portals}
            for port in ports:
                if port not in served:
                    created.append(rts.NetworkPortal(tpg, PORTAL_IP, port,
                                                     mode='create'))
            lun = self._lun(tpg, so)
            if lun is None:
                lun = rts.LUN(tpg, storage_object=so)
                created.append(lun)
            for initiator in initiators:
                self._allow(tpg, lun, initiator, chap, created)
            if not tpg.enable:
                tpg.enable = True
                created.append(_Restore(setattr, tpg, 'enable', False))
            if created:
                self._save(root)
            result = {'tid': tpg.tag, 'lun': lun.lun, 'chap': chap,
                      'changed': bool(created),
                      'initiators': sorted(a.node_wwn
                                           for a in tpg.node_acls)}
        except errors.HostError:
            self._undo(created)
            raise
        except Exception as e:
            self._undo(created)
            raise errors.TargetError('LIO export of %s failed' % name,
                                     '%s: %s' % (type(e).__name__, e))
        return result

    def remove(self, name, iqn):
        root = self._root()
        removed = False
        try:
            target = self._target(root, iqn)
            so = self._storage_object(root, name)
            if target is not None:
                target.delete()
                removed = True
            if so is not None:
                so.delete()
                removed = True
        except Exception as e:
            if removed:
                self._save_quietly(root)
            raise errors.TargetError('removing LIO export %s failed' % iqn,
                                     '%s: %s' % (type(e).__name__, e),
                                     'Is the device still open by '
                                     'another target?')
        if removed:
            self._save(root)
        return {'removed': removed}

    def allow(self, name, iqn, initiator, chap):
        root = self._root()
        try:
            tpg = self._tpg(self._target(root, iqn))
            so = self._storage_object(root, name)
            lun = self._lun(tpg, so) if tpg and so else None
            if lun is not None:
                chap = self._agreed_chap(tpg, chap)
        except Exception as e:
            raise errors.TargetError('reading the LIO export %s failed'
                                     % iqn, '%s: %s' % (type(e).__name__, e))
        if lun is None:
            raise errors.NotFound('target %s with the LUN of %s does not '
                                  'exist: the volume is not exported'
                                  % (iqn, name))
        created = []
        try:
            self._allow(tpg, lun, initiator, chap, created)
            if created:
                self._save(root)
            result = {'initiators': sorted(a.node_wwn
                                           for a in tpg.node_acls)}
        except Exception as e:
            self._undo(created)
            raise errors.TargetError('allowing %s on %s failed'
                                     % (initiator, iqn), str(e))
        return result

    def deny(self, name, iqn, initiators):
        root = self._root()
        wanted = None if initiators is None else \
            set(i.lower() for i in initiators)
        changed = False
        try:
            tpg = self._tpg(self._target(root, iqn))
            if tpg is None:
                return {'initiators': []}
            for acl in list(tpg.node_acls):
                if wanted is None or acl.node_wwn.lower() in wanted:
                    acl.delete()
                    changed = True
            left = sorted(a.node_wwn for a in tpg.node_acls)
        except Exception as e:
            if changed:
                self._save_quietly(root)
            raise errors.TargetError('removing initiators from LIO export '
                                     '%s failed' % iqn,
                                     '%s: %s' % (type(e).__name__, e))
        if changed:
            self._save(root)
        return {'initiators': left}

    def resize(self, name, iqn, device, serial):
        return {'changed': False}   # LIO reads the size from the device

    def show(self, name, iqn):
        root = self._root()
        try:
            target = self._target(root, iqn)
            tpg = self._tpg(target)
            so = self._storage_object(root, name)
            lun = self._lun(tpg, so) if tpg and so else None
            return {'exists': lun is not None,
                    'device': so.udev_path if so else None,
                    'initiators': sorted(a.node_wwn for a in tpg.node_acls)
                    if tpg else [],
                    'chap_user': (self._chap_of(tpg) or [None])[0]
                    if tpg else None}
        except Exception as e:
            raise errors.TargetError('reading the LIO export %s failed'
                                     % iqn, '%s: %s' % (type(e).__name__, e))

    def version(self):
        root = self._root()
        try:
            return {'helper': self.tool, 'targets': len(list(root.targets))}
        except Exception as e:
            raise errors.TargetError('reading the LIO configuration failed',
                                     '%s: %s' % (type(e).__name__, e))
