#!/usr/bin/env python3
"""Run e2e/run.py once per iSCSI target helper, each in its own lab guest.

tgt and LIO both want port 3260 in the guest, so each helper gets its own
guest (``python -m cinder_zol_lab run --target H -- python e2e/run.py``).
Every helper runs even when an earlier one failed; the last line adds them
up as ``N passed, M failed`` and the exit status is 1 if anything failed.

    python e2e/all.py                      # tgtadm, then lioadm
    python e2e/all.py --target lioadm      # one helper
    python e2e/all.py -- --keep --only 1   # options for run.py
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SUMMARY = re.compile(r'^(\d+) passed, (\d+) failed$')


def run_one(target: str, extra: list[str]) -> tuple[int, int, int, float]:
    argv = [sys.executable, '-m', 'cinder_zol_lab', 'run', '--target',
            target, '--', sys.executable, os.path.join(HERE, 'run.py'),
            *extra]
    print(f'e2e: === {target}: {" ".join(argv[1:])}', flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    passed = failed = None
    try:
        for line in proc.stdout:
            m = SUMMARY.match(line.strip())
            if m:
                passed, failed = int(m.group(1)), int(m.group(2))
                line = f'{target}: {line}'   # only the last line is bare
            sys.stdout.write(line)
            sys.stdout.flush()
        rc = proc.wait()
    except KeyboardInterrupt:
        # the lab CLI got the Ctrl-C too and tears its guest down
        proc.wait()
        raise
    dt = time.monotonic() - t0
    if passed is None:          # the guest or run.py died before the end
        passed, failed = 0, 1
    elif rc and not failed:
        failed = 1
    print(f'e2e: === {target}: exit {rc}, {passed} passed, {failed} failed '
          f'in {dt:.1f}s (guest boot and teardown included)', flush=True)
    return rc, passed, failed, dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--target', action='append',
                    choices=['tgtadm', 'lioadm'],
                    help='target helper(s) to run (default: both)')
    ap.add_argument('extra', nargs='*', help='options for run.py after --')
    args = ap.parse_args()
    t0 = time.monotonic()
    totals = [0, 0]
    lines = []
    for target in args.target or ['tgtadm', 'lioadm']:
        rc, p, f, dt = run_one(target, args.extra)
        totals[0] += p
        totals[1] += f
        lines.append(f'e2e: {target}: {p} passed, {f} failed ({dt:.1f}s)')
    for line in lines:
        print(line)
    print(f'e2e: total {time.monotonic() - t0:.1f}s')
    print(f'{totals[0]} passed, {totals[1]} failed', flush=True)
    return 1 if totals[1] else 0


if __name__ == '__main__':
    sys.exit(main())
