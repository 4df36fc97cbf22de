"""An in-memory storage host that answers zfs commands like OpenZFS does.

It refuses what real zfs refuses (destroying a snapshot with clones or a
zvol with snapshots, busy zvols, existing names, rollback past newer
snapshots) with zfs's own messages, so the unit tier exercises the same
error paths the real-host tier sees.
"""

import collections

from oslo_concurrency import processutils

from cinder_zol import runner
from cinder_zol import zfs

KNOWN_PROPS = {'volblocksize', 'compression', 'refreservation', 'volsize',
               'logbias', 'sync', 'primarycache', zfs.MANAGED_PROP}


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
        pool = parent.split('/')[0]
        for name in (pool, parent):
            self._add(name, 'filesystem')

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

    def run(self, argv, input=None, timeout=None, check_exit_code=True):
        argv = list(argv)
        self.calls.append(argv)
        runner.command_line(argv)  # same validation as the real runner
        try:
            if argv[0] != 'zfs':
                raise ZfsFailure('%s: command not found' % argv[0])
            verb = argv[1]
            if verb in self.fail:
                raise ZfsFailure(self.fail.pop(verb))
            out = getattr(self, '_zfs_' + verb)(argv[2:])
        except ZfsFailure as e:
            raise processutils.ProcessExecutionError(
                exit_code=127 if 'not found' in str(e) else 1,
                stderr=str(e) + '\n', stdout='', cmd=' '.join(argv))
        return runner.Result(out or '', '')

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
        (name,) = args
        ds_name = name.split('@')[0]
        self._get(ds_name)
        if name in self.datasets:
            raise ZfsFailure("cannot create snapshot '%s': dataset already "
                             "exists" % name)
        self._add(name, 'snapshot',
                  volsize=self.datasets[ds_name]['volsize'])

    def _zfs_clone(self, args):
        props, (origin, name), _ = self._opts(args)
        snap = self._get(origin)
        self._check_new(name)
        refres = 0
        if props.pop('refreservation', None) == 'auto':
            refres = snap['volsize']
        self._add(name, 'volume', volsize=snap['volsize'], origin=origin,
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
                v = int(v)
                if v < ds['volsize']:
                    raise ZfsFailure("cannot set property for '%s': volume "
                                     "size cannot be decreased" % name)
                if ds['refreservation']:
                    grow = v - ds['volsize']
                    if grow > self.free:
                        raise ZfsFailure("cannot set property for '%s': out "
                                         "of space" % name)
                    self.free -= grow
                    ds['refreservation'] = v
                ds['volsize'] = v
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
        # only "get -H -p -o value type <name>" is used
        name = args[-1]
        return self._get(name)['type'] + '\n'

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
        if f == zfs.MANAGED_PROP:
            return ds['props'].get(f, '-')
        if f == 'defer_destroy':
            return ds['defer_destroy'] if ds['type'] == 'snapshot' else '-'
        value = ds.get(f)
        return '-' if value is None else str(value)
