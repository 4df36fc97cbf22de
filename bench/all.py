"""bench/ratios.py in both storage-host modes, then root vs least privilege.

Each run boots its own lab guest (one at a time) so the two setups of the
README are measured the same way: least privilege (the default: the
driver logs in as cinder-zol, zfs runs under ``zfs allow``, targets through
the sudo root helper) and ``--mode root``. Prints each run's table, then
one table per target with both side by side. Numbers only; the exit status
says whether every run finished, never whether it was fast.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ('least-privilege', 'root')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--lio', action='store_true',
                   help='also run with LIO (lioadm) after tgt')
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--big', action='store_true',
                   help='also get_volume_stats at 1000 volumes (minutes)')
    p.add_argument('--eventlet', action='store_true',
                   help='monkey-patch with eventlet, like cinder-volume')
    return p.parse_args(argv)


def run(target, mode, args, out):
    """One lab guest, one ratios.py run; its JSON (rows so far) or None."""
    cmd = [sys.executable, '-m', 'cinder_zol_lab', 'run', '--target', target,
           '--mode', mode, '--', sys.executable,
           os.path.join(HERE, 'ratios.py'), '--json', out,
           '--repeat', str(args.repeat)]
    cmd += ['--big'] if args.big else []
    cmd += ['--eventlet'] if args.eventlet else []
    print('\n=== %s, %s ===' % (target, mode), flush=True)
    code = subprocess.call(cmd, cwd=os.path.dirname(HERE))
    if code != 0:
        print('bench: %s/%s failed (exit status %s)' % (target, mode, code),
              flush=True)
    if not os.path.exists(out):
        return None
    with open(out) as f:
        result = json.load(f)
    result['ok'] = code == 0
    return result


def side_by_side(target, results):
    """Driver time and ratio per operation, least privilege then root."""
    lp, root = results.get('least-privilege'), results.get('root')
    rows = {}
    for mode, result in results.items():
        for row in (result or {}).get('rows', []):
            rows.setdefault(row['key'], {'label': row['label']})[mode] = row
    print('\n%s: root vs least-privilege (driver s, ratio to floor, round '
          'trips; lp/root = driver time least-privilege / root)' % target)
    print('%-44s %18s %18s' % ('', 'least-privilege', 'root'))
    print('%-44s %8s %5s %3s %8s %5s %3s %7s' % (
        'operation', 'driver s', 'ratio', 'rt', 'driver s', 'ratio', 'rt',
        'lp/root'))
    for key, row in rows.items():
        cells = []
        for mode in MODES:
            r = row.get(mode)
            cells.append('%8.3f %5.2f %3d' % (r['driver'], r['ratio'],
                                              r['trips'])
                         if r else '%8s %5s %3s' % ('-', '-', '-'))
        a, b = row.get('least-privilege'), row.get('root')
        rel = '%7.2f' % (a['driver'] / b['driver']) if a and b else '-'
        print('%-44s %s %s %s' % (row['label'][:44], cells[0], cells[1],
                                  rel))
    for name, result in (('least-privilege', lp), ('root', root)):
        if result:
            print('  %s: %s' % (name, ', '.join(
                '%s %s' % (k, v) for k, v in sorted(result['meta'].items()))))


def main(argv=None):
    args = parse_args(argv)
    targets = ['tgtadm'] + (['lioadm'] if args.lio else [])
    tables = {}
    ok = True
    with tempfile.TemporaryDirectory(prefix='cinder-zol-bench-') as tmp:
        for target in targets:
            for mode in MODES:
                result = run(target, mode, args,
                             os.path.join(tmp, '%s-%s.json' % (target, mode)))
                ok = ok and bool(result and result['ok'])
                tables.setdefault(target, {})[mode] = result
    for target in targets:
        side_by_side(target, tables[target])
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
