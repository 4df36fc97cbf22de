"""Target operations of the root helper, bound to the zvols they export.

Every operation re-validates its payload (:func:`_request`, the keys of
:data:`..wire.TARGET_PAYLOAD`), checks the zvol, takes the root helper's
target lock and refuses a target that is not the zvol's
(:func:`bound`) before its backend (:mod:`.backend`) acts.
"""

import importlib

from .. import devices
from .. import errors
from .. import helpers
from .. import locks
from .. import log
from .. import names
from .. import serve
from .. import wire
from . import records


def backend(ctx, helper):
    """The target backend of ``helper``, made on first use.

    Its module (the helpers table) is imported then too: rtslib-fb only
    where LIO runs.
    """
    ctx.config.check_helper(helper)
    if helper not in ctx.target_backends:
        module = importlib.import_module(
            '.' + helpers.HELPERS[helper].backend, __package__)
        ctx.target_backends[helper] = module.Backend(ctx.executor)
    return ctx.target_backends[helper]


def managed_zvol(ctx, parent, name, wait=30):
    """Device path of a managed zvol below an allowed parent.

    Waits up to ``wait`` seconds for udev to create the /dev/zvol link.
    """
    ctx.config.check_parent(parent)
    host = ctx.zfs(parent)
    ds = host.get(name)
    if ds is None or ds.type != 'volume':
        raise errors.NotFound('%s is not a volume'
                              % host.path(name), 'dataset does not exist')
    if not ds.managed:
        raise errors.NotOwned('%s is not managed by cinder-zol'
                              % host.path(name))
    return ctx.wait_for_device(host.device(name), wait,
                               lambda: devices.retrigger_zvols(ctx.executor))


def locked(ctx):
    return locks.hold(ctx.target_lock_dir, 'targets', wait=ctx.lock_wait)


def bound(ctx, parent, name, helper, iqn):
    """Refuse IQN (or NQN) unless it is the target of PARENT/NAME.

    The name must be the driver's (``target_prefix`` + the zvol's name),
    and an existing target may serve nothing but that zvol's device; one
    that serves nothing (a crash between its creation and its LUN) is ours
    only if our record says so. A zvol under the parent that cinder-zol
    does not manage is never bound, exported or not. Returns the device.
    """
    if len(iqn) <= len(name) or not iqn.endswith(name):
        raise errors.Refused('target %s is not named after the volume %s '
                             '(target_prefix + name)' % (iqn, name))
    host = ctx.zfs(parent)
    ds = host.get(name)
    if ds is not None and not ds.managed:
        raise errors.NotOwned('%s is not managed by cinder-zol'
                              % host.path(name))
    device = ctx.device_of(host.device(name))
    storage = backend(ctx, helper).storage(name, iqn)
    if storage is None:
        return device
    foreign = sorted(set(s for s in storage if s != device))
    if foreign:
        raise errors.Refused(
            'target %s (or the backstore %s) serves %s, not %s: it is not '
            'the cinder-zol export of %s' % (
                iqn, name, ', '.join(foreign), device, host.path(name)),
            hint='Another tool or backend made it; cinder-zol leaves it '
                 'alone.')
    if not storage:
        record = records.read(ctx.target_state_dir, helper, parent, name)
        if not record or record.get('iqn') != iqn:
            raise errors.Refused(
                'target %s serves no storage and is not recorded as the '
                'export of %s: it is not cinder-zol\'s'
                % (iqn, host.path(name)))
    return device


def _record(ctx, helper, parent, name, iqn, **fields):
    """Keep what the export is now, merged into its record."""
    old = records.read(ctx.target_state_dir, helper, parent, name) or {}
    if old.get('iqn') != iqn:
        old = {}
    record = dict(old, iqn=iqn, helper=helper)
    record.update(fields)
    records.write(ctx.target_state_dir, helper, parent, name, record)


def _request(ctx, payload, *keys):
    """The payload fields an operation needs, validated."""
    values = []
    for key in keys:
        value = payload.get(key)
        if key == 'iqn':
            value = names.iscsi_name(value, 'target IQN') \
                if not str(value).startswith('nqn.') else names.nqn(value)
        elif key == 'chap':
            value = names.chap(value)
        elif key == 'initiators':
            if value is not None:
                if not isinstance(value, list) or len(value) > 256:
                    raise errors.Refused('initiators must be a list')
                value = [_host_id(v) for v in value]
        elif key == 'initiator':
            value = _host_id(value)
        elif key == 'port':
            _port(ctx, value)
        elif key == 'ports':
            # every port the driver's portals use (multipath); a driver
            # that sends none wants only ``port``
            if value is None:
                value = [payload.get('port')]
            if not isinstance(value, list) or not 0 < len(value) <= 16:
                raise errors.Refused('ports must be a list of 1 to 16 TCP '
                                     'ports')
            value = sorted(set(_port(ctx, v) for v in value))
        elif key == 'serial':
            value = names.serial(value)
        elif key == 'wait':
            if not isinstance(value, (int, float)) or \
                    not 0 < value <= wire.MAX_WAIT:
                value = 30
        values.append(value)
    return values


def _port(ctx, value):
    """A TCP port the operator allows targets to listen on (ctx.conf)."""
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 0 < value < 65536:
        raise errors.Refused('port %r is not a TCP port' % (value,))
    return ctx.config.check_port(value)


def _host_id(value):
    if isinstance(value, str) and value.startswith('nqn.'):
        return names.nqn(value, 'ctx NQN')
    return names.iscsi_name(value, 'initiator')


@serve.implements('target-export')
def export(ctx, parent, name, helper, payload):
    """Create or complete the export; initiators given are allowed.

    Idempotent: an existing export keeps its credentials (returned as
    ``chap``) and its other initiators, so two attachments that race to
    export the same volume agree on what the target holds. The target
    listens on every port in ``ports`` (all the driver's portals), on all
    addresses; a listener that is missing (lost, or a portal added to the
    driver's configuration since) is added back.
    """
    iqn, chap, initiators, ports, serial, wait = _request(
        ctx, payload, *wire.TARGET_PAYLOAD['target-export'])
    device = managed_zvol(ctx, parent, name, wait)
    with locked(ctx):
        bound(ctx, parent, name, helper, iqn)
        # recorded first: a crash half way leaves a target our record names
        _record(ctx, helper, parent, name, iqn, serial=serial, ports=ports)
        result = backend(ctx, helper).export(name, iqn, device, chap,
                                             initiators or [], ports, serial)
        _record(ctx, helper, parent, name, iqn,
                initiators=result.get('initiators') or [])
        return result


@serve.implements('target-remove')
def remove(ctx, parent, name, helper, payload):
    iqn, = _request(ctx, payload, *wire.TARGET_PAYLOAD['target-remove'])
    with locked(ctx):
        bound(ctx, parent, name, helper, iqn)
        result = backend(ctx, helper).remove(name, iqn)
        records.remove(ctx.target_state_dir, helper, parent, name)
        return result


@serve.implements('target-allow')
def allow(ctx, parent, name, helper, payload):
    iqn, initiator, chap = _request(ctx, payload,
                                    *wire.TARGET_PAYLOAD['target-allow'])
    managed_zvol(ctx, parent, name)
    with locked(ctx):
        bound(ctx, parent, name, helper, iqn)
        result = backend(ctx, helper).allow(name, iqn, initiator, chap)
        _record(ctx, helper, parent, name, iqn,
                initiators=result['initiators'])
        return result


@serve.implements('target-deny')
def deny(ctx, parent, name, helper, payload):
    """Remove initiators from the ACL; ``initiators: null`` removes all."""
    iqn, initiators = _request(ctx, payload,
                               *wire.TARGET_PAYLOAD['target-deny'])
    with locked(ctx):
        bound(ctx, parent, name, helper, iqn)
        result = backend(ctx, helper).deny(name, iqn, initiators)
        if records.read(ctx.target_state_dir, helper, parent, name):
            _record(ctx, helper, parent, name, iqn,
                    initiators=result['initiators'])
        return result


@serve.implements('target-resize')
def resize(ctx, parent, name, helper, payload):
    """Make the live target report the zvol's current size."""
    iqn, serial = _request(ctx, payload,
                           *wire.TARGET_PAYLOAD['target-resize'])
    device = managed_zvol(ctx, parent, name)
    with locked(ctx):
        bound(ctx, parent, name, helper, iqn)
        return backend(ctx, helper).resize(name, iqn, device, serial)


@serve.implements('target-show')
def show(ctx, parent, name, helper, payload):
    iqn, = _request(ctx, payload, *wire.TARGET_PAYLOAD['target-show'])
    with locked(ctx):
        bound(ctx, parent, name, helper, iqn)
        return backend(ctx, helper).show(name, iqn)


@serve.implements('target-version')
def version(ctx, helper, payload):
    return backend(ctx, helper).version()


def restore(ctx):
    """Re-create the recorded exports of helpers that forget at a reboot.

    tgt and LIO load their own configuration at boot; nvmet keeps none,
    so its exports come back from the records (run at boot by
    cinder-zol-target-restore.service, after the zvol links exist). Each
    export is restored on its own; the record of a zvol that is gone or no
    longer managed is dropped. Returns the number of exports that could
    not be restored.
    """
    failed = 0
    for helper in ctx.config.target_helpers:
        target_backend = backend(ctx, helper)
        if target_backend.restores_itself:
            continue
        for record in records.every(ctx.target_state_dir, helper):
            parent, name = record.get('parent'), record.get('name')
            try:
                iqn, initiators, ports, serial = _request(
                    ctx, record, 'iqn', 'initiators', 'ports', 'serial')
                device = managed_zvol(ctx, parent, name)
                with locked(ctx):
                    bound(ctx, parent, name, helper, iqn)
                    target_backend.export(name, iqn, device, None,
                                          initiators or [], ports, serial)
                log.syslog('restored the %s export of %s/%s'
                           % (helper, parent, name))
            except (errors.NotFound, errors.NotOwned) as e:
                records.remove(ctx.target_state_dir, helper, parent, name)
                log.syslog('dropped the %s export record of %s/%s: %s'
                           % (helper, parent, name, e))
            except errors.HostError as e:
                failed += 1
                log.syslog('cannot restore the %s export of %s/%s: %s'
                           % (helper, parent, name, e), True)
    return failed
