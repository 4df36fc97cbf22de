"""Program run on the storage host by ``python3 -`` for LIO exports.

cinder-zol never imports this module: it sends its source text on stdin,
followed by one line ``main(json.loads('<parameters>'))`` whose argument is a
Python string literal (``repr`` of the JSON), so no parameter is ever
interpolated into code. It needs only python3 and python3-rtslib-fb.

Output: one JSON object on stdout. Errors: a message on stderr and exit
status 1 (3 when the device node never appeared, 4 when the target to change
does not exist). Every change is rolled back if a later step fails, and the
configuration is saved (``RTSRoot().save_to_file()``) after every change so
it is restored at boot by rtslib-fb-targetctl / target.service.
"""

import json
import os
import stat
import sys
import time

EXIT_DEVICE_MISSING = 3
EXIT_NOT_FOUND = 4


class Failure(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def _rtslib():
    try:
        import rtslib_fb
    except ImportError:
        raise Failure('python3-rtslib-fb is not installed on the storage '
                      'host (apt install python3-rtslib-fb)')
    return rtslib_fb


def _root(rtslib_fb):
    try:
        return rtslib_fb.RTSRoot()
    except Exception as e:
        raise Failure('cannot open the LIO configuration (%s); load the '
                      'modules (modprobe target_core_mod iscsi_target_mod '
                      'target_core_iblock) and mount configfs' % e)


def _wait_for_device(device, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if stat.S_ISBLK(os.stat(device).st_mode):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise Failure('device %s did not appear within %s s (udev)'
                          % (device, timeout), EXIT_DEVICE_MISSING)
        time.sleep(0.1)


def _find_target(root, iqn):
    for target in root.targets:
        if target.wwn == iqn:
            return target
    return None


def _find_storage_object(root, name):
    for so in root.storage_objects:
        if so.name == name:
            return so
    return None


def _first_tpg(target):
    for tpg in target.tpgs:
        return tpg
    return None


def _find_acl(tpg, initiator):
    for acl in tpg.node_acls:
        if acl.node_wwn.lower() == initiator.lower():
            return acl
    return None


def _lun_of(tpg, so):
    for lun in tpg.luns:
        if lun.storage_object.name == so.name:
            return lun
    return None


def _delete_all(created):
    """Undo a half-done change: delete what it created, newest first."""
    for obj in reversed(created):
        try:
            obj.delete()
        except Exception:
            pass


def _allow(rtslib_fb, tpg, lun, initiator, chap, created):
    acl = _find_acl(tpg, initiator)
    if acl is None:
        acl = rtslib_fb.NodeACL(tpg, initiator, mode='create')
        created.append(acl)
    if chap:
        acl.chap_userid, acl.chap_password = chap
    for mapped in acl.mapped_luns:
        if mapped.tpg_lun.lun == lun.lun:
            return
    created.append(rtslib_fb.MappedLUN(acl, lun.lun, lun.lun))


def export(rtslib_fb, root, p):
    """Create whatever part of the export is missing (idempotent)."""
    _wait_for_device(p['device'], p['wait'])
    created = []
    try:
        so = _find_storage_object(root, p['so_name'])
        target = _find_target(root, p['iqn'])
        tpg = _first_tpg(target) if target else None
        lun = _lun_of(tpg, so) if tpg and so else None
        if p.get('leave_if_present') and lun is not None and \
                so.udev_path == p['device']:
            return {'tid': tpg.tag, 'lun': lun.lun, 'changed': False}
        if so is None:
            so = rtslib_fb.BlockStorageObject(p['so_name'], dev=p['device'])
            created.append(so)
        elif so.udev_path != p['device']:
            raise Failure('LIO block backstore %s exists for %s, not %s'
                          % (so.name, so.udev_path, p['device']))
        if target is None:
            target = rtslib_fb.Target(rtslib_fb.FabricModule('iscsi'),
                                      p['iqn'], mode='create')
            created.append(target)
        if tpg is None:
            tpg = rtslib_fb.TPG(target, 1, mode='create')
            created.append(tpg)
        # Only explicit per-initiator ACLs may log in.
        tpg.set_attribute('generate_node_acls', '0')
        tpg.set_attribute('authentication', '1' if p['chap'] else '0')
        if not any(True for _portal in tpg.network_portals):
            created.append(rtslib_fb.NetworkPortal(
                tpg, p['portal_ip'], p['port'], mode='create'))
        if lun is None:
            lun = rtslib_fb.LUN(tpg, storage_object=so)
            created.append(lun)
        for initiator in p['initiators']:
            _allow(rtslib_fb, tpg, lun, initiator, p['chap'], created)
        tpg.enable = True
        root.save_to_file()
    except BaseException:
        _delete_all(created)
        raise
    return {'tid': tpg.tag, 'lun': lun.lun, 'changed': bool(created)}


def remove(rtslib_fb, root, p):
    target = _find_target(root, p['iqn'])
    if target is not None:
        target.delete()
    so = _find_storage_object(root, p['so_name'])
    if so is not None:
        so.delete()
    if target is not None or so is not None:
        root.save_to_file()
    return {'removed': target is not None or so is not None}


def allow(rtslib_fb, root, p):
    target = _find_target(root, p['iqn'])
    tpg = _first_tpg(target) if target else None
    so = _find_storage_object(root, p['so_name'])
    lun = _lun_of(tpg, so) if tpg and so else None
    if lun is None:
        raise Failure('target %s with the LUN of %s does not exist: the '
                      'volume is not exported' % (p['iqn'], p['so_name']),
                      EXIT_NOT_FOUND)
    created = []
    try:
        _allow(rtslib_fb, tpg, lun, p['initiator'], p['chap'], created)
        root.save_to_file()
    except BaseException:
        _delete_all(created)
        raise
    return {'acls': sorted(a.node_wwn for a in tpg.node_acls)}


def deny(rtslib_fb, root, p):
    target = _find_target(root, p['iqn'])
    tpg = _first_tpg(target) if target else None
    if tpg is None:
        return {'acls': []}
    wanted = None if p['initiators'] is None else \
        set(i.lower() for i in p['initiators'])
    changed = False
    for acl in list(tpg.node_acls):
        if wanted is None or acl.node_wwn.lower() in wanted:
            acl.delete()
            changed = True
    if changed:
        root.save_to_file()
    return {'acls': sorted(a.node_wwn for a in tpg.node_acls)}


OPERATIONS = {'export': export, 'remove': remove, 'allow': allow,
              'deny': deny}


def main(params):
    try:
        rtslib_fb = _rtslib()
        result = OPERATIONS[params['op']](rtslib_fb, _root(rtslib_fb),
                                          params)
    except Failure as e:
        sys.stderr.write('%s\n' % e)
        sys.exit(e.code)
    except Exception as e:
        sys.stderr.write('rtslib: %s: %s\n' % (type(e).__name__, e))
        sys.exit(1)
    sys.stdout.write(json.dumps(result) + '\n')
