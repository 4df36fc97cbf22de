"""Generic volume groups: the driver's half (a mixin of the driver).

Groups whose type asks for consistent group snapshots
(``consistent_group_snapshot_enabled="<is> True"``) are the driver's: a
group snapshot is one ``zfs snapshot`` of every zvol of the group (one
instant, all or none), a group from a group snapshot or from another group
is made in one request that leaves nothing behind when a clone fails
(:mod:`cinder_zol.host.groups`). For every other group type each method
raises NotImplementedError, and Cinder's generic implementation runs the
driver's single-volume methods one by one, as it would for any driver.

ZFS has no container for a group: the zvols stay directly below the
parent, so creating a group and adding or removing volumes changes nothing
on the storage host. Deletes reuse the single-volume methods, with their
dependency rules: a zvol or snapshot that clones still need is hidden or
deferred, never destroyed under them.
"""

from oslo_log import log as logging
from oslo_utils import units

from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder.objects import fields
from cinder.volume import volume_utils

from cinder_zol.host import wire

LOG = logging.getLogger(__name__)


def _consistent(group_or_snapshot):
    return volume_utils.is_group_a_cg_snapshot_type(group_or_snapshot)


def _check_size(what, count):
    # the snapshots of one zfs command: the storage host refuses more
    if count > wire.MAX_SNAPSHOTS:
        raise cinder_exception.InvalidGroup(reason=_(
            '%(what)s covers %(n)d volumes; a consistent group snapshot on '
            'this backend covers at most %(max)d (one zfs command): split '
            'the group.') % {'what': what, 'n': count,
                             'max': wire.MAX_SNAPSHOTS})


def _each(items, delete, what, owner, done, failed):
    """Delete each item; ([{id, status}], whether any failed).

    One failure does not stop the others: Cinder gets each item's
    outcome, and deleting the group again retries only what is left.
    """
    updates = []
    for item in items:
        try:
            delete(item)
            status = done
        except cinder_exception.CinderException as e:
            LOG.error('Deleting %(what)s %(id)s of %(owner)s failed: '
                      '%(e)s', {'what': what, 'id': item.id, 'owner': owner,
                                'e': e})
            status = failed
        updates.append({'id': item.id, 'status': status})
    return updates, any(u['status'] == failed for u in updates)


class GroupMixin(object):
    """Cinder's generic volume group driver methods for ZoL."""

    def create_group(self, context, group):
        if not _consistent(group):
            raise NotImplementedError()
        return {'status': fields.GroupStatus.AVAILABLE}

    def update_group(self, context, group, add_volumes=None,
                     remove_volumes=None):
        """Check that the added zvols exist and are the driver's.

        Nothing changes on the storage host; a volume whose zvol is gone
        (or was never the driver's) is refused now rather than at the next
        group snapshot.
        """
        if not _consistent(group):
            raise NotImplementedError()
        if add_volumes:
            _check_size(_('Adding to group %s') % group.id, len(add_volumes))
            self.storage.group_check([v.name for v in add_volumes])
        return None, None, None

    def delete_group(self, context, group, volumes):
        """Delete every volume; report each one's outcome to Cinder.

        A failed volume is 'error_deleting' (the group then goes to
        error, and deleting it again retries only what is left: a zvol
        already gone counts as deleted).
        """
        if not _consistent(group):
            raise NotImplementedError()

        def delete(volume):
            self.remove_export(context, volume)
            self.delete_volume(volume)
        updates, failed = _each(volumes, delete, 'volume',
                                'group %s' % group.id, 'deleted',
                                'error_deleting')
        return ({'status': fields.GroupStatus.ERROR_DELETING if failed
                 else fields.GroupStatus.DELETED}, updates)

    def create_group_snapshot(self, context, group_snapshot, snapshots):
        """One zfs snapshot command for every volume: one instant."""
        if not _consistent(group_snapshot):
            raise NotImplementedError()
        _check_size(_('Group snapshot %s') % group_snapshot.id,
                    len(snapshots))
        if snapshots:
            self.storage.group_snapshot([(s.volume_name, s.name)
                                         for s in snapshots])
        return ({'status': fields.GroupSnapshotStatus.AVAILABLE},
                [{'id': s.id, 'status': fields.SnapshotStatus.AVAILABLE}
                 for s in snapshots])

    def delete_group_snapshot(self, context, group_snapshot, snapshots):
        """Delete each snapshot; one with clones goes when they do."""
        if not _consistent(group_snapshot):
            raise NotImplementedError()
        updates, failed = _each(
            snapshots, self.delete_snapshot, 'snapshot',
            'group snapshot %s' % group_snapshot.id,
            fields.SnapshotStatus.DELETED,
            fields.SnapshotStatus.ERROR_DELETING)
        return ({'status': fields.GroupSnapshotStatus.ERROR_DELETING if failed
                 else fields.GroupSnapshotStatus.DELETED}, updates)

    def create_group_from_src(self, context, group, volumes,
                              group_snapshot=None, snapshots=None,
                              source_group=None, source_vols=None):
        """Clone every volume in one request: all of them, or none.

        From a source group the sources are snapshotted together first, so
        the new group is a copy of one instant of the old one.
        """
        if not _consistent(group):
            raise NotImplementedError()
        _check_size(_('Group %s') % group.id, len(volumes))
        if group_snapshot is not None:
            by_id = {s.id: s for s in snapshots or ()}
            sources = {v.id: by_id.get(v.snapshot_id) for v in volumes}
        else:
            by_id = {v.id: v for v in source_vols or ()}
            sources = {v.id: by_id.get(v.source_volid) for v in volumes}
        lost = [v.id for v in volumes if sources[v.id] is None]
        if lost or not (group_snapshot or source_group):
            raise cinder_exception.InvalidInput(reason=_(
                'Group %(g)s: no source for volumes %(v)s in the group '
                'snapshot or source group given.') % {
                    'g': group.id, 'v': ', '.join(lost) or '-'})
        clones = {}
        for volume in volumes:
            source = sources[volume.id]
            entry = dict(self._wishes(volume), size=volume.size * units.Gi)
            if group_snapshot is not None:
                entry.update(source=source.volume_name, snapshot=source.name)
            else:
                entry.update(source=source.name, snapshot=None)
            clones[volume.name] = entry
        if clones:
            self.storage.clone_group(clones)
        return ({'status': fields.GroupStatus.AVAILABLE},
                [{'id': v.id, 'status': 'available'} for v in volumes])
