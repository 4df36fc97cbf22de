#!/usr/bin/env python3
"""Upstream Cinder test suites against cinder-zol alone, on this machine.

    python tempest/run.py                    # what `tox -e tempest` runs
    python tempest/run.py --regex test_volume_dependency
    python tempest/run.py --keep             # keep the state dir and logs
    python tempest/run.py --fake-backend     # same stack and tempest.conf,
                                             # Cinder's fake driver, no guest
    python tempest/run.py --hosts 2 --regex multi_backend
                                             # a backend per storage host
                                             # (multi_backend = True)

Outside a lab guest this script makes (or reuses) the pinned keystone,
glance and tempest venvs under ~/.cache/cinder-zol/venvs, then runs itself
inside ``python -m cinder_zol_lab run --target tgtadm -- ...``. Inside, it
starts MariaDB, RabbitMQ, keystone, glance-api and cinder-api/scheduler/
volume on 127.0.0.1 (cinder_zol_lab/stack.py's KeystoneStack) with exactly
one backend (cinder_zol.ZFSonLinuxISCSIDriver on the guest), checks glance
with an image round trip, uploads the qcow2 image tempest makes volumes
from (``[compute] image_ref``), writes tempest.conf from what the driver
implements (tempest/features.py) and what the backend reports to the
scheduler, runs tempest.api.volume and cinder_tempest_plugin.api.volume
minus tempest/exclude.txt, deletes that image, purges the storage host's
image cache and checks that the ZFS host holds nothing but the parent
dataset, stops every process it started by its process group id and
prints the counts. The last line is
``N passed, M failed, K skipped``; the exit status is 1 on any failure.
"""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import json
import os
from pathlib import Path
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from cinder_zol_lab import services  # noqa: E402
from cinder_zol_lab.shell import GuestShell  # noqa: E402
from cinder_zol_lab.shell import LabError  # noqa: E402
from cinder_zol_lab import stack as stack_mod  # noqa: E402
from cinder_zol_lab import venvs  # noqa: E402

INCLUDE = r'^(tempest\.api\.volume|cinder_tempest_plugin\.api\.volume)\.'
EXCLUDE_FILE = HERE / 'exclude.txt'
AGENT = '/usr/libexec/cinder-zol/cinder-zol-host'
MiB = 2 ** 20

# What a skipped test would need, by a piece of tempest's skip reason.
NEEDS = [
    ('backup', 'a cinder-backup service; its drivers attach volumes on the '
               'backup host, and this machine has no kernel iSCSI '
               'initiator'),
    ('Glance', 'the image service (glance)'),
    ('image', 'the image service (glance)'),
    ('Nova', 'the compute service (nova)'),
    ('compute', 'the compute service (nova)'),
    ('Neutron', 'neutron (the class creates a network for the nova '
                'servers of its attach tests), and nova'),
    ('network', 'the network service (neutron)'),
    ('multi-attach', 'nova ([compute-feature-enabled] volume_multiattach); '
                     'the driver reports multiattach=True'),
    ('Barbican', 'the key manager (barbican) for encrypted volume types'),
    ('barbican', 'the key manager (barbican) for encrypted volume types'),
    ('multi-backend', 'a second backend (multi_backend)'),
    ('multi_backend', 'a second backend (multi_backend)'),
    ('Multi-backend', 'a second backend (multi_backend)'),
    ('onsistency group', 'consistency group support in the driver '
                         '(create_group/create_group_snapshot)'),
    ('replication', 'replication in the driver (failover_host)'),
    ('Replication', 'replication in the driver (failover_host)'),
    ('oncurrency', '[volume-feature-enabled] concurrency_tests (off as in '
                   'the upstream gate)'),
    ('microversion', 'a microversion outside the configured range'),
]


def log(msg: str) -> None:
    print(msg, flush=True)


# -- outer: venvs, then ourselves inside a lab guest ----------------------

def ensure_venv(name: str) -> Path:
    """tempest/requirements-NAME.txt with -c tempest/constraints-NAME.txt."""
    return venvs.ensure(name, HERE / f'requirements-{name}.txt',
                        HERE / f'constraints-{name}.txt',
                        log=lambda m: log(f'tempest: {m}'))


def outer(args, argv: list[str]) -> int:
    t0 = time.monotonic()
    try:
        ks = ensure_venv('keystone')
        te = ensure_venv('tempest')
        if not args.no_glance:
            venvs.glance(log=lambda m: log(f'tempest: {m}'))
    except services.ServiceError as exc:
        log(f'tempest: {exc}')
        log(services.Summary(0, 1).line())
        return 1
    inner_argv = [sys.executable, str(Path(__file__).resolve()), '--inner',
                  '--keystone-venv', str(ks), '--tempest-venv', str(te),
                  *argv]
    target = None if args.fake_backend else args.target
    log(f'tempest: $ {"lab run --target " + target + " -- " if target else ""}'
        f'{shlex.join(inner_argv)}')
    summary = services.run_under_lab(target, inner_argv,
                                     'tempest: inner summary',
                                     hosts=args.hosts)
    log(f'tempest: total {time.monotonic() - t0:.0f}s (venvs, guest boot '
        'and teardown included)')
    if summary.skipped is None:
        log('tempest: the run ended without results (see above)')
    log(summary.line())
    return 0 if summary.ok else 1


# -- inner: stack, tempest, checks ----------------------------------------

def read_excludes() -> list[tuple[str, str]]:
    """(regex, reason) per line of exclude.txt (stestr's format)."""
    out = []
    for raw in EXCLUDE_FILE.read_text().splitlines():
        regex, _, reason = raw.strip().partition('#')
        if regex.strip():
            out.append((regex.strip(), reason.strip()))
    return out


def upload_image_ref(stack, state: Path) -> str:
    """A public 64 MiB qcow2 image (some data, zeros); its id.

    qcow2, so every volume tempest makes from ``image_ref`` goes through
    the conversion as well as the driver's golden-image cache.
    """
    import requests

    raw, qcow2 = state / 'image-ref.raw', state / 'image-ref.qcow2'
    with open(raw, 'wb') as f:
        f.truncate(64 * MiB)
        os.pwrite(f.fileno(), os.urandom(MiB), 0)
        os.pwrite(f.fileno(), b'cinder-zol' * 1000, 63 * MiB)
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2',
                    str(raw), str(qcow2)], check=True, capture_output=True)
    raw.unlink()
    url = f'{stack.glance.url}/v2/images'
    headers = stack.auth_headers()
    r = requests.post(url, headers=headers, timeout=60, json={
        'name': 'cinder-zol-tempest-image-ref', 'disk_format': 'qcow2',
        'container_format': 'bare', 'visibility': 'public'})
    r.raise_for_status()
    image_id = r.json()['id']
    with open(qcow2, 'rb') as f:
        requests.put(f'{url}/{image_id}/file', data=f, timeout=120,
                     headers={**headers, 'Content-Type':
                              'application/octet-stream'}
                     ).raise_for_status()
    image = requests.get(f'{url}/{image_id}', headers=headers,
                         timeout=60).json()
    if image['status'] != 'active':
        raise RuntimeError(f'image_ref {image_id}: {image["status"]}')
    qcow2.unlink()
    return image_id


def delete_image(stack, image_id: str) -> None:
    import requests

    r = requests.delete(f'{stack.glance.url}/v2/images/{image_id}',
                        headers=stack.auth_headers(), timeout=60)
    if r.status_code not in (204, 404):
        raise RuntimeError(f'deleting image {image_id}: {r.status_code} '
                           f'{r.text[:300]}')


def purge_image_cache(guest: GuestShell) -> list[str]:
    """Evict every golden image zvol; the entries evicted.

    The cache outlives the images (tempest deletes its own, and ours is
    gone too by now): the agent's image-purge, sent over SSH as the
    driver's account, as the driver would send it.
    """
    login = dataclasses.replace(guest, user=guest.login)
    r = login.run([AGENT, 'image-purge', guest.parent], input='{}',
                  check=False, control=False)
    try:
        reply = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        reply = {}
    if not reply.get('ok'):
        raise RuntimeError(f'image-purge: exit {r.returncode} '
                           f'{r.stdout[-300:]}{r.stderr[-300:]}')
    return reply['result']['evicted']


def tempest_conf(stack, pools: list, feats: dict, state: Path,
                 build_timeout: int,
                 image_ref: str | None = None) -> configparser.ConfigParser:
    caps = pools[0].get('capabilities', {})
    backends = stack.backend_names()
    c = configparser.ConfigParser(interpolation=None)
    c.optionxform = str
    c['DEFAULT'] = {'debug': 'True', 'log_file': str(state / 'logs' /
                                                     'tempest.log')}
    c['oslo_concurrency'] = {'lock_path': str(state / 'tempest-lock')}
    c['auth'] = {
        'use_dynamic_credentials': 'True',
        'admin_username': 'admin', 'admin_password': stack_mod.ADMIN_PASSWORD,
        'admin_project_name': 'admin', 'admin_domain_name': 'Default',
        'default_credentials_domain_name': 'Default',
        'create_isolated_networks': 'False',
    }
    c['identity'] = {'uri_v3': f'{stack.keystone_url}/v3',
                     'auth_version': 'v3', 'region': stack_mod.REGION}
    c['identity-feature-enabled'] = {'api_v2': 'False'}
    c['service_available'] = {
        'cinder': 'True', 'nova': 'False', 'glance': str(bool(image_ref)),
        'neutron': 'False', 'swift': 'False', 'barbican': 'False'}
    if image_ref:
        c['compute'] = {'image_ref': image_ref, 'image_ref_alt': image_ref}
        c['image'] = {'region': stack_mod.REGION,
                      'endpoint_type': 'publicURL'}
    # cinder 29's oslo.policy always enforces scope and the new defaults
    c['enforce_scope'] = {'cinder': 'True'}
    c['validation'] = {'run_validation': 'False'}
    c['volume'] = {
        'catalog_type': 'block-storage', 'region': stack_mod.REGION,
        'endpoint_type': 'publicURL',
        # one backend per storage host (--hosts N)
        'backend_names': ','.join(backends) if len(backends) > 1 else
        caps.get('volume_backend_name', stack_mod.BACKEND),
        'storage_protocol': caps.get('storage_protocol', 'iSCSI'),
        'vendor_name': caps.get('vendor_name', 'Open Source'),
        'build_timeout': str(build_timeout), 'build_interval': '1',
        'min_microversion': '3.0', 'max_microversion': 'latest',
        'volume_size': '1',
        # the driver's names: what an unmanaged volume or snapshot is
        # left as, and what tempest hands back to manage
        'manage_volume_ref': 'source-name,volume-%s',
        'manage_snapshot_ref': 'source-name,snapshot-%s',
    }
    fe = {k: str(v['enabled']) for k, v in feats.items()}
    fe.update({
        # a second backend is a second storage host (--hosts 2)
        'multi_backend': str(len(backends) > 1),
        'backup': 'False',                   # no cinder-backup service
        'extend_attached_volume': 'False',   # needs nova
        'extend_attached_encrypted_volume': 'False',
        'api_extensions': 'all',
    })
    c['volume-feature-enabled'] = fe
    return c


def cinder_leftovers(stack, timeout: float = 300) -> list[str]:
    """Volumes/snapshots left in Cinder (all projects) after tempest.

    Waits until nothing is deleting or creating any more.
    """
    import requests

    def listing():
        left = []
        for kind in ('volumes', 'snapshots'):
            r = requests.get(f'{stack.endpoint}/{stack.admin_project_id}/'
                             f'{kind}/detail?all_tenants=1',
                             headers=stack.auth_headers(), timeout=60)
            r.raise_for_status()
            left += [f'{kind[:-1]} {o["id"]} {o["status"]}'
                     for o in r.json()[kind]]
        return left

    def settled():
        left = listing()
        busy = [x for x in left if x.endswith(('deleting', 'creating'))]
        return None if busy else [left]
    try:
        return services.wait_until(settled, timeout, interval=3,
                                   what='deletes to finish')[0]
    except services.WaitTimeout:
        return listing()


def inner(args) -> int:
    t_start = time.monotonic()
    guest, more_guests = None, []
    if not args.fake_backend:
        try:
            guest, *more_guests = GuestShell.all_from_env()
        except LabError as exc:
            sys.exit(f'tempest: --inner needs a lab guest: {exc}')
    state = Path(tempfile.mkdtemp(prefix='cinder-zol-tempest-'))
    te = Path(args.tempest_venv)
    stack = stack_mod.KeystoneStack(state, guest, Path(args.keystone_venv),
                                    glance=not args.no_glance, log=log,
                                    more_shells=tuple(more_guests))
    log(f'tempest: state and logs in {state}')
    failed_checks: list[str] = []
    results: dict = {}
    excluded: list[str] = []
    image_ref = None
    ok = False
    try:
        stack.start()
        pools = stack.wait_scheduler_pool()
        log(f'tempest: stack up {stack.dump_timings()}')
        if stack.glance:
            dt = stack.smoke_glance()
            log(f'tempest: glance {stack.glance.url} (in the catalog): 1 MiB '
                f'raw image created, uploaded, downloaded, deleted in '
                f'{dt:.2f}s')
            image_ref = upload_image_ref(stack, state)
            log(f'tempest: image_ref {image_ref} (64 MiB qcow2, public)')
        caps = pools[0].get('capabilities', {})
        log(f'tempest: pool {pools[0]["name"]}: ' + ', '.join(
            f'{k}={caps.get(k)}' for k in (
                'volume_backend_name', 'vendor_name', 'storage_protocol',
                'driver_version', 'thin_provisioning_support',
                'thick_provisioning_support', 'multiattach',
                'online_extend_support', 'total_capacity_gb')))

        # what the driver implements (always the ZoL driver's: a fake run
        # is a baseline with the same tempest.conf)
        feats = json.loads(subprocess.run(
            [sys.executable, str(HERE / 'features.py'),
             'cinder_zol.driver.ZFSonLinuxISCSIDriver'],
            check=True, capture_output=True, text=True).stdout)
        log('tempest: driver features: ' + ', '.join(
            f'{k}={v["enabled"]}' for k, v in feats.items()))

        ws = state / 'workspace'
        subprocess.run([str(te / 'bin' / 'tempest'), 'init', str(ws)],
                       check=True, capture_output=True,
                       env=dict(os.environ, HOME=str(state)))
        conf = tempest_conf(stack, pools, feats, state, args.build_timeout,
                            image_ref)
        with open(ws / 'etc' / 'tempest.conf', 'w') as f:
            conf.write(f)
        shutil.copy(ws / 'etc' / 'tempest.conf', state / 'tempest.conf')

        include = args.regex or INCLUDE
        env = dict(os.environ, OS_TEST_TIMEOUT=str(args.test_timeout),
                   HOME=str(state))
        env.pop('PYTHONPATH', None)
        listed = subprocess.run(
            [str(te / 'bin' / 'stestr'), 'list', include], cwd=ws, env=env,
            capture_output=True, text=True)
        if listed.returncode:
            raise RuntimeError(f'stestr list failed:\n{listed.stderr[-3000:]}'
                               f'\n{listed.stdout[-2000:]}')
        all_ids = [t for t in listed.stdout.split() if '.' in t]
        excludes = read_excludes()
        excluded = [t for t in all_ids
                    if any(re.search(r, t) for r, _ in excludes)]
        log(f'tempest: {len(all_ids)} tests selected, {len(excluded)} '
            f'excluded by {EXCLUDE_FILE.relative_to(REPO)}')

        t_run = time.monotonic()
        log(f'tempest: running with concurrency {args.concurrency}')
        argv = [str(te / 'bin' / 'tempest'), 'run', '--regex', include,
                '--concurrency', str(args.concurrency)]
        if excludes:       # (a list of comments only: nothing to pass)
            argv += ['--exclude-list', str(EXCLUDE_FILE)]
        with open(state / 'logs' / 'tempest-run.out', 'w') as out:
            proc = subprocess.Popen(argv, cwd=ws, env=env,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True,
                                    bufsize=1)
            deadline = time.monotonic() + args.timeout
            for line in proc.stdout:
                out.write(line)
                if args.verbose or re.match(r'^\{\d+\} ', line):
                    # subunit-trace's per-test lines (fails in full)
                    sys.stdout.write(line if len(line) < 400
                                     else line[:400] + '...\n')
                    sys.stdout.flush()
                if time.monotonic() > deadline:
                    log(f'tempest: --timeout {args.timeout}s reached; '
                        'stopping tempest')
                    proc.terminate()
                    failed_checks.append('tempest run timed out')
                    break
            proc.wait()
        run_time = time.monotonic() - t_run
        log(f'tempest: tempest run exit {proc.returncode} in '
            f'{run_time:.0f}s')

        sub = subprocess.run([str(te / 'bin' / 'stestr'), 'last',
                              '--subunit'], cwd=ws, env=env,
                             capture_output=True)
        parsed = subprocess.run([str(te / 'bin' / 'python'),
                                 str(HERE / 'results.py')],
                                input=sub.stdout, capture_output=True)
        if parsed.returncode:
            raise RuntimeError('results.py: ' + parsed.stderr.decode()[-2000:])
        results = json.loads(parsed.stdout)
        (state / 'results.json').write_text(json.dumps(results, indent=1))

        # after tempest's own cleanups: nothing left in Cinder or on ZFS
        left = cinder_leftovers(stack)
        if left:
            failed_checks.append('left in Cinder after the run: '
                                 + '; '.join(left[:20]))
        if image_ref:
            delete_image(stack, image_ref)
        if guest is not None and stack.glance:
            evicted = purge_image_cache(guest)
            log(f'tempest: image cache purged: {" ".join(evicted) or "-"}')
        for g in ([guest] + more_guests) if guest is not None else ():
            names = g.zfs_names()
            log(f'tempest: {g.link_address or g.host}: zfs list -H -o name '
                f'-t all -r {g.parent}: {" ".join(names)}')
            if names != [g.parent]:
                failed_checks.append(f'ZFS host not clean: {names}')
            served = g.targets()
            if served:
                failed_checks.append(f'{g.target or "tgtadm"} targets '
                                     f'left: {" ".join(served)[:500]}')
        ok = True
    except Exception as exc:
        log(f'tempest: ERROR: {type(exc).__name__}: {exc}')
        failed_checks.append(f'{type(exc).__name__}: {str(exc)[:300]}')
    finally:
        pids = ', '.join(f'{n} (pgid {p.popen.pid})'
                         for n, p in stack.procs.items() if p.popen)
        stack.stop()
        log(f'tempest: stopped {pids}')

    passed = sorted(t for t, r in results.items() if r['status'] == 'success')
    skipped = sorted(t for t, r in results.items() if r['status'] == 'skip')
    failed = sorted(t for t, r in results.items()
                    if r['status'] in ('fail', 'uxsuccess'))
    report(results, passed, skipped, failed, excluded, failed_checks)
    n_failed = len(failed) + len(failed_checks)
    if n_failed or not ok or args.keep:
        log(f'tempest: kept {state} (logs in {state}/logs, tempest '
            f'workspace in {state}/workspace)')
        if n_failed:
            for name in ('cinder-volume', 'cinder-api', 'cinder-scheduler'):
                log(stack.log_tail(name, 25, debug=False))
    else:
        shutil.rmtree(state, ignore_errors=True)
    log(f'tempest: inner run time {time.monotonic() - t_start:.0f}s')
    log(services.Summary(len(passed), n_failed, len(skipped)).line())
    return 1 if n_failed or not ok else 0


def short(test_id: str) -> str:
    return re.sub(r'\[.*\]$', '', test_id)


def need_of(reason: str) -> str:
    for key, need in NEEDS:
        if key in reason:
            return need
    return '?'


def report(results, passed, skipped, failed, excluded, checks) -> None:
    log('tempest: ===== results =====')
    if skipped:
        log(f'tempest: skipped ({len(skipped)}): test -- reason -- needs')
        for t in skipped:
            reason = results[t]['reason'].strip().replace('\n', ' ')
            log(f'  SKIP {short(t)} -- {reason} -- {need_of(reason)}')
    if excluded:
        reasons = dict(read_excludes())
        log(f'tempest: excluded ({len(excluded)}) by tempest/exclude.txt:')
        for t in excluded:
            why = next((w for r, w in reasons.items() if re.search(r, t)), '')
            log(f'  EXCLUDED {short(t)} -- {why}')
    for t in failed:
        log(f'  FAIL {short(t)} ({results[t]["seconds"]}s)\n    '
            + results[t]['reason'].replace('\n', '\n    '))
    for c in checks:
        log(f'  CHECK FAILED: {c}')
    log(f'tempest: passed {len(passed)}, skipped {len(skipped)}, failed '
        f'{len(failed)}, excluded {len(excluded)}, checks failed '
        f'{len(checks)}')


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--target', choices=['tgtadm', 'lioadm'],
                    default='tgtadm')
    ap.add_argument('--concurrency', type=int, default=2)
    ap.add_argument('--hosts', type=int, default=1,
                    help='storage hosts (lab guests), a backend each')
    ap.add_argument('--regex', help=f'stestr selection (default {INCLUDE})')
    ap.add_argument('--build-timeout', type=int, default=600,
                    help='tempest [volume] build_timeout')
    ap.add_argument('--test-timeout', type=int, default=1200,
                    help='OS_TEST_TIMEOUT per test')
    ap.add_argument('--timeout', type=int, default=2400,
                    help='stop tempest after this many seconds')
    ap.add_argument('--keep', action='store_true',
                    help='keep the state directory even on success')
    ap.add_argument('--verbose', action='store_true',
                    help="print all of tempest's output")
    ap.add_argument('--fake-backend', action='store_true',
                    help="Cinder's fake driver instead of the guest "
                         '(baseline)')
    ap.add_argument('--no-glance', action='store_true',
                    help='run the stack without glance-api')
    ap.add_argument('--inner', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--keystone-venv', help=argparse.SUPPRESS)
    ap.add_argument('--tempest-venv', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        return inner(args)
    return outer(args, argv)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
