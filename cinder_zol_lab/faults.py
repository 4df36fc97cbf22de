"""The fault table: every injected fault of a functional run, and its outcome.

stestr shows a passing test's stdout to nobody, so each fault test appends
its rows (``record``) to ``faults.tsv`` in the lab's run dir; the lab
process prints them when its command ends (``python -m cinder_zol_lab
run``), or, with $CINDER_ZOL_LAB_FAULT_TABLE set, adds them to that file,
and ``python -m cinder_zol_lab faults FILE`` prints the table of all runs
at once (tox -e functional: tgt, then LIO). Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE = 'faults.tsv'            # in the lab run dir
COLLECT_ENV = 'CINDER_ZOL_LAB_FAULT_TABLE'
TARGET_ENV = 'CINDER_ZOL_LAB_TARGET'
RUN_DIR_ENV = 'CINDER_ZOL_LAB_RUN_DIR'


def _clean(text: str) -> str:
    return ' '.join(str(text).split())


def record(fault: str, result: str, env=os.environ) -> None:
    """Add one row for this run (a no-op outside a lab run)."""
    run_dir = env.get(RUN_DIR_ENV)
    if not run_dir:
        return
    with open(Path(run_dir) / FILE, 'a') as f:
        f.write('%s\t%s\t%s\n' % (env.get(TARGET_ENV) or '-',
                                  _clean(fault), _clean(result)))


def rows(path: Path) -> list[tuple[str, str, str]]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [tuple(line.split('\t', 2)) for line in text.splitlines()
            if line.count('\t') >= 2]


def table(rows: list[tuple[str, str, str]]) -> str:
    """Rows as text, one line per fault: target, fault, outcome."""
    if not rows:
        return 'fault table: no fault was injected'
    fw = max(len(fault) for _target, fault, _result in rows)
    lines = ['fault table (%d rows)' % len(rows),
             '%-8s %-*s  %s' % ('target', fw, 'fault', 'outcome'),
             '%s %s  %s' % ('-' * 8, '-' * fw, '-' * 7)]
    for target, fault, result in rows:
        lines.append('%-8s %-*s  %s' % (target, fw, fault, result))
    return '\n'.join(lines)


def hand_over(run_dir: Path, log, env=os.environ) -> None:
    """At the end of a lab run: print this run's table, or collect it."""
    found = rows(Path(run_dir) / FILE)
    if not found:
        return
    collect = env.get(COLLECT_ENV)
    if collect:
        with open(collect, 'a') as f:
            f.writelines('\t'.join(r) + '\n' for r in found)
    else:
        log(table(found))
