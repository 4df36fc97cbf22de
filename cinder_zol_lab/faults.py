"""Injected faults: holding a guest command mid-flight, and the fault table.

``hold`` bind-mounts a wrapper over a program in the guest (``zfs``,
``tgtadm``): a call whose argv matches waits there until released, so a
test can kill a session, restart sshd or reboot the host exactly while an
operation is half done.

The fault table has one row per injected fault and its outcome. stestr
shows a passing test's stdout to nobody, so each fault test appends its
rows (``record``) to ``faults.tsv`` in the lab's run dir; the lab process
prints them when its command ends (``python -m cinder_zol_lab run``), or,
with $CINDER_ZOL_LAB_FAULT_TABLE set, adds them to that file, and ``python
-m cinder_zol_lab faults FILE`` prints the table of all runs at once (tox
-e functional: tgt, then LIO). Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import os
from pathlib import Path
import shlex
import textwrap
import time

from cinder_zol_lab.shell import GuestShell

FILE = 'faults.tsv'            # in the lab run dir
FAILED = 'failed.tsv'          # the tests that failed, same columns
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


def table(rows: list[tuple[str, str, str]], title: str = 'fault table',
          what: str = 'fault', outcome: str = 'outcome') -> str:
    """Rows as text, one line per fault: target, fault, outcome."""
    if not rows:
        return 'fault table: no fault was injected'
    fw = max([len(what)] + [len(fault) for _target, fault, _result in rows])
    lines = ['%s (%d rows)' % (title, len(rows)),
             '%-8s %-*s  %s' % ('target', fw, what, outcome),
             '%s %s  %s' % ('-' * 8, '-' * fw, '-' * len(outcome))]
    for target, fault, result in rows:
        lines.append('%-8s %-*s  %s' % (target, fw, fault, result))
    return '\n'.join(lines)


def failed_table(rows: list[tuple[str, str, str]]) -> str:
    """The tests that failed in the lab runs, last so a log's tail has it."""
    if not rows:
        return 'failed tests: none'
    return table(rows, 'FAILED tests', 'test', 'error')


def record_failed(run_dir: Path, failed: list[tuple[str, str]],
                  env=os.environ) -> None:
    """Add (test, last line of its error) rows of this run's failures."""
    with open(Path(run_dir) / FAILED, 'a') as f:
        target = env.get(TARGET_ENV) or '-'
        f.writelines('%s\t%s\t%s\n' % (target, _clean(test), _clean(error))
                     for test, error in failed)


def stestr_failures(stestr: str = 'stestr') -> list[tuple[str, str]]:
    """(test id, last line of its traceback) of the last stestr run.

    A tier that ends in tracebacks shows, at its very end, only the last
    pass; this names what failed in every pass. Needs stestr's own
    python-subunit, so only the lab process that ran stestr calls it.
    """
    import io
    import subprocess

    try:
        import subunit
        import testtools
        data = subprocess.run([stestr, 'last', '--subunit'],
                              capture_output=True).stdout
    except (ImportError, OSError) as exc:
        return [('(this run)', 'failed; its tests unknown: %s' % exc)]
    failed = []

    def seen(test):
        if test['status'] == 'fail':
            tb = test['details'].get('traceback')
            lines = tb.as_text().strip().splitlines() if tb else []
            failed.append((test['id'], lines[-1] if lines else 'failed'))
    result = testtools.StreamToDict(seen)
    result.startTestRun()
    subunit.ByteStreamToStreamResult(
        io.BytesIO(data), non_subunit_name='stdout').run(result)
    result.stopTestRun()
    return failed


def hand_over(run_dir: Path, log, env=os.environ) -> None:
    """At the end of a lab run: print this run's tables, or collect them.

    Each row once: the rows handed over leave the run dir, so a harness
    that prints its own table before its closing line (e2e/run.py) is not
    followed by the lab printing it again. Failed tests go to FAILED
    beside the collected fault table.
    """
    collect = env.get(COLLECT_ENV)
    for name, show in ((FILE, table), (FAILED, failed_table)):
        path = Path(run_dir) / name
        found = rows(path)
        if not found:
            continue
        if collect:
            into = collect if name == FILE else Path(collect).with_name(name)
            with open(into, 'a') as f:
                f.writelines('\t'.join(r) + '\n' for r in found)
        else:
            log(show(found))
        path.unlink()


# -- a guest command held mid-flight -------------------------------------

HOLD_DIR = '/usr/local/lib/cinder-zol-fault'   # real programs and wrappers
# HOLD_FLAG.hit: a matching call is waiting; HOLD_FLAG.go: let it run
HOLD_FLAG = '/tmp/cinder-zol-fault'


def wrapper(real: str, argument: str | None = None,
            leading: Sequence[str] = (), flag: str = HOLD_FLAG) -> str:
    """The script put over a program: matching calls wait for the go-file.

    A call matches when ``argument`` is one of its arguments, or, given
    ``leading`` instead, when its arguments start with exactly those; it
    touches ``flag``.hit and waits for ``flag``.go. Every call then runs
    ``real``.
    """
    if (argument is None) == (not leading):
        raise ValueError('give either argument or leading')
    wait = (f'touch {flag}.hit\n'
            f'while [ ! -e {flag}.go ]; do sleep 0.1; done\n')
    if leading:
        what = 'whose arguments start ' + ' '.join(leading)
        test = ' && '.join(f'[ "${i}" = {shlex.quote(word)} ]'
                           for i, word in enumerate(leading, 1))
        body = f'if {test}; then\n{textwrap.indent(wait, " " * 4)}fi\n'
    else:
        what = f'with {argument} in its argv'
        body = ('for a in "$@"; do\n'
                f'    if [ "$a" = {shlex.quote(argument)} ]; then\n'
                f'{textwrap.indent(wait, " " * 8)}'
                '    fi\n'
                'done\n')
    return (f'#!/bin/sh\n'
            f'# cinder-zol fault: hold a call {what}\n'
            f'# until {flag}.go exists\n'
            f'{body}exec {real} "$@"\n')


@dataclasses.dataclass
class Hold:
    """A guest program (in /usr/sbin) whose matching call is held."""

    shell: GuestShell
    program: str
    released: bool = False

    @property
    def path(self) -> str:
        return f'/usr/sbin/{self.program}'

    def hit(self) -> bool:
        """Whether a matching call is waiting (or has waited)."""
        return self.shell.run(f'test -e {HOLD_FLAG}.hit',
                              check=False).returncode == 0

    def wait_hit(self, timeout: float = 120, interval: float = 0.5) -> bool:
        """Wait until a matching call is held; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.hit():
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

    def go(self) -> None:
        """Let the held call (and every later one) run; the wrapper stays."""
        self.shell.run(f'touch {HOLD_FLAG}.go')

    def release(self) -> None:
        """Let every call run and take the wrapper away (once; best effort).

        Register it as cleanup: it also runs after ``go``.
        """
        if self.released:
            return
        self.released = True
        self.shell.run(f'touch {HOLD_FLAG}.go; umount {self.path}',
                       check=False)


def hold(shell: GuestShell, program: str, argument: str | None = None,
         leading: Sequence[str] = ()) -> Hold:
    """Hold the calls of ``program`` that match (``wrapper``) until ``go``.

    The real program is copied to HOLD_DIR and the wrapper bind-mounted
    over it; ``Hold.release`` unmounts it.
    """
    real = f'{HOLD_DIR}/{program}'
    script = wrapper(real, argument, leading)
    held = Hold(shell, program)
    shell.run(f'set -e; mkdir -p {HOLD_DIR}; '
              f'rm -f {HOLD_FLAG}.hit {HOLD_FLAG}.go; '
              f'cp {held.path} {real}; cat > {real}-wrapper; '
              f'chmod 755 {real}-wrapper; '
              f'mount --bind {real}-wrapper {held.path}', input=script)
    return held
