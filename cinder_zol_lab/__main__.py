"""python -m cinder_zol_lab {build,run,shell}: the cinder-zol lab storage host.

  build                                   build (or reuse) the guest image
  run [--target tgtadm|lioadm] -- CMD...  boot a guest, run CMD with
                                          CINDER_ZOL_LAB_* set, tear down,
                                          exit with CMD's exit code;
                                          --hosts N boots N guests on one
                                          private link (CINDER_ZOL_LAB_HOSTS,
                                          guest k: CINDER_ZOL_LAB_<k>_*)
  shell                                   boot a guest, print the ssh command,
                                          wait for Ctrl-C
  faults FILE                             print the fault table that lab
                                          runs collected in FILE, then the
                                          tests that failed in them
  demo [--target tgtadm|lioadm]           boot a guest and take one volume
                                          through its life with the driver
                                          (needs cinder; see demo.py)

Environment given to CMD: CINDER_ZOL_LAB_HOST, _SSH_PORT, _ISCSI_PORT,
_ISCSI_PORT2 (a second portal), _USER (root, for checks), _LOGIN (the
driver's account), _MODE, _KEY, _KNOWN_HOSTS, _POOL, _PARENT, _RUN_DIR,
_TARGET, _LINK_ADDRESS (its address on the private link, with --hosts).
Cache: $CINDER_ZOL_LAB_CACHE or ~/.cache/cinder-zol.
Release: --profile debian13 (default), debian12 or debian13-zfs24, or
$CINDER_ZOL_LAB_PROFILE; each profile has its own cached image.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import shlex
import subprocess
import sys
import time

if not __package__:  # run as a plain script: python cinder_zol_lab/__main__.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
from cinder_zol.host import helpers  # noqa: E402
from cinder_zol_lab import faults  # noqa: E402
from cinder_zol_lab import guest as lab  # noqa: E402
from cinder_zol_lab import link as lablink  # noqa: E402
from cinder_zol_lab import services  # noqa: E402
from cinder_zol_lab import shell  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_build(args) -> int:
    t0 = time.monotonic()
    cached = lab.Image.at(lab.image_dir()).complete()
    image = lab.ensure_image(log=log)
    dt = time.monotonic() - t0
    log(f'lab: image {"cached" if cached else "built"}: {image.dir} '
        f'({dt:.1f}s)')
    info = image.info().strip()
    if info:
        log('  ' + info.replace('\n', '\n  '))
    print(image.dir)
    return 0


def _guest(args, link=None) -> lab.LabGuest:
    return lab.LabGuest(pool=args.pool, parent_dataset=args.parent,
                        memory_mb=args.memory, keep=args.keep, log=log,
                        mode=args.mode, link=link)


def _boot(g: lab.LabGuest, args) -> None:
    g.start()
    if getattr(args, 'target', None):
        t0 = time.monotonic()
        g.use_target(args.target)
        log(f'lab: iSCSI target: {args.target} ({time.monotonic() - t0:.1f}s)')


def _teardown(g: lab.LabGuest | None) -> None:
    if g is None:
        return
    g.stop()
    if 'teardown' in g.timings:
        log(f'lab: guest stopped in {g.timings["teardown"]:.1f}s')


def _in_guests(args, body) -> int:
    """Boot the guests, return ``body(guests)``, always tear them down.

    Several guests (--hosts N) share the private link (link.py).
    """
    count = getattr(args, 'hosts', 1)
    if count < 1:
        log('lab: --hosts must be at least 1')
        return 2
    hub = lablink.Hub(count).start() if count > 1 else None
    guests = [_guest(args, hub.ports[i] if hub else None)
              for i in range(count)]
    try:
        for g in guests:
            _boot(g, args)
        return body(guests)
    except (KeyboardInterrupt, services.Terminated) as exc:
        log(f'lab: interrupted ({type(exc).__name__}); tearing down')
        return 143 if isinstance(exc, services.Terminated) else 130
    except lab.LabError as exc:
        log(f'lab: error: {exc}')
        return 3
    finally:
        for g in reversed(guests):
            _teardown(g)
        if hub is not None:
            log(f'lab: private link carried {hub.frames} frames')
            hub.close()


def guests_env(guests: list[lab.LabGuest]) -> dict[str, str]:
    """CINDER_ZOL_LAB_* for the first guest, CINDER_ZOL_LAB_<k>_* after."""
    env = {shell.HOSTS_ENV: str(len(guests))}
    for k, g in enumerate(guests, 1):
        env.update(g.shell.to_env(k))
    return env


def cmd_run(args) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == '--':
        cmd = cmd[1:]
    if not cmd:
        log('lab run: no command given (usage: run [--target H] -- CMD...)')
        return 2

    def run(guests):
        log(f'lab: running {shlex.join(cmd)}')
        child = subprocess.Popen(cmd, env=dict(os.environ,
                                               **guests_env(guests)))
        try:
            while True:
                try:
                    rc = child.wait(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    for g in guests:
                        g.serve_requests()   # a test's reboot of a guest
            if rc and os.path.basename(cmd[0]) == 'stestr' and 'run' in cmd:
                faults.record_failed(guests[0].run_dir,
                                     faults.stestr_failures(cmd[0]),
                                     guests_env(guests))
            for g in guests:
                faults.hand_over(g.run_dir, log)
            return rc
        except BaseException:
            # Ctrl-C reached the child too (same process group); give it a
            # moment, then terminate it (it is ours)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                services.end(child, 10)
            raise
    return _in_guests(args, run)


def cmd_faults(args) -> int:
    print(faults.table(faults.rows(args.file)), flush=True)
    print(faults.failed_table(faults.rows(
        Path(args.file).with_name(faults.FAILED))), flush=True)
    return 0


def cmd_shell(args) -> int:
    def wait(guests):
        for g in guests:
            print(shlex.join(g.ssh_argv()), flush=True)
        log('lab: guests are up; Ctrl-C to stop them' if len(guests) > 1
            else 'lab: guest is up; Ctrl-C to stop it')
        for k, v in guests_env(guests).items():
            log(f'  {k}={v}')
        try:
            while all(g.running for g in guests):
                time.sleep(1)
        except (KeyboardInterrupt, services.Terminated):
            log('lab: stopping')
            return 0
        log('lab: QEMU exited')
        return 1
    return _in_guests(args, wait)


def cmd_demo(args) -> int:
    from cinder_zol_lab import demo

    def run(guests):
        demo.run(guests[0], log=log)
        return 0
    return _in_guests(args, run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog='python -m cinder_zol_lab', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    bp = sub.add_parser('build', help='build (or reuse) the guest image')
    fp = sub.add_parser('faults', help='print the fault table collected in '
                        'FILE ($CINDER_ZOL_LAB_FAULT_TABLE of lab runs)')
    fp.add_argument('file')
    parsers = [bp]
    helps = {'run': 'boot a guest and run CMD',
             'shell': 'boot a guest for a human',
             'demo': 'boot a guest and run the driver through one volume life'}
    for name in ('run', 'shell', 'demo'):
        sp = sub.add_parser(name, help=helps[name])
        parsers.append(sp)
        sp.add_argument('--target', choices=helpers.NAMES,
                        default='tgtadm' if name == 'demo' else None,
                        help='iSCSI target to activate in the guest')
        sp.add_argument('--pool', default='tank')
        sp.add_argument('--parent', default=None,
                        help='parent dataset (default POOL/cinder)')
        sp.add_argument('--memory', type=int, default=2048, help='guest MiB')
        sp.add_argument('--keep', action='store_true', help='keep the run dir')
        sp.add_argument('--mode', choices=lab.MODES, default=lab.MODES[0],
                        help='how the storage host is set up: the driver '
                             'logs in as the unprivileged cinder-zol account '
                             '(default) or as root')
        if name in ('run', 'shell'):
            sp.add_argument('--hosts', type=int, default=1,
                            help='boot this many guests, linked to each '
                                 'other (guest k is %s.k on the link)'
                                 % lablink.SUBNET)
        if name == 'run':
            sp.add_argument('cmd', nargs=argparse.REMAINDER, help='-- CMD...')
    for sp in parsers:
        sp.add_argument('--profile', choices=sorted(lab.PROFILES),
                        default=None,
                        help='storage-host release of the guest (default '
                             '$CINDER_ZOL_LAB_PROFILE or '
                             f'{lab.DEFAULT_PROFILE})')
    args = p.parse_args(argv)
    if getattr(args, 'profile', None):
        # children (tests, stacks) and LabGuest read the same variable
        os.environ['CINDER_ZOL_LAB_PROFILE'] = args.profile
    services.unwind_on_termination()
    try:
        if args.command == 'build':
            return cmd_build(args)
        if args.command == 'faults':
            return cmd_faults(args)
        if args.command == 'run':
            return cmd_run(args)
        if args.command == 'demo':
            return cmd_demo(args)
        return cmd_shell(args)
    except lab.LabError as exc:
        log(f'lab: error: {exc}')
        return 3
    except KeyboardInterrupt:
        log('lab: interrupted')
        return 130


if __name__ == '__main__':
    sys.exit(main())
