"""The quickstart job: one volume through its whole life on the lab guest.

create -> write over iSCSI -> snapshot -> clone -> export the clone -> read
the data back over iSCSI -> delete everything, with the real driver over
real SSH, printing each step and how long it took.
"""

from __future__ import annotations

import time
import uuid

from . import backend
from . import guest as lab
from . import initiator

INITIATOR = 'iqn.2026-11.org.cinder-zol:quickstart'
GROUP = backend.NAME
MiB = 2 ** 20


class _Steps:
    def __init__(self, log):
        self.log = log
        self.rows = []

    def __call__(self, label, fn, *args):
        t0 = time.monotonic()
        result = fn(*args)
        dt = time.monotonic() - t0
        self.rows.append((label, dt))
        self.log(f'  {label:<52} {dt:6.2f}s')
        return result


def make_driver(shell):
    """A ZFSonLinuxISCSIDriver configured like cinder-volume would.

    ``shell``: the shell.GuestShell of the lab guest.
    """
    from oslo_config import cfg

    from cinder import context
    from cinder import objects
    objects.register_all()
    from cinder.volume import configuration as conf

    from cinder_zol import driver as driver_mod
    from cinder_zol import options

    cfg.CONF([], project='cinder', default_config_files=[])
    configuration = conf.Configuration(options.ALL_OPTS, config_group=GROUP)
    drv = driver_mod.ZFSonLinuxISCSIDriver(configuration=configuration)
    for key, value in backend.settings(shell).items():
        cfg.CONF.set_override(key, value, GROUP)
    ctxt = context.get_admin_context()
    drv.do_setup(ctxt)
    drv.check_for_setup_error()
    return drv, ctxt


def make_volume(ctxt, size):
    from cinder import objects
    return objects.Volume(
        context=ctxt, id=str(uuid.uuid4()), _name_id=None, size=size,
        volume_type_id=None, provider_location=None, provider_auth=None,
        multiattach=False, status='available', attach_status='detached',
        encryption_key_id=None, metadata={}, admin_metadata={},
        volume_attachment=objects.VolumeAttachmentList(objects=[]))


def make_snapshot(ctxt, vol):
    from cinder import objects
    return objects.Snapshot(context=ctxt, id=str(uuid.uuid4()),
                            volume_id=vol.id, volume_size=vol.size,
                            volume=vol)


def run(g: lab.LabGuest, log=print) -> None:
    step = _Steps(log)
    drv, ctxt = step('configure driver, check_for_setup_error', make_driver,
                     g.shell)
    connector = {'initiator': INITIATOR, 'ip': '127.0.0.1', 'host': 'demo',
                 'multipath': False}

    def attach(vol):
        update = drv.create_export(ctxt, vol, connector) or {}
        for key, value in update.items():
            setattr(vol, key, value)
        info = drv.initialize_connection(vol, connector)
        return initiator.Session.from_connection_info(info, INITIATOR)

    def detach(vol):
        drv.terminate_connection(vol, connector)
        drv.remove_export(ctxt, vol)

    vol = make_volume(ctxt, 1)
    step(f'create_volume {vol.name} (1 GiB, sparse)', drv.create_volume, vol)
    session = step('export + initialize_connection (CHAP, ACL)', attach, vol)
    step('iSCSI write 16 MiB of 0x5a (qemu-io)', session.write_pattern,
         0x5a, 16 * MiB)
    step('detach', detach, vol)
    snap = make_snapshot(ctxt, vol)
    step('create_snapshot', drv.create_snapshot, snap)
    clone = make_volume(ctxt, 2)
    step('create_volume_from_snapshot (2 GiB clone)',
         drv.create_volume_from_snapshot, clone, snap)
    clone_session = step('export the clone', attach, clone)
    step('iSCSI read 16 MiB back from the clone, verify 0x5a',
         clone_session.verify_pattern, 0x5a, 16 * MiB)
    step('detach the clone', detach, clone)
    step('delete_volume (source, clone still depends on it)',
         drv.delete_volume, vol)
    step('delete_snapshot', drv.delete_snapshot, snap)
    step('delete_volume (clone; the hidden source goes too)',
         drv.delete_volume, clone)
    left = g.shell.zfs_names()
    log(f'  zfs list -t all -r {g.parent_dataset}: {" ".join(left)}')
    if left != [g.parent_dataset]:
        raise lab.LabError(f'leftovers on the storage host: {left}')
    total = sum(dt for _, dt in step.rows)
    log(f'lab demo: {len(step.rows)} steps in {total:.1f}s, host clean')
