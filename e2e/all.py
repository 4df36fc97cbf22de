#!/usr/bin/env python3
"""Run e2e/run.py once per target helper, each in its own lab guest.

tgt and LIO both want port 3260 in the guest, so each helper gets its own
guest (``python -m cinder_zol_lab run --target H -- python e2e/run.py``);
the nvmet pass runs the NVMe-oF scenario only. The hosts pass (not run by
default: tox -e hosts runs it beside the link tests, in one boot) boots
two guests (``--hosts 2``, tgt) and runs the two-storage-host scenario.
Every helper runs even when an earlier one failed; the last lines name each
failed scenario and add them up as ``N passed, M failed``; the exit status
is 1 if anything failed.
The glance venv is made (or found in the cache) before the first guest
boots.

    python e2e/all.py                      # tgtadm, lioadm, then nvmet
    python e2e/all.py --target lioadm      # one helper
    python e2e/all.py -- --keep --only 1   # options for run.py
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cinder_zol_lab import services  # noqa: E402
from cinder_zol_lab import venvs  # noqa: E402

# a pass per target helper, each in its own guest; 'hosts' on request
PASSES = ['tgtadm', 'lioadm', 'nvmet']


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--target', action='append',
                    choices=PASSES + ['hosts'],
                    help='passes to run (default: %s)' % ', '.join(PASSES))
    ap.add_argument('extra', nargs='*', help='options for run.py after --')
    args = ap.parse_args()
    t0 = time.monotonic()
    if '--no-glance' not in args.extra:
        venvs.glance(log=lambda m: print(f'e2e: {m}', flush=True))
    total = services.Summary()
    lines = []
    for target in args.target or PASSES:
        extra = list(args.extra)
        if target in ('nvmet', 'hosts') and '--no-glance' not in extra:
            extra.append('--no-glance')     # their scenarios need no images
        argv = [sys.executable, str(HERE / 'run.py'), *extra]
        print(f'e2e: === {target}: lab run -- {" ".join(argv[1:])}',
              flush=True)
        if target == 'hosts':
            s = services.run_under_lab('tgtadm', argv, target, hosts=2)
        else:
            s = services.run_under_lab(target, argv, target)
        print(f'e2e: === {target}: exit {s.rc}, {s.line()} in '
              f'{s.seconds:.1f}s (guest boot and teardown included)',
              flush=True)
        total.passed += s.passed
        total.failed += s.failed
        lines.append(f'e2e: {target}: {s.line()} ({s.seconds:.1f}s)')
        lines.extend(f'e2e: {target}: FAILED {what}' for what in s.failures)
    for line in lines:
        print(line)
    print(f'e2e: total {time.monotonic() - t0:.1f}s')
    print(total.line(), flush=True)
    return 0 if total.ok else 1


if __name__ == '__main__':
    sys.exit(main())
