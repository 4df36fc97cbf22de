"""Each driver operation next to its floor, on the lab guest; numbers only.

The floor of an operation is the state change it makes on the storage host
(the same zfs, tgtadm or rtslib work, without the driver's reads and
checks) sent as ONE shell command, as root, over the lab's already-open
SSH connection (GuestShell's control master). Driver and floor run in the
same process, alternately, so the ratio survives the noise of a shared,
emulated machine better than either time alone. Nothing is asserted.

Run in a lab guest (``python -m cinder_zol_lab run --target tgtadm --
python bench/ratios.py``), or through bench/all.py for both storage-host
modes side by side. Threads are native unless --eventlet, which
monkey-patches first as cinder-volume does.
"""

import argparse
import json
import os
import secrets
import statistics
import string
import sys
import time

GiB = 2 ** 30
CONCURRENCY = 8
INITIATOR = 'iqn.2026-12.org.cinder-zol:bench'
CONNECTOR = {'initiator': INITIATOR, 'ip': '127.0.0.1', 'host': 'bench',
             'multipath': False}
MANAGED = 'cinder_zol:managed=yes'
# What the tgt helper binds besides the real initiators (host/root/tgt.py).
TGT_PLACEHOLDER_INITIATOR = 'iqn.2010-10.org.openstack:cinder-zol.nobody'
TGT_PLACEHOLDER_ADDRESS = '255.255.255.255'
FLOOR_TID = 1000   # + serial: clear of the helper's max + 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--repeat', type=int, default=3,
                   help='repeats per operation (median is shown)')
    p.add_argument('--big', action='store_true',
                   help='also get_volume_stats at 1000 volumes (minutes)')
    p.add_argument('--eventlet', action='store_true',
                   help='monkey-patch with eventlet first, like '
                        'cinder-volume (green instead of native threads)')
    p.add_argument('--json', metavar='FILE',
                   help='also write the results as JSON (for bench/all.py)')
    p.add_argument('--only', metavar='KEY', action='append',
                   help='run only these operations (keys as in --json)')
    return p.parse_args(argv)


def _random(n):
    alphabet = string.ascii_letters + string.digits
    return ''.join(secrets.choice(alphabet) for _ in range(n))


class Bench(object):
    """Times driver calls and floor commands; keeps the rows."""

    def __init__(self, shell, drv, ctxt, repeat, log=print):
        import threading
        self.shell = shell
        self.drv = drv
        self.ctxt = ctxt
        self.repeat = repeat
        self.log = log
        self.parent = shell.parent
        self.rows = []
        self.trips = 0
        self._lock = threading.Lock()
        self._serial = 0
        self._count_trips(drv.runner)

    # -- plumbing ----------------------------------------------------------

    def _count_trips(self, runner):
        """Count the runner's round trips to the storage host."""
        for name in ('request', 'run', 'send_stream', 'receive_stream'):
            real = getattr(runner, name)

            def counted(*args, _real=real, **kwargs):
                with self._lock:
                    self.trips += 1
                return _real(*args, **kwargs)
            setattr(runner, name, counted)

    def sh(self, script, timeout=600):
        """Untimed setup and cleanup in the guest, as root."""
        return self.shell.run(script, timeout=timeout).stdout

    def name(self):
        """A short name for a floor-side dataset."""
        self._serial += 1
        return 'bf%d' % self._serial

    def path(self, name, snap=None):
        return '%s/%s%s' % (self.parent, name, '@' + snap if snap else '')

    def zvols(self, *names):
        """Shell lines creating managed sparse 1 GiB zvols, as the driver."""
        return ''.join('zfs create -V %d -s -o %s %s\n'
                       % (GiB, MANAGED, self.path(n)) for n in names)

    def volume(self, size=1):
        from cinder_zol_lab import demo
        return demo.make_volume(self.ctxt, size)

    def snapshot(self, vol):
        from cinder_zol_lab import demo
        return demo.make_snapshot(self.ctxt, vol)

    def clean_targets(self):
        """No exports left (tgt targets must not outgrow their tids)."""
        self.shell.drop_exports()
        left = self.shell.targets()
        if left:
            raise RuntimeError('exports left after cleaning: %s' % left)

    def _time_driver(self, call):
        before = self.trips
        t0 = time.monotonic()
        call()
        return time.monotonic() - t0, self.trips - before

    def _time_floor(self, floor):
        t0 = time.monotonic()
        self.shell.run(floor, timeout=600)
        return time.monotonic() - t0

    def measure(self, key, label, prepare, between=None):
        """Median driver and floor time of an operation over the repeats.

        ``prepare(n)`` sets both sides up for n repeats at once (untimed)
        and returns n pairs of driver call and floor command; each pair
        runs in alternating order. Nothing is cleaned up in between (the
        guest is thrown away), except by ``between()`` if given.
        """
        driver, floor, trips = [], [], []
        for i, (call, command) in enumerate(prepare(self.repeat)):
            for step in ('driver', 'floor')[::1 if i % 2 == 0 else -1]:
                if step == 'driver':
                    dt, n = self._time_driver(call)
                    driver.append(dt)
                    trips.append(n)
                else:
                    floor.append(self._time_floor(command))
            if between:
                between()
        self.add(key, label, statistics.median(driver),
                 statistics.median(floor), max(trips), command)

    def add(self, key, label, driver, floor, trips, command):
        row = {'key': key, 'label': label, 'driver': driver,
               'floor': floor, 'ratio': driver / floor if floor else None,
               'trips': trips, 'floor_command': _shown(command)}
        self.rows.append(row)
        self.log(_format_row(row))
        return row

    # -- single-volume operations --------------------------------------

    def _pairs(self, n, extra='', snapshot=False):
        """n driver volumes and n floor zvols, made here in one command.

        ``extra``: more setup lines per zvol, with Z for its path;
        ``snapshot``: each has a snapshot (the driver's named as Cinder
        names it, the floor's ``s``). Zvols are made in parallel (setup
        time is most of a run) and udev is settled at the end, as it is by
        the time Cinder acts on a volume.
        """
        pairs = [(self.volume(), self.name()) for _ in range(n)]
        paths = [self.path(x) for vol, f in pairs for x in (vol.name, f)]
        script = _PARALLEL % ''.join(
            '(zfs create -V %d -s -o %s %s) &\n' % (GiB, MANAGED, p)
            for p in paths)
        if extra:
            script += _PARALLEL % ''.join(
                '(set -e\n%s) &\n' % extra.replace('Z', p) for p in paths)
        if snapshot:
            snaps = [self.snapshot(vol) for vol, f in pairs]
            script += 'zfs snapshot %s\n' % ' '.join(
                '%s %s' % (self.path(vol.name, snap.name), self.path(f, 's'))
                for (vol, f), snap in zip(pairs, snaps))
            pairs = [(vol, f, snap) for (vol, f), snap in zip(pairs, snaps)]
        self.sh('set -e\n' + script + 'udevadm settle\n' + ''.join(
            _WAIT_DEVICE % {'p': p} for p in paths))
        return pairs

    def _create_pairs(self, n):
        return [(lambda v=self.volume(): self.drv.create_volume(v),
                 ['zfs', 'create', '-V', str(GiB), '-s', '-o', MANAGED,
                  self.path(self.name())]) for _ in range(n)]

    def create_volume(self):
        self.measure('create_volume', 'create_volume (1 GiB sparse)',
                     self._create_pairs)

    def delete_volume(self):
        def prepare(n):
            return [(lambda v=vol: self.drv.delete_volume(v),
                     ['zfs', 'destroy', self.path(f)])
                    for vol, f in self._pairs(n)]
        self.measure('delete_volume', 'delete_volume (no dependents)',
                     prepare)

    def delete_hidden(self):
        def prepare(n):
            # a clone of each, as create_cloned_volume leaves it
            extra = ('zfs snapshot Z@clone-c\n'
                     'zfs clone -o %s Z@clone-c Z-c\n'
                     'zfs destroy -d Z@clone-c\n' % MANAGED)
            return [(lambda v=vol: self.drv.delete_volume(v),
                     ['zfs', 'rename', self.path(f),
                      self.path('deleted-%s-0' % f)])
                    for vol, f in self._pairs(n, extra)]
        self.measure('delete_hidden',
                     'delete_volume (dependent clone: hide)', prepare)

    def create_snapshot(self):
        def prepare(n):
            return [(lambda s=self.snapshot(vol): self.drv.create_snapshot(s),
                     ['zfs', 'snapshot', self.path(f, 's')])
                    for vol, f in self._pairs(n)]
        self.measure('create_snapshot', 'create_snapshot', prepare)

    def delete_snapshot(self):
        def prepare(n):
            return [(lambda s=snap: self.drv.delete_snapshot(s),
                     ['zfs', 'destroy', '-d', self.path(f, 's')])
                    for vol, f, snap in self._pairs(n, snapshot=True)]
        self.measure('delete_snapshot', 'delete_snapshot', prepare)

    def _clone_pairs(self, n):
        out = []
        for vol, f in self._pairs(n):
            new, g = self.volume(), self.name()
            snap = self.path(f, 'clone-' + g)
            out.append((
                lambda v=vol, new=new: self.drv.create_cloned_volume(new, v),
                'set -e; zfs snapshot %s; zfs clone -o %s %s %s; '
                'zfs destroy -d %s' % (snap, MANAGED, snap, self.path(g),
                                       snap)))
        return out

    def create_cloned_volume(self):
        self.measure('create_cloned_volume', 'create_cloned_volume',
                     self._clone_pairs)

    def create_volume_from_snapshot(self):
        def prepare(n):
            return [(lambda s=snap, new=self.volume():
                     self.drv.create_volume_from_snapshot(new, s),
                     ['zfs', 'clone', '-o', MANAGED, self.path(f, 's'),
                      self.path(self.name())])
                    for vol, f, snap in self._pairs(n, snapshot=True)]
        self.measure('create_volume_from_snapshot',
                     'create_volume_from_snapshot', prepare)

    def extend_volume(self):
        def prepare(n):
            return [(lambda v=vol: self.drv.extend_volume(v, 2),
                     ['zfs', 'set', 'volsize=%d' % (2 * GiB), self.path(f)])
                    for vol, f in self._pairs(n)]
        self.measure('extend_volume', 'extend_volume (1 -> 2 GiB)', prepare)

    def revert_to_snapshot(self):
        def prepare(n):
            return [(lambda v=vol, s=snap: self.drv.revert_to_snapshot(
                     self.ctxt, v, s),
                     ['zfs', 'rollback', self.path(f, 's')])
                    for vol, f, snap in self._pairs(n, snapshot=True)]
        self.measure('revert_to_snapshot', 'revert_to_snapshot', prepare)

    # -- exports -------------------------------------------------------

    def _attach(self, vol):
        update = self.drv.create_export(self.ctxt, vol, CONNECTOR) or {}
        for key, value in update.items():
            setattr(vol, key, value)
        return self.drv.initialize_connection(vol, CONNECTOR)

    def _detach(self, vol):
        self.drv.terminate_connection(vol, CONNECTOR)
        self.drv.remove_export(self.ctxt, vol)

    def _floor_export(self, f):
        """The export's state change, as the helper makes it, one command."""
        iqn = 'iqn.2010-10.org.openstack:' + f
        chap = (_random(20), _random(16))
        device = '/dev/zvol/' + self.path(f)
        number = int(f[len('bf'):])
        serial = '00000000-0000-4000-8000-%012d' % number
        if self.shell.lio:
            export = _LIO_EXPORT % {
                'name': f, 'device': device, 'serial': serial, 'iqn': iqn,
                'port': self.shell.iscsi_port, 'initiator': INITIATOR,
                'user': chap[0], 'secret': chap[1]}
            remove = _LIO_REMOVE % {'name': f, 'iqn': iqn}
            return export, remove
        tgt = 'tgtadm --lld iscsi '
        tid = '--tid %d' % (FLOOR_TID + number)
        conf = '/etc/tgt/conf.d/cinder-zol-%s.conf' % f
        export = ''.join(tgt + line + '\n' for line in (
            '--mode target --op new %s --targetname %s' % (tid, iqn),
            '--mode logicalunit --op new %s --lun 1 --backing-store %s'
            % (tid, device),
            '--mode logicalunit --op update %s --lun 1 --params '
            'scsi_id=%s,scsi_sn=%s' % (tid, serial, serial),
            '--mode account --op new --user %s --password %s' % chap,
            '--mode account --op bind %s --user %s' % (tid, chap[0]),
            '--mode target --op bind %s --initiator-address %s'
            % (tid, TGT_PLACEHOLDER_ADDRESS),
            '--mode target --op bind %s --initiator-name %s'
            % (tid, TGT_PLACEHOLDER_INITIATOR),
            '--mode target --op bind %s --initiator-name %s'
            % (tid, INITIATOR)))
        export = 'set -e\n' + export + _TGT_CONF % {
            'conf': conf, 'iqn': iqn, 'device': device, 'serial': serial,
            'user': chap[0], 'secret': chap[1],
            'address': TGT_PLACEHOLDER_ADDRESS,
            'placeholder': TGT_PLACEHOLDER_INITIATOR,
            'initiator': INITIATOR}
        remove = ('set -e\n' + tgt + '--mode target --op delete --force %s\n'
                  % tid + tgt + '--mode account --op delete --user %s\n'
                  % chap[0] + 'rm -f %s\n' % conf)
        return export, remove

    def _export_pairs(self, n):
        return [(lambda v=vol: self._attach(v), self._floor_export(f)[0])
                for vol, f in self._pairs(n)]

    def export(self):
        self.measure('export', 'create_export + initialize_connection',
                     self._export_pairs, between=self.clean_targets)

    def unexport(self):
        def prepare(n):
            pairs = self._pairs(n)
            floors = [self._floor_export(f) for vol, f in pairs]
            for vol, f in pairs:
                self._attach(vol)
            self.sh(''.join(export for export, remove in floors))
            return [(lambda v=vol: self._detach(v), remove)
                    for (vol, f), (export, remove) in zip(pairs, floors)]
        self.measure('unexport', 'terminate_connection + remove_export',
                     prepare)

    # -- scale ---------------------------------------------------------

    def stats(self, counts):
        """get_volume_stats(refresh=True) with more and more zvols.

        Runs first, on an empty parent, so the counts are exact. The zvols
        have no device nodes (volmode=none): the stats read only the
        parent's space, and udev under emulation would take minutes.
        """
        have = 0
        floor = ['zfs', 'get', '-H', '-p', '-o', 'value', 'used,available',
                 self.parent]
        for count in counts:
            self.log('  (creating zvols %d..%d for the stats rows)'
                     % (have + 1, count))
            self.sh('set -eo pipefail; seq %d %d | xargs -P 4 -I @ '
                    'zfs create -V %d -s -o volmode=none -o %s %s/stats-@'
                    % (have + 1, count, GiB, MANAGED, self.parent),
                    timeout=7200)
            have = count
            driver, floors, trips = [], [], []
            for i in range(max(self.repeat, 3)):
                dt, n = self._time_driver(
                    lambda: self.drv.get_volume_stats(refresh=True))
                driver.append(dt)
                trips.append(n)
                floors.append(self._time_floor(floor))
            self.add('stats_%d' % count,
                     'get_volume_stats (refresh) at %d volumes' % count,
                     statistics.median(driver), statistics.median(floors),
                     max(trips), floor)

    def concurrent(self, n=CONCURRENCY):
        """N creates, clones and exports at once next to N bare at once.

        First with the configured SSH pool (ssh_max_pool_conn, Cinder's
        default 5: N above it wait for a connection), then with a pool of
        N, which is what an operator expecting N at once would set.
        """
        kinds = (('create', 'create_volume', self._create_pairs, None),
                 ('clone', 'create_cloned_volume', self._clone_pairs, None),
                 ('export', 'export + initialize', self._export_pairs,
                  self.clean_targets))
        configured = self.drv.configuration.ssh_max_pool_conn
        for pool in sorted({configured, n}):
            self._pool(pool)
            for kind, label, prepare, between in kinds:
                # rtslib processes cannot change LIO at once (portals,
                # saveconfig): the bare LIO exports run one after another
                serial = kind == 'export' and self.shell.lio
                self._concurrent('concurrent_%s_%d_pool%d' % (kind, n, pool),
                                 '%d concurrent %s (pool %d)%s'
                                 % (n, label, pool, '*' if serial else ''),
                                 n, prepare, between, serial)
        if self.shell.lio:
            self.log("  * the bare LIO exports ran one after another in one "
                     "shell: rtslib processes cannot change LIO at once")
        self._pool(configured)

    def _pool(self, size):
        """A fresh driver runner with ``size`` pooled connections, open."""
        from oslo_config import cfg
        cfg.CONF.set_override('ssh_max_pool_conn', size,
                              self.drv.configuration.config_group)
        self.drv.runner.close()
        self.drv.do_setup(self.ctxt)
        self._count_trips(self.drv.runner)
        # a running cinder-volume has its pool open: open it first
        self._in_threads([self.drv.storage.space] * size)

    def _concurrent(self, key, label, n, prepare, between, serial=False):
        """``serial``: the bare commands run in one shell, one by one."""
        driver, floor, trips = [], [], []
        command = None
        for i in range(self.repeat):
            pairs = prepare(n)
            calls = [call for call, _ in pairs]
            if serial:
                script = '\n'.join(c for _, c in pairs)
                floors = [lambda: self.shell.run(script, timeout=600)]
            else:
                floors = [lambda c=c: self.shell.run(c, timeout=600)
                          for _, c in pairs]
            command = pairs[-1][1]
            before = self.trips
            for step in (['driver', 'floor'] if i % 2 == 0
                         else ['floor', 'driver']):
                if step == 'driver':
                    driver.append(self._in_threads(calls))
                else:
                    floor.append(self._in_threads(floors))
            trips.append(self.trips - before)
            if between:
                between()
        self.add(key, label, statistics.median(driver),
                 statistics.median(floor), max(trips),
                 '%d %s: %s' % (n, 'one by one' if serial else 'at once',
                                _shown(command)))

    @staticmethod
    def _in_threads(calls):
        """Run the calls at once in threads; the wall time of all."""
        import threading
        errors = []

        def run(call):
            try:
                call()
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=run, args=(c,)) for c in calls]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.monotonic() - t0
        if errors:
            raise errors[0]
        return dt


# Run the background jobs of %s; fail if any failed.
_PARALLEL = '''%sfor job in $(jobs -p); do wait $job; done
'''

# the export needs the /dev/zvol link; under load it may lag the settle
# (measured: a zvol's udev event is sometimes lost on a loaded guest;
# a change event makes udev add the link)
_WAIT_DEVICE = '''for i in $(seq 300); do
    [ -e /dev/zvol/%(p)s ] && break
    [ $i = 50 ] && udevadm trigger --action=change --subsystem-match=block
    sleep 0.1
done
[ -e /dev/zvol/%(p)s ] || { echo "no /dev/zvol/%(p)s" >&2; exit 1; }
'''


_TGT_CONF = '''umask 077
cat > %(conf)s.new <<'EOF'
<target %(iqn)s>
    driver iscsi
    backing-store %(device)s
    scsi_id %(serial)s
    scsi_sn %(serial)s
    incominguser %(user)s %(secret)s
    initiator-address %(address)s
    initiator-name %(placeholder)s
    initiator-name %(initiator)s
</target>
EOF
sync %(conf)s.new
mv %(conf)s.new %(conf)s
'''

_LIO_EXPORT = '''python3 - <<'EOF'
import rtslib_fb as r
root = r.RTSRoot()
so = r.BlockStorageObject('%(name)s', dev='%(device)s', wwn='%(serial)s')
tpg = r.TPG(r.Target(r.FabricModule('iscsi'), '%(iqn)s', mode='create'), 1,
            mode='create')
tpg.set_attribute('generate_node_acls', '0')
tpg.set_attribute('authentication', '1')
r.NetworkPortal(tpg, '0.0.0.0', %(port)d, mode='create')
lun = r.LUN(tpg, storage_object=so)
acl = r.NodeACL(tpg, '%(initiator)s', mode='create')
acl.chap_userid, acl.chap_password = '%(user)s', '%(secret)s'
r.MappedLUN(acl, lun.lun, lun.lun)
tpg.enable = True
root.save_to_file()
EOF
'''

_LIO_REMOVE = '''python3 - <<'EOF'
import rtslib_fb as r
root = r.RTSRoot()
r.Target(r.FabricModule('iscsi'), '%(iqn)s', mode='lookup').delete()
r.BlockStorageObject('%(name)s').delete()
root.save_to_file()
EOF
'''


def _shown(command):
    """A floor command as text, CHAP secrets masked."""
    if command is None:
        return ''
    if isinstance(command, list):
        import shlex
        command = shlex.join(command)
    import re
    command = re.sub(r'(--password|incominguser \S+) \S+', r'\1 ***',
                     command)
    return re.sub(r"(chap_password = '[^']*', )'[^']*'", r"\1'***'",
                  command)


SINGLE = ('create_volume', 'delete_volume', 'delete_hidden',
          'create_snapshot', 'delete_snapshot', 'create_cloned_volume',
          'create_volume_from_snapshot', 'extend_volume',
          'revert_to_snapshot')


def targets(rows):
    """Overhead targets against this run's numbers (no verdict).

    Each driver operation within a small factor of its floor, stats that
    grow little with the number of volumes, and concurrent operations
    about as fast as the same bare commands run concurrently.
    """
    by_key = {r['key']: r for r in rows}
    lines = ['overhead targets, this run:']

    def check(what, pairs, limit):
        shown = ', '.join('%s %.2f' % (k, v) for k, v in pairs)
        over = [k for k, v in pairs if v > limit]
        lines.append('  %s <= %.1f: %s -> %s' % (
            what, limit, shown or 'not measured',
            ('over: ' + ', '.join(over)) if over else
            ('all within' if pairs else '-')))
    check('single-volume op / floor', [(k, by_key[k]['ratio'])
                                       for k in SINGLE if k in by_key], 1.1)
    check('export+init / bare target commands',
          [(k, by_key[k]['ratio']) for k in ('export',) if k in by_key],
          1.5)
    stats = sorted((int(k.split('_')[1]), r) for k, r in by_key.items()
                   if k.startswith('stats_'))
    if len(stats) > 1:
        check('stats at %d / stats at %d' % (stats[-1][0], stats[0][0]),
              [('driver', stats[-1][1]['driver'] / stats[0][1]['driver'])],
              2.0)
    check('N concurrent operations / N bare', [
        (k, r['ratio']) for k, r in by_key.items()
        if k.startswith('concurrent_')], 1.2)
    return lines


HEADER = '%-44s %9s %8s %7s %6s' % (
    'operation', 'driver s', 'floor s', 'ratio', 'trips')


def _format_row(row):
    ratio = '%.2f' % row['ratio'] if row['ratio'] else '-'
    return '%-44s %9.3f %8.3f %7s %6d' % (row['label'], row['driver'],
                                          row['floor'], ratio, row['trips'])


def main(argv=None):
    args = parse_args(argv)
    if args.eventlet:
        from cinder import monkey_patch
        monkey_patch.patch()
    # the lab lives next to this directory, not among installed packages
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from cinder_zol_lab import demo
    from cinder_zol_lab.shell import GuestShell

    shell = GuestShell.from_env()
    t0 = time.monotonic()
    drv, ctxt = demo.make_driver(shell)
    version = drv.storage.version()
    meta = {'target': drv.target.helper, 'mode': shell.mode or '?',
            'login': shell.login, 'zfs': version.get('zfs'),
            'profile': os.environ.get('CINDER_ZOL_LAB_PROFILE') or 'default',
            'threads': 'eventlet' if args.eventlet else 'native',
            'repeat': args.repeat}
    print('bench: target %(target)s, mode %(mode)s (driver logs in as '
          '%(login)s), OpenZFS %(zfs)s, profile %(profile)s, %(threads)s '
          'threads, median of %(repeat)d' % meta, flush=True)
    print('floor: the same state change as ONE command as root over the '
          "lab's open ssh connection; trips: driver round trips", flush=True)
    print(HEADER, flush=True)
    bench = Bench(shell, drv, ctxt, args.repeat,
                  log=lambda m: print(m, flush=True))
    shell.scrub()
    steps = [('stats', lambda: bench.stats((10, 100, 1000) if args.big
                                           else (10, 100))),
             ('create_volume', bench.create_volume),
             ('delete_volume', bench.delete_volume),
             ('delete_hidden', bench.delete_hidden),
             ('create_snapshot', bench.create_snapshot),
             ('delete_snapshot', bench.delete_snapshot),
             ('create_cloned_volume', bench.create_cloned_volume),
             ('create_volume_from_snapshot',
              bench.create_volume_from_snapshot),
             ('extend_volume', bench.extend_volume),
             ('revert_to_snapshot', bench.revert_to_snapshot),
             ('export', bench.export),
             ('unexport', bench.unexport),
             ('concurrent', bench.concurrent)]
    # nothing is cleaned up at the end: the lab guest is thrown away
    failed = []
    for key, step in steps:
        if not args.only or key in args.only:
            try:
                step()
            except Exception as e:
                # the other rows still say something
                failed.append(key)
                print('%-44s failed: %s' % (key, str(e).splitlines()[0]),
                      flush=True)
    for line in targets(bench.rows):
        print(line)
    print('floor commands (last repeat):')
    for row in bench.rows:
        print('  %s:\n    %s' % (row['key'], row['floor_command'].strip()
                                 .replace('\n', '\n    ')))
    print('bench: %.0f s' % (time.monotonic() - t0))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'meta': meta, 'rows': bench.rows, 'failed': failed},
                      f, indent=1)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
