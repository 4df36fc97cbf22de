"""An in-memory storage host that answers zfs commands like OpenZFS does.

It refuses what real zfs refuses (destroying a snapshot with clones or a
zvol with snapshots, busy zvols, existing names, rollback past newer
snapshots) with zfs's own messages (OpenZFS 2.1), and allows what real zfs
allows, shrinking a zvol included, so the unit tier exercises the same
error paths the real-host tier sees. Each command is atomic (one lock), as
a zfs command is; ``before`` runs ahead of each command, so a test can
schedule other threads between commands.
"""

import collections
import threading

from cinder_zol.host import execute
from cinder_zol.host import props
from cinder_zol.host import zfs

KNOWN_PROPS = {'volblocksize', 'compression', 'refreservation', 'volsize',
               'logbias', 'sync', 'primarycache', 'volmode', props.MANAGED,
               zfs.IMAGE_ID_PROP, zfs.IMAGE_HASH_PROP}
CREATE_ONLY = {'volblocksize'}


class ZfsFailure(Exception):
    pass


class FakeZfsHost(object):
    """Runner-compatible fake: ``run(argv, input=None, ...)``."""

    host = 'fake-zol'

    def __init__(self, parent='tank/cinder', free=100 * 2 ** 30):
        self.datasets = collections.OrderedDict()
        self.free = free
        self.busy = set()          # datasets with an open export
        self.fail = {}             # argv[1] verb -> stderr to fail with once
        self.calls = []
        self.txg = 0
        self.version = '2.1.11'
        self.before = None         # callable(argv), run before each command
        self._lock = threading.RLock()
        pool = parent.split('/')[0]
        for name in (pool, parent):
            self._add(name, 'filesystem')
        # as setup-storage-host.sh leaves it
        self.datasets[parent]['props']['volmode'] = 'dev'

    # -- state ---------------------------------------------------------------

    def _add(self, name, kind, **props):
        self.txg += 1
        ds = {'name': name, 'type': kind, 'volsize': None, 'origin': None,
              'defer_destroy': 'off', 'createtxg': self.txg,
              'refreservation': 0, 'props': {}}
        ds.update(props)
        self.datasets[name] = ds
        return ds

    def _get(self, name):
        if name not in self.datasets:
            raise ZfsFailure("cannot open '%s': dataset does not exist"
                             % name)
        return self.datasets[name]

    def snapshots(self, name):
        return [n for n in self.datasets if n.startswith(name + '@')]

    def clones(self, snap):
        return [n for n, d in self.datasets.items() if d['origin'] == snap]

    def names(self):
        """Everything below the pool, like zfs list -t all -r."""
        return list(self.datasets)

    # -- runner interface ----------------------------------------------------

    def run(self, argv, input=None, timeout=None):
        argv = list(argv)
        if self.before is not None:
            self.before(argv)
        with self._lock:
            self.calls.append(argv)
            try:
                if argv[0] != 'zfs':
                    return execute.Completed(argv, 127, '', '%s: command not '
                                             'found\n' % argv[0])
                verb = argv[1]
                if verb in self.fail:
                    raise ZfsFailure(self.fail.pop(verb))
                out = getattr(self, '_zfs_' + verb)(argv[2:])
            except ZfsFailure as e:
                return execute.Completed(argv, 1, '', str(e) + '\n')
            return execute.Completed(argv, 0, out or '', '')

    def zfs_calls(self, verb=None):
        return [c[1:] for c in self.calls
                if c[0] == 'zfs' and (verb is None or c[1] == verb)]

    @staticmethod
    def _opts(args):
        props, rest, flags = {}, [], set()
        it = iter(args)
        for a in it:
            if a == '-o':
                k, v = next(it).split('=', 1)
                if k not in KNOWN_PROPS:
                    raise ZfsFailure("invalid property '%s'" % k)
                props[k] = v
            elif a == '-V':
                props['volsize'] = int(next(it))
            elif a.startswith('-'):
                flags.add(a)
            else:
                rest.append(a)
        return props, rest, flags

    def _check_new(self, name):
        if name in self.datasets:
            raise ZfsFailure("cannot create '%s': dataset already exists"
                             % name)
        self._get(name.rsplit('/', 1)[0])

    def _zfs_create(self, args):
        props, (name,), flags = self._opts(args)
        self._check_new(name)
        size = props.pop('volsize')
        refres = 0 if '-s' in flags else size
        if refres > self.free:
            raise ZfsFailure("cannot create '%s': out of space" % name)
        self.free -= refres
        self._add(name, 'volume', volsize=size, refreservation=refres,
                  props=props)

    def _zfs_snapshot(self, args):
        for name in args:
            self._get(name.split('@')[0])
            if name in self.datasets:
                raise ZfsFailure("cannot create snapshot '%s': dataset "
                                 "already exists" % name)
        txg = self.txg + 1
        for name in args:   # atomic: all or nothing, one txg
            self._add(name, 'snapshot',
                      volsize=self.datasets[name.split('@')[0]]['volsize'])
            self.datasets[name]['createtxg'] = self.txg = txg

    def _zfs_clone(self, args):
        props, (origin, name), _ = self._opts(args)
        snap = self._get(origin)
        self._check_new(name)
        for key in CREATE_ONLY & set(props):
            raise ZfsFailure("cannot create '%s': '%s' is readonly"
                             % (name, key))
        volsize = int(props.pop('volsize', snap['volsize']))
        base = self.datasets.get(origin.split('@')[0]) or {'props': {}}
        for key in CREATE_ONLY & set(base['props']):
            props[key] = base['props'][key]     # inherited from the origin
        refres = 0
        if props.pop('refreservation', None) == 'auto':
            refres = volsize
        self._add(name, 'volume', volsize=volsize, origin=origin,
                  refreservation=refres, props=props)

    def _zfs_destroy(self, args):
        _, (target,), flags = self._opts(args)
        if '-r' in flags or '-R' in flags:
            raise AssertionError('the driver must never use destroy -r/-R')
        if '@' in target:
            base, snaps = target.split('@')
            names = ['%s@%s' % (base, s) for s in snaps.split(',')]
            present = [n for n in names if n in self.datasets]
            if not present:
                raise ZfsFailure('could not find any snapshots to destroy; '
                                 'check snapshot names.')
            for n in present:
                if self.clones(n):
                    if '-d' not in flags:
                        raise ZfsFailure(
                            "cannot destroy '%s': snapshot has dependent "
                            "clones\nuse '-R' to destroy the following "
                            "datasets:\n%s" % (n, '\n'.join(self.clones(n))))
                    self.datasets[n]['defer_destroy'] = 'on'
                else:
                    del self.datasets[n]
            return
        ds = self._get(target)
        if self.snapshots(target):
            raise ZfsFailure("cannot destroy '%s': volume has children\nuse "
                             "'-r' to destroy the following datasets:\n%s"
                             % (target, '\n'.join(self.snapshots(target))))
        if target in self.busy:
            raise ZfsFailure("cannot destroy '%s': dataset is busy" % target)
        self.free += ds['refreservation']
        del self.datasets[target]
        origin = ds['origin']
        if origin and origin in self.datasets and not self.clones(origin) \
                and self.datasets[origin]['defer_destroy'] == 'on':
            del self.datasets[origin]  # zfs finishes a deferred destroy

    def _zfs_rename(self, args):
        old, new = args
        self._get(old)
        if new in self.datasets:
            raise ZfsFailure("cannot rename to '%s': dataset already exists"
                             % new)
        moved = collections.OrderedDict()
        for n, d in self.datasets.items():
            if n == old or n.startswith(old + '@'):
                n = new + n[len(old):]
                d['name'] = n
            if d['origin'] and (d['origin'] == old or
                                d['origin'].startswith(old + '@')):
                d['origin'] = new + d['origin'][len(old):]
            moved[n] = d
        self.datasets = moved

    def _zfs_promote(self, args):
        (name,) = args
        clone = self._get(name)
        if not clone['origin']:
            raise ZfsFailure("cannot promote '%s': not a cloned filesystem"
                             % name)
        origin_snap = self.datasets[clone['origin']]
        old = clone['origin'].split('@')[0]
        moving = [s for s in self.snapshots(old)
                  if self.datasets[s]['createtxg'] <= origin_snap['createtxg']]
        new_origin = self.datasets[old]['origin']
        for s in moving:
            new_s = name + '@' + s.split('@')[1]
            if new_s in self.datasets:
                raise ZfsFailure("cannot promote '%s': snapshot name "
                                 "conflict" % name)
        promoted_snap = name + '@' + clone['origin'].split('@')[1]
        for s in moving:
            self._zfs_rename([s, name + '@' + s.split('@')[1]])
        clone['origin'] = new_origin
        self.datasets[old]['origin'] = promoted_snap

    def _zfs_set(self, args):
        *assignments, name = args
        ds = self._get(name)
        for a in assignments:
            k, v = a.split('=', 1)
            if k not in KNOWN_PROPS:
                raise ZfsFailure("cannot set property for '%s': invalid "
                                 "property '%s'" % (name, k))
            if k == 'volsize':
                # real zfs lets a zvol shrink (and its data go): the host
                # code must never ask for that
                v = int(v)
                self.shrunk = getattr(self, 'shrunk', []) + (
                    [name] if v < ds['volsize'] else [])
                if ds['refreservation']:
                    grow = v - ds['volsize']
                    if grow > self.free:
                        raise ZfsFailure("cannot set property for '%s': out "
                                         "of space" % name)
                    self.free -= grow
                    ds['refreservation'] = v
                ds['volsize'] = v
            elif k == 'refreservation' and v == 'auto':
                need = (ds['volsize'] or 0) - ds['refreservation']
                if need > self.free:
                    raise ZfsFailure("cannot set property for '%s': size is "
                                     "greater than available space" % name)
                self.free -= need
                ds['refreservation'] = ds['volsize']
            elif k == 'refreservation':
                self.free += ds['refreservation']
                ds['refreservation'] = 0
            else:
                ds['props'][k] = v

    def _zfs_rollback(self, args):
        _, (target,), flags = self._opts(args)
        snap = self._get(target)
        base = target.split('@')[0]
        newer = [s for s in self.snapshots(base)
                 if self.datasets[s]['createtxg'] > snap['createtxg']]
        if newer and '-r' not in flags:
            raise ZfsFailure("cannot rollback to '%s': more recent snapshots "
                             "or bookmarks exist\nuse '-r' to force deletion "
                             "of the following snapshots and bookmarks:\n%s"
                             % (target, '\n'.join(newer)))
        if any(self.clones(s) for s in newer):
            raise ZfsFailure("cannot rollback to '%s': clones of previous "
                             "snapshots exist\nuse '-R' to force deletion of "
                             "the following clones and dependents:" % target)
        for s in newer:
            del self.datasets[s]
        self.datasets[base]['volsize'] = snap['volsize']

    def _zfs_get(self, args):
        # "get -H -p -o value PROP[,PROP] <name>"
        name, props = args[-1], args[-2].split(',')
        ds = self._get(name)
        return ''.join(self._field(ds, p) + '\n' for p in props)

    def _zfs_inherit(self, args):
        prop, name = args
        self._get(name)['props'].pop(prop, None)

    def _zfs_version(self, args):
        return 'zfs-%s-1\nzfs-kmod-%s-1\n' % (self.version, self.version)

    def _zfs_list(self, args):
        it = iter(args)
        fields, types, depth, target = None, 'all', 0, None
        for a in it:
            if a == '-o':
                fields = next(it).split(',')
            elif a == '-t':
                types = next(it)
            elif a == '-d':
                depth = int(next(it))
            elif not a.startswith('-'):
                target = a
        self._get(target)
        wanted = ({'filesystem', 'volume', 'snapshot'} if types == 'all'
                  else set(types.split(',')))
        lines = []
        order = sorted(self.datasets.items(), key=lambda kv: (
            kv[0].split('@')[0], '@' in kv[0], kv[1]['createtxg']))
        for name, ds in order:
            if not (name == target or name.startswith(target + '/') or
                    name.startswith(target + '@')):
                continue
            rel = name[len(target):]
            level = rel.count('/') + (1 if '@' in rel else 0)
            if level > depth or ds['type'] not in wanted:
                continue
            lines.append('\t'.join(self._field(ds, f) for f in fields))
        return '\n'.join(lines) + '\n'

    def _field(self, ds, f):
        name = ds['name']
        if f == 'name':
            return name
        if f == 'clones':
            return ','.join(self.clones(name)) if ds['type'] == 'snapshot' \
                else '-'
        if f == 'used':
            if ds['type'] == 'filesystem':
                return str(sum(d['refreservation'] or 0
                               for d in self.datasets.values()))
            return str(ds['refreservation'] or 0)
        if f == 'available':
            return str(self.free)
        if f == 'type':
            return ds['type']
        if f == 'volmode':
            return ds['props'].get(f, 'default')
        if ':' in f:   # user properties
            return ds['props'].get(f, '-')
        if f == 'volblocksize':
            if ds['type'] != 'volume':
                return '-'
            value = str(ds['props'].get(f, '16K'))
            scale = {'K': 1024, 'M': 1024 ** 2}.get(value[-1:], 1)
            return str(int(value.rstrip('KM')) * scale)
        if f == 'defer_destroy':
            return ds['defer_destroy'] if ds['type'] == 'snapshot' else '-'
        value = ds.get(f)
        return '-' if value is None else str(value)
