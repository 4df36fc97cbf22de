"""ZFS host model: typed zfs operations confined to one parent dataset.

Speaks ZFS, not Cinder: sizes are bytes, output is parsed from ``-H -p``
(tab separated, exact numbers), and failures become the exception kinds of
:mod:`.errors` carrying zfs's own stderr. Names are built only by
:meth:`ZfsHost.path`, and every command line is checked against
:mod:`.grammar` before it runs. Datasets this driver creates carry
``cinder_zol:managed=yes`` and ``volmode=dev`` (:data:`.props.FIXED`), and
no property that changes pool-wide state is set unless host.conf allows
its pool feature.
"""

import time

from . import config
from . import errors
from . import grammar
from . import names
from . import props as zprops

IMAGE_ID_PROP, IMAGE_HASH_PROP = zprops.IMAGE

# Columns read by list(), in this order.
LIST_FIELDS = ('name', 'type', 'volsize', 'used', 'available',
               'refreservation', 'origin', 'clones', 'defer_destroy',
               'createtxg', 'volblocksize', zprops.MANAGED, IMAGE_HASH_PROP)
# Seconds a destroy retries while the zvol is still busy.
BUSY_WAIT = 10
_NUMERIC = frozenset(('volsize', 'used', 'available', 'refreservation',
                      'createtxg', 'volblocksize'))

# zfs stderr fragment -> error kind, first match wins. Fragments are the
# messages of libzfs (zfs_standard_error and friends), lower case; every
# entry has a unit test carrying the real message of each tested version.
CLASSIFY = (
    ('out of space', errors.OutOfSpace),
    ('greater than available space', errors.OutOfSpace),
    ('permission denied', errors.PermissionDenied),
    ('dataset does not exist', errors.NotFound),
    ('could not find any snapshots', errors.NotFound),
    ('dataset already exists', errors.Exists),
    ('has dependent clones', errors.HasDependents),
    ('has children', errors.HasDependents),
    ('more recent snapshots', errors.HasDependents),
    ('is busy', errors.Busy),
    ("it's being held", errors.Busy),
    ('invalid', errors.Invalid),
    ('bad property', errors.Invalid),
    ('bad numeric value', errors.Invalid),
    ('must be a multiple', errors.Invalid),
    ('must be one of', errors.Invalid),
    ('must be power of', errors.Invalid),
    ('not a cloned filesystem', errors.Invalid),
    ('volume size', errors.Invalid),
    ('not a valid', errors.Invalid),
    ('read-only', errors.Invalid),
    ('readonly', errors.Invalid),
    ('cannot be', errors.Invalid),
    ('unsupported version', errors.Invalid),
)

# What the operator can do about a failure. zfs's own words say more than
# the kind (first match wins), then the kind of failure of a subcommand,
# then the kind alone.
HINTS_BY_MESSAGE = (
    ("it's being held", 'A zfs hold keeps the snapshot (zfs holds): release '
                        'it (zfs release) or wait for whoever took it.'),
    ('has children', 'Its snapshots still exist: clones or zfs holds keep '
                     'them (zfs list -t snapshot -o name,clones,userrefs).'),
    ('more recent snapshots', 'Newer snapshots exist: revert only to the '
                              'newest snapshot.'),
)
_SETTING_UP = 'The storage host was still setting up a device; retry.'
HINTS_BY_COMMAND = {
    # zfs says busy while udev still makes a new zvol's device
    (errors.Busy, 'clone'): _SETTING_UP,
    (errors.Busy, 'create'): _SETTING_UP,
}
HINTS = {
    errors.OutOfSpace: 'Free space in the pool or below the parent dataset '
                       '(its zfs quota, setup-storage-host.sh --quota), or '
                       'lower the size.',
    errors.Busy: 'Detach the volume (remove its export) first.',
    errors.HasDependents: 'Clones still depend on it.',
    errors.NotFound: 'It may have been removed outside Cinder.',
    errors.Invalid: 'Check the zfs properties of the volume type '
                    '(zfs:<property> extra specs) and zol_zvol_properties.',
    errors.PermissionDenied: 'The storage host account lacks a zfs '
                             'permission: check "zfs allow" on the parent '
                             'dataset (setup-storage-host.sh sets it).',
}


def hint(kind, subcommand, stderr):
    lower = stderr.lower()
    for fragment, text in HINTS_BY_MESSAGE:
        if fragment in lower:
            return text
    return HINTS_BY_COMMAND.get((kind, subcommand), HINTS.get(kind, ''))


def classify(stderr):
    lower = stderr.lower()
    for fragment, kind in CLASSIFY:
        if fragment in lower:
            return kind
    return errors.HostError


class Dataset(object):
    """One row of ``zfs list`` with exact values (None for '-')."""

    __slots__ = ('name', 'type', 'volsize', 'used', 'available',
                 'refreservation', 'origin', 'clones', 'deferred',
                 'createtxg', 'volblocksize', 'managed', 'image_hash',
                 'snapshots')

    def __init__(self, row):
        get = row.get
        self.name = row['name']
        self.type = get('type')
        for field in _NUMERIC:
            setattr(self, field, get(field))
        self.origin = get('origin')
        self.clones = get('clones').split(',') if get('clones') else []
        self.deferred = get('defer_destroy') == 'on'
        self.managed = get(zprops.MANAGED) == 'yes'
        self.image_hash = get(IMAGE_HASH_PROP)
        self.snapshots = []

    @property
    def short_name(self):
        """Last component: 'volume-x' or 'volume-x@snap'."""
        return self.name.rsplit('/', 1)[-1]

    @property
    def base(self):
        """The dataset part of the short name (without @snapshot)."""
        return self.short_name.split('@', 1)[0]

    @property
    def snapshot_name(self):
        return self.name.split('@', 1)[1] if '@' in self.name else None

    def __repr__(self):
        return '<Dataset %s>' % self.name


def _parse_value(field, raw):
    if raw in ('-', '') or (raw == 'none' and field in _NUMERIC):
        return None
    if field in _NUMERIC:
        return int(raw)
    return raw


class ZfsHost(object):
    """zfs on the local storage host, confined to one parent dataset."""

    def __init__(self, executor, parent, pool_features=()):
        self.executor = executor
        self.parent = names.parent(parent)
        self.pool_features = frozenset(pool_features)

    # -- names ---------------------------------------------------------

    def path(self, name, snapshot=None):
        """Full name of a child of the parent (or of its snapshot).

        The only function that builds names: a component with '/', '@',
        '..', a leading '-' or any shell character is refused.
        """
        names.component(name)
        full = '%s/%s' % (self.parent, name)
        if snapshot is None:
            return full
        return '%s@%s' % (full, names.component(snapshot, 'snapshot name'))

    def child_name(self, full):
        """Inverse of path() for a dataset directly below the parent.

        None for anything else (the parent itself, a deeper dataset or a
        dataset elsewhere): not ours to touch.
        """
        prefix = self.parent + '/'
        if not full or not full.startswith(prefix):
            return None
        rest = full[len(prefix):].split('@', 1)[0]
        return None if '/' in rest else rest

    def device(self, name):
        return '/dev/zvol/' + self.path(name)

    # -- running -------------------------------------------------------

    def _zfs(self, action, *args, input=None):
        """Run ``zfs *args``; classify a failure by zfs's own message."""
        argv = ['zfs'] + list(args)
        grammar.check_zfs(argv, [self.parent])
        done = self.executor.run(argv, input=input)
        if done.returncode == 0:
            return done.stdout
        stderr = (done.stderr or done.stdout or '').strip() or \
            'exit code %s' % done.returncode
        if done.returncode == 127:
            raise errors.Unavailable(
                action + ' failed', stderr,
                'Is zfsutils-linux installed on the storage host?')
        kind = classify(stderr)
        raise kind(action + ' failed', stderr, hint(kind, args[0], stderr))

    def _zfs_until_free(self, busy_wait, action, *args, undo=None):
        """_zfs(), retried while zfs says busy, for ``busy_wait`` seconds.

        ``undo`` takes back what a command that failed busy may have left
        (it runs after each such failure, the last one included).
        """
        deadline = time.monotonic() + busy_wait
        while True:
            try:
                return self._zfs(action, *args)
            except errors.Busy:
                if undo is not None:
                    undo()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def _allowed(self, props):
        """Valid properties none of whose pool features is disallowed."""
        names.properties(props)
        needed = zprops.pool_features(props)
        disallowed = sorted(set(needed) - self.pool_features)
        if disallowed:
            feature = disallowed[0]
            raise errors.Refused(
                'ZFS property %s is not allowed on this storage host: it %s'
                % (needed[feature], zprops.POOL_FEATURES[feature]),
                hint='The storage host\'s operator can allow it: add %s to '
                     '"pool_features" in %s (setup-storage-host.sh '
                     '--pool-feature %s).' % (feature, config.PATH, feature))
        return props

    @staticmethod
    def _options(props):
        args = []
        for key in sorted(props):
            args += ['-o', '%s=%s' % (key, props[key])]
        return args

    # -- queries -------------------------------------------------------

    def list(self, name=None, types='all', depth=1):
        """Rows for a child (and its snapshots) or the parent's children."""
        target = self.path(name) if name else self.parent
        out = self._zfs('zfs list %s' % target, 'list', '-H', '-p', '-o',
                        ','.join(LIST_FIELDS), '-t', types, '-d', str(depth),
                        target)
        rows = []
        for line in out.splitlines():
            values = line.split('\t')
            if len(values) != len(LIST_FIELDS):
                raise errors.HostError('zfs list %s: unexpected output line '
                                       '%r' % (target, line))
            rows.append(Dataset({f: _parse_value(f, v)
                                 for f, v in zip(LIST_FIELDS, values)}))
        return rows

    def tree(self, rows):
        """{short name: Dataset with .snapshots (oldest first)} of rows."""
        datasets = {}
        for row in rows:
            child = self.child_name(row.name)
            if child is None:
                continue
            if row.snapshot_name is None:
                datasets[child] = row
        for row in rows:
            child = self.child_name(row.name)
            if row.snapshot_name is not None and child in datasets:
                datasets[child].snapshots.append(row)
        for ds in datasets.values():
            ds.snapshots.sort(key=lambda s: s.createtxg or 0)
        return datasets

    def get(self, name):
        """The dataset and its snapshots, or None if it does not exist."""
        try:
            rows = self.list(name)
        except errors.NotFound:
            return None
        return self.tree(rows).get(name)

    def children(self):
        """Every child of the parent with its snapshots, by short name."""
        return self.tree(self.list(depth=2))

    def parent_props(self):
        """The parent's type and volmode; raises NotFound if missing."""
        out = self._zfs('zfs get type,volmode %s' % self.parent, 'get',
                        '-H', '-p', '-o', 'value', 'type,volmode',
                        self.parent)
        kind, volmode = out.split()
        return {'type': kind, 'volmode': volmode}

    def space(self):
        """(used, available) bytes of the parent: O(1) in the volumes."""
        out = self._zfs('zfs get used,available %s' % self.parent, 'get',
                        '-H', '-p', '-o', 'value', 'used,available',
                        self.parent)
        used, available = out.split()
        return int(used), int(available)

    def version(self):
        """The kernel module's (major, minor, patch), or None."""
        done = self.executor.run(['zfs', 'version'])
        return grammar.parse_version(done.stdout)

    # -- changes -------------------------------------------------------

    def create_volume(self, name, size, sparse, props):
        args = ['create', '-V', str(names.size(size))]
        if sparse:
            args.append('-s')
        props = dict(self._allowed(props), **zprops.FIXED)
        props[zprops.MANAGED] = 'yes'
        self._zfs('zfs create %s' % self.path(name),
                  *(args + self._options(props) + [self.path(name)]))

    def snapshot(self, name, snapshot, *more):
        """Snapshot one zvol, or several at once (atomically: one txg)."""
        self.snapshot_set([(n, snapshot) for n in (name,) + more])

    def snapshot_set(self, pairs):
        """Snapshot several zvols at once: [(zvol, snapshot name)].

        One ``zfs snapshot`` is one transaction group: every snapshot holds
        the same instant (equal createtxg), or none is created.
        """
        targets = [self.path(name, snap) for name, snap in pairs]
        self._zfs('zfs snapshot %s' % ' '.join(targets),
                  'snapshot', *targets)

    def clone(self, name, snapshot, new_name, props, sparse=True,
              volsize=None, busy_wait=BUSY_WAIT):
        """Clone a snapshot; a thick clone reserves its full size.

        Properties fixed at creation (volblocksize) are inherited from the
        origin and dropped from ``props``. ``volsize`` (bytes) sizes the
        clone in the same command; zfs would shrink as readily as grow, so
        the caller makes sure it is not below the snapshot's.
        """
        origin, target = self.path(name, snapshot), self.path(new_name)
        props = dict(self._allowed(zprops.for_clone(names.properties(props))),
                     **zprops.FIXED)
        props[zprops.MANAGED] = 'yes'
        if volsize is not None:
            props['volsize'] = str(names.size(volsize))
        if not sparse:
            props['refreservation'] = 'auto'

        # On a freshly booted host zfs has made the clone, failed to set
        # its properties while its device was being made ("dataset is
        # busy") and failed to take it back: a clone without our marks.
        # Destroy that (the name did not exist, or zfs would have said so)
        # and clone again; a moment later it works.
        def undo():
            if self.get(new_name) is not None:
                self.destroy(new_name, busy_wait)

        self._zfs_until_free(busy_wait, 'zfs clone %s %s' % (origin, target),
                             *(['clone'] + self._options(props) +
                               [origin, target]), undo=undo)

    def promote(self, name):
        self._zfs('zfs promote %s' % self.path(name),
                  'promote', self.path(name))

    def rename(self, name, new_name):
        old, new = self.path(name), self.path(new_name)
        self._zfs('zfs rename %s %s' % (old, new), 'rename', old, new)

    def rename_snapshot(self, name, snapshot, new_snapshot):
        old, new = self.path(name, snapshot), self.path(name, new_snapshot)
        self._zfs('zfs rename %s %s' % (old, new), 'rename', old, new)

    def set(self, name, props):
        args = ['%s=%s' % (k, v) for k, v in
                sorted(self._allowed(props).items())]
        self._zfs('zfs set %s on %s' % (' '.join(args), self.path(name)),
                  *(['set'] + args + [self.path(name)]))

    def set_volsize(self, name, size):
        self.set(name, {'volsize': str(names.size(size))})

    def inherit(self, name, prop):
        self._zfs('zfs inherit %s %s' % (prop, self.path(name)),
                  'inherit', prop, self.path(name))

    def rollback(self, name, snapshot, destroy_newer=False):
        """Roll back; never -R, so snapshots with clones are never lost."""
        args = ['rollback'] + (['-r'] if destroy_newer else [])
        self._zfs('zfs rollback %s' % self.path(name, snapshot),
                  *(args + [self.path(name, snapshot)]))

    def destroy(self, name, busy_wait=BUSY_WAIT):
        """Destroy one zvol (never -r/-R: fails if it has snapshots).

        A zvol stays busy for a moment after its last user closed it (tgtd
        closes a deleted LUN's device asynchronously, udev probes new
        zvols): retry for ``busy_wait`` seconds before reporting Busy.
        """
        self._zfs_until_free(busy_wait, 'zfs destroy %s' % self.path(name),
                             'destroy', self.path(name))

    def destroy_snapshots(self, name, snapshots):
        """Destroy snapshots now, or defer it while clones still need them.

        ``zfs destroy -d`` removes a snapshot at once when nothing depends
        on it and otherwise marks it, so that zfs itself removes it when its
        last clone is destroyed: the bookkeeping stays on the host.
        """
        if not snapshots:
            return
        for snap in snapshots:
            self.path(name, snap)
        target = '%s@%s' % (self.path(name), ','.join(snapshots))
        self._zfs('zfs destroy -d %s' % target, 'destroy', '-d', target)
