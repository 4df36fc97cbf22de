"""Manage, unmanage and retype: the driver's half (a mixin of the driver).

The storage host does the work and the refusing
(:mod:`cinder_zol.host.manage`); here references are checked before
anything is sent, and every refusal becomes what Cinder expects:
``ManageExistingInvalidReference`` for manage; from retype ``(False, None)``
for what cannot change in place (volblocksize, another backend: Cinder then
migrates, or fails the retype when the migration policy is "never"), and
the host's error for a property it refuses.
"""

from oslo_log import log as logging

from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder.volume import volume_utils

from cinder_zol import exception
from cinder_zol.host import errors as host_errors
from cinder_zol.host import names
from cinder_zol.host import props as zfs_props

LOG = logging.getLogger(__name__)


def _source_name(existing_ref, what):
    """The one safe name component a manage reference may carry."""
    name = existing_ref.get('source-name') if isinstance(
        existing_ref, dict) else None
    if not name:
        raise cinder_exception.ManageExistingInvalidReference(
            existing_ref=existing_ref,
            reason=_('give the %s to manage as source-name') % what)
    try:
        return names.component(name, what)
    except host_errors.Refused as e:
        raise cinder_exception.ManageExistingInvalidReference(
            existing_ref=existing_ref, reason=e.message)


def _has_clones(snap):
    return _('it has clones: %s') % ', '.join(snap['clones'])


class ManageMixin(object):
    """Cinder's manage/unmanage/retype driver methods for ZoL."""

    # -- volumes ---------------------------------------------------------

    def _manageable(self):
        return {v['name']: v for v in self.storage.manageable()}

    def _manageable_volume(self, existing_ref):
        name = _source_name(existing_ref, _('zvol name'))
        entry = self._manageable().get(name)
        if entry is None:
            raise cinder_exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('no zvol %(n)s directly under %(p)s') % {
                    'n': name, 'p': self.storage.parent})
        if entry['reason_not_safe']:
            raise cinder_exception.ManageExistingInvalidReference(
                existing_ref=existing_ref, reason=entry['reason_not_safe'])
        return entry

    def manage_existing_get_size(self, volume, existing_ref):
        """Whole GiB, rounded up: manage grows the zvol to that size."""
        return self._manageable_volume(existing_ref)['size_gb']

    def manage_existing(self, volume, existing_ref):
        """Rename the zvol to Cinder's name and mark it managed.

        The storage host checks again, under its lock, everything
        manageable() reports: no listing first.
        """
        name = _source_name(existing_ref, _('zvol name'))
        try:
            result = self.storage.manage(name, volume.name)
        except (exception.HostRefused, exception.ZfsNotFound) as e:
            raise cinder_exception.ManageExistingInvalidReference(
                existing_ref=existing_ref, reason=str(e))
        if result.get('grown'):
            LOG.info('Managed %(src)s as %(vol)s, grown to %(gb)d GiB '
                     '(Cinder sizes are whole GiB).',
                     {'src': name, 'vol': volume.name,
                      'gb': result['size_gb']})
        return None

    def unmanage(self, volume):
        """Drop the marker; the zvol stays as volume.name for the operator."""
        self.storage.unmanage(volume.name)

    def get_manageable_volumes(self, cinder_volumes, marker, limit, offset,
                               sort_keys, sort_dirs):
        known = {v.name: v.id for v in cinder_volumes}
        entries = []
        for name, v in sorted(self._manageable().items()):
            reason = v['reason_not_safe']
            cinder_id = known.get(name)
            if cinder_id:
                reason = _('already managed')
            entries.append({
                'reference': {'source-name': name},
                'size': v['size_gb'],
                'safe_to_manage': reason is None,
                'reason_not_safe': reason,
                'cinder_id': cinder_id,
                'extra_info': None})
        return volume_utils.paginate_entries_list(
            entries, marker, limit, offset, sort_keys, sort_dirs)

    # -- snapshots -------------------------------------------------------

    def _manageable_snapshot(self, snapshot, existing_ref):
        name = _source_name(existing_ref, _('snapshot name'))
        volume = self._manageable().get(snapshot.volume.name)
        snaps = {s['name']: s for s in (volume or {}).get('snapshots', ())}
        snap = snaps.get(name)
        if snap is None:
            raise cinder_exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('no snapshot %(s)s of %(v)s') % {
                    's': name, 'v': snapshot.volume.name})
        if snap['clones']:
            raise cinder_exception.ManageExistingInvalidReference(
                existing_ref=existing_ref, reason=_has_clones(snap))
        return snap

    def manage_existing_snapshot_get_size(self, snapshot, existing_ref):
        return self._manageable_snapshot(snapshot, existing_ref)['size_gb']

    def manage_existing_snapshot(self, snapshot, existing_ref):
        """Rename the snapshot to Cinder's name (the host checks it)."""
        name = _source_name(existing_ref, _('snapshot name'))
        try:
            self.storage.manage_snapshot(snapshot.volume.name, name,
                                         snapshot.name)
        except (exception.HostRefused, exception.ZfsNotFound,
                exception.NotOwned) as e:
            raise cinder_exception.ManageExistingInvalidReference(
                existing_ref=existing_ref, reason=str(e))
        return None

    def unmanage_snapshot(self, snapshot):
        """Cinder forgets it; the ZFS snapshot stays under its name."""

    def get_manageable_snapshots(self, cinder_snapshots, marker, limit,
                                 offset, sort_keys, sort_dirs):
        known = {s.name: s.id for s in cinder_snapshots}
        entries = []
        for vname, v in sorted(self._manageable().items()):
            if not v['managed']:
                continue    # its snapshots come with the volume
            for s in v['snapshots']:
                cinder_id = known.get(s['name'])
                reason = None
                if cinder_id:
                    reason = _('already managed')
                elif s['clones']:
                    reason = _has_clones(s)
                entries.append({
                    'reference': {'source-name': s['name']},
                    'size': s['size_gb'],
                    'safe_to_manage': reason is None,
                    'reason_not_safe': reason,
                    'cinder_id': cinder_id,
                    'extra_info': None,
                    'source_reference': {'source-name': vname}})
        return volume_utils.paginate_entries_list(
            entries, marker, limit, offset, sort_keys, sort_dirs)

    # -- retype ----------------------------------------------------------

    def retype(self, context, volume, new_type, diff, host):
        """Change in place what a live zvol can change, else (False, None).

        zfs:<property> extra specs are set; one the new type drops goes
        back to what a new volume of that type gets (the backend's default,
        else inherited); provisioning:type switches thin/thick through
        refreservation, which fails with a clear error when the pool lacks
        the space. volblocksize and another backend need a migration.
        """
        if volume_utils.extract_host(host.get('host'), 'backend') != \
                volume_utils.extract_host(volume.host, 'backend'):
            return False, None
        specs = diff.get('extra_specs') or {}
        changed, dropped, fixed = zfs_props.retype_changes(
            self._with_backend_defaults(specs))
        if fixed:
            LOG.info('Retype of %(v)s changes %(p)s: needs a migration.',
                     {'v': volume.name, 'p': ', '.join(fixed)})
            return False, None
        sparse = None
        if 'provisioning:type' in specs:
            kind = specs['provisioning:type'][1]
            sparse = (kind == 'thin') if kind in ('thin', 'thick') \
                else self.configuration.san_thin_provision
        if not changed and not dropped and sparse is None:
            return True, None
        # a property the host refuses fails the retype: a migration would
        # be refused the same property
        self.storage.set_props(volume.name, changed, sparse=sparse,
                               inherit=dropped)
        return True, None

    def _with_backend_defaults(self, spec_diff):
        """The extra specs diff, a dropped zfs: spec as the backend default.

        A new volume of the new type gets zol_zvol_properties and
        zol_volblocksize where its type says nothing; ``zfs inherit`` would
        give the parent dataset's value instead.
        """
        conf = self.configuration
        defaults = zfs_props.merged(conf.zol_zvol_properties,
                                    conf.zol_volblocksize, {})
        prefix = zfs_props.SPEC_PREFIX
        return {key: (old, defaults.get(key[len(prefix):])
                      if new is None and key.startswith(prefix) else new)
                for key, (old, new) in spec_diff.items()}
