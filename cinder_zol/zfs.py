"""ZFS host model: typed zfs operations on one parent dataset.

Speaks ZFS, not Cinder: sizes are bytes, output is parsed from ``-H -p``
(tab separated, exact numbers), and failures become the few exception types
of ``cinder_zol.exception`` carrying zfs's own stderr. Every dataset name is
built and validated by :meth:`ZfsHost.path`, so nothing outside the parent
can be named. Datasets this driver creates carry ``MANAGED_PROP``.
"""

import re

from oslo_concurrency import processutils

from cinder_zol import exception

MANAGED_PROP = 'cinder_zol:managed'

# Columns read by list(); the order is the order of the parsed fields.
LIST_FIELDS = ('name', 'type', 'volsize', 'used', 'available',
               'refreservation', 'origin', 'clones', 'defer_destroy',
               'createtxg', MANAGED_PROP)

_COMPONENT = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$')
_PROPERTY = re.compile(r'^[a-z][a-z0-9_.:-]{0,254}$')
_VALUE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.:,+=-]{0,1023}$')

# zfs stderr fragment -> exception class, first match wins.
_CLASSIFY = (
    ('out of space', exception.ZfsOutOfSpace),
    ('dataset does not exist', exception.ZfsNotFound),
    ('could not find any snapshots', exception.ZfsNotFound),
    ('dataset already exists', exception.ZfsExists),
    ('has dependent clones', exception.ZfsHasDependents),
    ('has children', exception.ZfsHasDependents),
    ('more recent snapshots', exception.ZfsHasDependents),
    ('is busy', exception.ZfsBusy),
    ('invalid', exception.ZfsInvalid),
    ('bad property', exception.ZfsInvalid),
    ('bad numeric value', exception.ZfsInvalid),
    ('must be a multiple', exception.ZfsInvalid),
    ('volume size', exception.ZfsInvalid),
    ('not a valid', exception.ZfsInvalid),
    ('read-only', exception.ZfsInvalid),
    ('cannot be', exception.ZfsInvalid),
)

_HINTS = {
    exception.ZfsOutOfSpace: ' Free space in the pool, or lower the size.',
    exception.ZfsBusy: ' Detach the volume (remove its iSCSI export) first.',
    exception.ZfsHasDependents: ' Clones still depend on it.',
    exception.ZfsNotFound: ' It may have been removed outside Cinder.',
    exception.ZfsInvalid: ' Check the zfs properties of the volume type '
                          '(zfs:<property> extra specs) and '
                          'zol_zvol_properties.',
}


class Dataset(dict):
    """One row of ``zfs list`` with exact values (None for '-')."""

    @property
    def name(self):
        return self['name']

    @property
    def short_name(self):
        """Last component: 'volume-x' or 'volume-x@snap'."""
        return self['name'].rsplit('/', 1)[-1]

    @property
    def snapshot_name(self):
        return self['name'].split('@', 1)[1] if '@' in self['name'] else None

    @property
    def clones(self):
        return self['clones'].split(',') if self['clones'] else []

    @property
    def managed(self):
        return self[MANAGED_PROP] not in (None, '')

    @property
    def deferred(self):
        return self['defer_destroy'] == 'on'


def _parse_value(field, raw):
    if raw in ('-', ''):
        return None
    if field in ('volsize', 'used', 'available', 'refreservation',
                 'createtxg'):
        return int(raw)
    return raw


def validate_properties(props):
    """Refuse property names and values zfs or a shell could misread."""
    for key, value in props.items():
        if not _PROPERTY.match(key) or not _VALUE.match(str(value)):
            raise exception.UnsafeName(
                reason='ZFS property %s=%s is not allowed: names are lower '
                       'case letters, digits and _.:-, values letters, '
                       'digits and _.:,+=-' % (key, value))


class ZfsHost(object):
    """zfs on one storage host, confined to one parent dataset."""

    def __init__(self, runner, parent):
        components = parent.split('/') if parent else ['']
        if not all(_COMPONENT.match(c) for c in components):
            raise exception.UnsafeName(
                reason='zol_dataset %r is not a plain ZFS dataset name '
                       '(pool/child, letters, digits and _.:-)' % parent)
        self.runner = runner
        self.parent = parent

    # -- names ---------------------------------------------------------------

    def path(self, name, snapshot=None):
        """Full dataset name of a child of the parent, validated.

        The only function that builds names: a name with '/', '@', '..',
        a leading '-' or any shell character is refused, so no caller can
        reach outside the parent dataset.
        """
        for part in (name,) if snapshot is None else (name, snapshot):
            if not isinstance(part, str) or not _COMPONENT.match(part) or \
                    '..' in part:
                raise exception.UnsafeName(
                    reason='%r is not a safe ZFS name component' % (part,))
        full = '%s/%s' % (self.parent, name)
        return full if snapshot is None else '%s@%s' % (full, snapshot)

    def child_name(self, full):
        """Inverse of path() for a dataset (no snapshot) under the parent."""
        prefix = self.parent + '/'
        if not full.startswith(prefix) or '/' in full[len(prefix):]:
            raise exception.UnsafeName(
                reason='%s is not a direct child of %s' % (full, self.parent))
        return full[len(prefix):].split('@', 1)[0]

    def device(self, name):
        return '/dev/zvol/' + self.path(name)

    # -- running -------------------------------------------------------------

    def _zfs(self, action, *args, input=None):
        """Run ``zfs *args``; classify failure by zfs's own message."""
        try:
            return self.runner.run(['zfs'] + list(args), input=input).stdout
        except processutils.ProcessExecutionError as e:
            stderr = (e.stderr or e.stdout or '').strip() or \
                'exit code %s' % e.exit_code
            if e.exit_code == 127:
                stderr += ' (is zfsutils-linux installed on the storage host?)'
            cls = exception.ZfsError
            lower = stderr.lower()
            for fragment, candidate in _CLASSIFY:
                if fragment in lower:
                    cls = candidate
                    break
            raise cls(action=action, stderr=stderr, hint=_HINTS.get(cls, ''))

    @staticmethod
    def _options(props):
        validate_properties(props)
        args = []
        for key in sorted(props):
            args += ['-o', '%s=%s' % (key, props[key])]
        return args

    # -- queries -------------------------------------------------------------

    def list(self, name=None, types='all', depth=1):
        """Rows for a child (and its snapshots) or the parent's children."""
        target = self.path(name) if name else self.parent
        out = self._zfs('zfs list %s' % target, 'list', '-H', '-p',
                        '-o', ','.join(LIST_FIELDS), '-t', types,
                        '-d', str(depth), target)
        rows = []
        for line in out.splitlines():
            values = line.split('\t')
            if len(values) != len(LIST_FIELDS):
                raise exception.ZfsError(
                    action='zfs list %s' % target,
                    stderr='unexpected output line %r' % line)
            rows.append(Dataset(
                (f, _parse_value(f, v)) for f, v in zip(LIST_FIELDS, values)))
        return rows

    def get(self, name):
        """The dataset and its snapshots, or None if it does not exist."""
        try:
            rows = self.list(name)
        except exception.ZfsNotFound:
            return None
        volume = next(r for r in rows if r.snapshot_name is None)
        volume['snapshots'] = sorted((r for r in rows if r.snapshot_name),
                                     key=lambda r: r['createtxg'] or 0)
        return volume

    def check_parent(self):
        """Type of the parent dataset; raises ZfsNotFound if missing."""
        out = self._zfs('zfs get type %s' % self.parent,
                        'get', '-H', '-p', '-o', 'value', 'type', self.parent)
        return out.strip()

    # -- changes -------------------------------------------------------------

    def create_volume(self, name, size, sparse, props):
        args = ['create', '-V', str(size)]
        if sparse:
            args.append('-s')
        args += self._options(dict(props, **{MANAGED_PROP: 'yes'}))
        self._zfs('zfs create %s' % self.path(name),
                  *(args + [self.path(name)]))

    def snapshot(self, name, snapshot):
        self._zfs('zfs snapshot %s' % self.path(name, snapshot),
                  'snapshot', self.path(name, snapshot))

    def clone(self, name, snapshot, new_name, props):
        origin, target = self.path(name, snapshot), self.path(new_name)
        args = ['clone'] + self._options(dict(props, **{MANAGED_PROP: 'yes'}))
        self._zfs('zfs clone %s %s' % (origin, target),
                  *(args + [origin, target]))

    def promote(self, name):
        self._zfs('zfs promote %s' % self.path(name),
                  'promote', self.path(name))

    def rename(self, name, new_name):
        old, new = self.path(name), self.path(new_name)
        self._zfs('zfs rename %s %s' % (old, new), 'rename', old, new)

    def set(self, name, props):
        validate_properties(props)
        args = ['%s=%s' % (k, props[k]) for k in sorted(props)]
        self._zfs('zfs set %s on %s' % (' '.join(args), self.path(name)),
                  *(['set'] + args + [self.path(name)]))

    def set_volsize(self, name, size):
        self.set(name, {'volsize': str(size)})

    def rollback(self, name, snapshot, destroy_newer=False):
        """Roll back; never -R, so snapshots with clones are never lost."""
        args = ['rollback'] + (['-r'] if destroy_newer else [])
        self._zfs('zfs rollback %s' % self.path(name, snapshot),
                  *(args + [self.path(name, snapshot)]))

    def destroy(self, name):
        """Destroy one volume (never -r/-R: fails if it has snapshots)."""
        self._zfs('zfs destroy %s' % self.path(name), 'destroy',
                  self.path(name))

    def destroy_snapshots(self, name, snapshots):
        """Destroy snapshots now, or defer it while clones still need them.

        ``zfs destroy -d`` removes a snapshot at once when nothing depends on
        it and otherwise marks it so that zfs itself removes it when its
        last clone is destroyed: the bookkeeping stays on the host.
        """
        if not snapshots:
            return
        for snap in snapshots:
            self.path(name, snap)
        target = '%s@%s' % (self.path(name), ','.join(snapshots))
        self._zfs('zfs destroy -d %s' % target, 'destroy', '-d', target)
