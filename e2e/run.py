#!/usr/bin/env python3
"""cinder-zol end to end: real Cinder services, the real CLI, a real ZoL host.

Run inside a lab guest (``tox -e e2e`` does this for tgt and for LIO)::

    python -m cinder_zol_lab run --target tgtadm -- python e2e/run.py

It starts RabbitMQ (a private node on 127.0.0.1), glance-api,
cinder-api (auth_strategy = noauth), cinder-scheduler and cinder-volume
with one backend ``volume_driver = cinder_zol.ZFSonLinuxISCSIDriver``
pointed at the lab guest (cinder_zol_lab/stack.py), checks glance with an
image round trip, then drives Cinder with the ``cinder`` CLI
(python-cinderclient) and checks each result twice: Cinder's state
through its API, and the ZFS host with ``zfs list -t all``. Data is written
and read over iSCSI with a userspace initiator (qemu-io). One summary
line per scenario, then ``N passed, M failed``; exit status 1 on any
failure.

Why ``cinder`` and not ``openstack``: python-openstackclient's volume
commands go through openstacksdk, which needs version discovery at the
endpoint without a token; cinder-api's noauth middleware answers every
request without X-Auth-Token with an empty 204, so every ``openstack
volume ...`` command fails before its request ("Unable to find a version
discovery document"). With Keystone (the production setup) both clients
work.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import requests

T_START = time.monotonic()
WALL_START = time.time()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cinder_zol_lab import faults  # noqa: E402
from cinder_zol_lab import initiator  # noqa: E402
from cinder_zol_lab import services  # noqa: E402
from cinder_zol_lab.shell import GuestShell  # noqa: E402
from cinder_zol_lab.shell import LabError  # noqa: E402
from cinder_zol_lab.stack import BACKEND  # noqa: E402
from cinder_zol_lab.stack import CinderStack  # noqa: E402
import concurrency  # noqa: E402
import hosts  # noqa: E402
import images  # noqa: E402
import nvme  # noqa: E402

MiB = 2 ** 20
GiB = 2 ** 30
API_VERSION = '3.71'
INITIATOR = 'iqn.2026-11.org.cinder-zol:e2e-client'
OTHER_INITIATOR = 'iqn.2026-11.org.cinder-zol:e2e-intruder'
TYPE = 'e2e-zol'
BAD_TYPE = 'e2e-nosuchprop'
HUGE_GIB = 100000            # far beyond the lab pool (about 9.5 GiB)
WAIT = 240                   # seconds for any one status change


class Failure(AssertionError):
    pass


def say(msg: str = '') -> None:
    print(msg, flush=True)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def parse_table(text: str) -> dict[str, str]:
    """cinderclient's 'Property | Value' table -> dict (joined lines)."""
    out: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.startswith('|'):
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|', 1)]
        if len(cells) != 2 or cells == ['Property', 'Value']:
            continue
        key, value = cells
        if key:
            out[key] = value
            last = key
        elif last:
            out[last] += value
    return out


def md5_of(char: str | int, length: int = MiB) -> str:
    b = char.encode() if isinstance(char, str) else bytes([char])
    return hashlib.md5(b * length).hexdigest()


class E2E(concurrency.Scenarios, images.Scenarios, nvme.Scenarios,
          hosts.Scenarios):
    def __init__(self, stack: CinderStack, guest: GuestShell,
                 more_guests: tuple[GuestShell, ...] = ()):
        self.stack = stack
        self.guest = guest
        # further storage hosts, one backend each (the two-guest pass)
        self.more_guests = tuple(more_guests)
        self.bindir = Path(sys.executable).parent
        self.http = requests.Session()
        self.http.headers.update(stack.auth_headers())
        self.http.headers.update({
            'OpenStack-API-Version': 'volume ' + API_VERSION,
            'Content-Type': 'application/json'})
        self.ids: dict[str, str] = {}      # our names -> Cinder ids
        self.problems: list[str] = []      # non-fatal findings of a scenario
        self.first_available: float | None = None

    # -- the CLI ---------------------------------------------------------

    def cinder(self, *args: str,
               fail: bool = False) -> subprocess.CompletedProcess:
        argv = [str(self.bindir / 'cinder'), '--os-auth-type', 'noauth',
                '--os-user-id', 'admin', '--os-project-id', 'admin',
                '--os-endpoint', self.stack.endpoint,
                '--os-volume-api-version', API_VERSION, *args]
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        dt = time.monotonic() - t0
        rc = 'exit %d' % r.returncode if r.returncode else 'ok'
        say(f'    $ cinder {shlex.join(args)}  [{rc}, {dt:.1f}s]')
        if bool(r.returncode) != fail:
            raise Failure(f'cinder {shlex.join(args)} exited {r.returncode}'
                          f' (expected {"failure" if fail else "success"})\n'
                          f'{r.stdout}{r.stderr}')
        return r

    def create(self, name: str, size: int, *opts: str) -> str:
        r = self.cinder('create', '--name', name, *opts, str(size))
        vid = parse_table(r.stdout).get('id')
        check(vid, f'no id in cinder create output:\n{r.stdout}')
        self.ids[name] = vid
        return vid

    def snapshot(self, name: str, volume: str) -> str:
        r = self.cinder('snapshot-create', '--name', name, self.ids[volume])
        sid = parse_table(r.stdout).get('id')
        check(sid, f'no id in cinder snapshot-create output:\n{r.stdout}')
        self.ids[name] = sid
        return sid

    # -- the API, for waiting and checking ---------------------------------

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return self.http.request(method, self.stack.endpoint + path,
                                 timeout=30, **kw)

    def get(self, kind: str, rid: str) -> dict | None:
        r = self.api('GET', f'/{kind}/{rid}')
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()[kind[:-1] if kind != 'attachments' else 'attachment']

    def messages(self, rid: str) -> list[str]:
        r = self.api('GET', '/messages', params={'resource_uuid': rid})
        r.raise_for_status()
        return [m['user_message'] for m in r.json()['messages']]

    def wait(self, kind: str, name_or_id: str, want: str | set[str],
             timeout: float = WAIT) -> dict:
        rid = self.ids.get(name_or_id, name_or_id)
        want = {want} if isinstance(want, str) else want
        seen = {}

        def reached():
            obj = self.get(kind, rid)
            check(obj is not None, f'{kind} {name_or_id} vanished')
            status = seen['status'] = obj['status']
            if status.startswith('error') and not any(
                    w.startswith('error') for w in want):
                raise Failure(f'{kind} {name_or_id} went to {status}: '
                              f'{self.messages(rid)}\n'
                              f'{self._volume_log()}')
            return obj if status in want else None
        return services.wait_until(
            reached, timeout, interval=0.4,
            what=lambda: f'{kind} {name_or_id} to become {sorted(want)} '
                         f'(still {seen.get("status")})')

    def wait_gone(self, kind: str, name_or_id: str,
                  timeout: float = WAIT) -> None:
        rid = self.ids.get(name_or_id, name_or_id)
        seen = {}

        def gone():
            obj = self.get(kind, rid)
            if obj is None:
                return True
            seen['status'] = obj['status']
            if obj['status'].startswith('error'):
                raise Failure(f'{kind} {name_or_id} went to {obj["status"]} '
                              f'while deleting: {self.messages(rid)}\n'
                              f'{self._volume_log()}')
            return False
        services.wait_until(
            gone, timeout, interval=0.4,
            what=lambda: f'{kind} {name_or_id} to go (still '
                         f'{seen.get("status")})')

    def _volume_log(self) -> str:
        return self.stack.log_tail('cinder-volume', 30, debug=False)

    def delete_volume(self, name: str) -> None:
        self.cinder('delete', self.ids[name])
        self.wait_gone('volumes', name)

    def delete_snapshot(self, name: str) -> None:
        self.cinder('snapshot-delete', self.ids[name])
        self.wait_gone('snapshots', name)

    def all_volumes(self) -> list[dict]:
        r = self.api('GET', '/volumes/detail', params={'all_tenants': 1})
        r.raise_for_status()
        return r.json()['volumes']

    def all_snapshots(self) -> list[dict]:
        r = self.api('GET', '/snapshots/detail', params={'all_tenants': 1})
        r.raise_for_status()
        return r.json()['snapshots']

    # -- ZFS-side expectations -----------------------------------------

    def zvol(self, name: str) -> str:
        return f'{self.guest.parent}/volume-{self.ids[name]}'

    def zsnap(self, volume: str, snapshot: str) -> str:
        return f'{self.zvol(volume)}@snapshot-{self.ids[snapshot]}'

    def expect_zfs(self, present=(), absent=(), volsize=None,
                   origin=None) -> dict:
        rows = self.guest.zfs()
        for n in present:
            check(n in rows, f'{n} missing on the storage host; '
                  f'have {sorted(rows)}')
        for n in absent:
            check(n not in rows, f'{n} still on the storage host')
        for n, size in (volsize or {}).items():
            check(rows[n]['volsize'] == size,
                  f'{n}: volsize {rows[n]["volsize"]}, expected {size}')
        for n, o in (origin or {}).items():
            got = rows[n]['origin'] or ''
            check(got == o if '@' in o else got.startswith(o + '@'),
                  f'{n}: origin {got!r}, expected {o!r}')
        return rows

    def expect_only_parent(self) -> None:
        names = self.guest.zfs_names()
        check(names == [self.guest.parent],
              f'storage host not clean: {names}')

    def ours(self, rows: dict) -> list[str]:
        """Datasets under the parent other than the parent itself."""
        return sorted(n for n in rows if n != self.guest.parent)

    # -- attachments -----------------------------------------------------

    def attach(self, volume: str,
               initiator_iqn: str = INITIATOR) -> tuple[str, dict]:
        r = self.cinder('attachment-create', '--connect', 'True',
                        '--initiator', initiator_iqn, '--ip', '127.0.0.1',
                        '--host', 'e2e-client', self.ids[volume])
        table = parse_table(r.stdout)
        att = table.get('id')
        check(att, f'no id in attachment-create output:\n{r.stdout}')
        # cinderclient prints the attachment, then its connection info
        check(table.get('driver_volume_type') == 'iscsi' and
              table.get('target_iqn'),
              f'attachment-create printed no connection info:\n{r.stdout}')
        # the attachments API gives the driver's connection data flat,
        # with driver_volume_type among the keys
        data = self.get('attachments', att)['connection_info']
        check(data and data.get('driver_volume_type') == 'iscsi',
              f'connection_info: {data}')
        info = {'driver_volume_type': 'iscsi', 'data': data}
        check(data['target_portal'].endswith(f':{self.guest.iscsi_port}'),
              f'portal {data["target_portal"]} is not the lab forward '
              f'127.0.0.1:{self.guest.iscsi_port}')
        check(data.get('auth_method') == 'CHAP',
              f'no CHAP: {data.get("auth_method")}')
        self.cinder('attachment-complete', att)
        self.wait('volumes', volume, 'in-use')
        return att, info

    def session(self, info: dict,
                initiator_iqn: str = INITIATOR) -> initiator.Session:
        return initiator.Session.from_connection_info(
            info, initiator_iqn, portal=f'127.0.0.1:{self.guest.iscsi_port}')

    def expect_refused(self, info: dict, initiator_iqn: str,
                       why: str) -> None:
        """A login must fail; if not, note it and go on with the scenario."""
        try:
            self.session(info, initiator_iqn).size()
        except initiator.LoginRefused:
            return
        self.problems.append(f'{initiator_iqn} could log in to '
                             f'{info["data"]["target_iqn"]} ({why})')
        say(f'    PROBLEM: {self.problems[-1]}')

    def detach(self, att: str, volume: str) -> None:
        self.cinder('attachment-delete', att)
        self.wait('volumes', volume, 'available')

    # -- scenarios -------------------------------------------------------

    def s1_create(self):
        self.cinder('type-create', TYPE)
        self.cinder('type-key', TYPE, 'set',
                    f'volume_backend_name={BACKEND}')
        self.create('e2e-v1', 1, '--volume-type', TYPE)
        vol = self.wait('volumes', 'e2e-v1', 'available')
        self.first_available = time.monotonic()
        check(vol['size'] == 1, f'size {vol["size"]}')
        host = vol.get('os-vol-host-attr:host')
        check(host == f'{self.stack.host}@{BACKEND}#{BACKEND}',
              f'host {host}')
        check(vol['volume_type'] == TYPE, f'type {vol["volume_type"]}')
        self.expect_zfs(present=[self.zvol('e2e-v1')],
                        volsize={self.zvol('e2e-v1'): GiB})

    def s2_snapshots(self):
        g = self.guest
        v1 = self.ids['e2e-v1']
        z1 = self.zvol('e2e-v1')
        g.fill(z1, 'A')
        self.snapshot('e2e-s1', 'e2e-v1')
        self.wait('snapshots', 'e2e-s1', 'available')
        self.expect_zfs(present=[self.zsnap('e2e-v1', 'e2e-s1')])
        g.fill(z1, 'B')
        # revert to snapshot
        self.cinder('revert-to-snapshot', self.ids['e2e-s1'])
        self.wait('volumes', 'e2e-v1', 'available')
        check(g.md5(z1) == md5_of('A'), 'revert: e2e-v1 does not hold the '
              'snapshot data again')
        # volume from snapshot, larger
        self.create('e2e-v2', 2, '--snapshot-id', self.ids['e2e-s1'])
        vol = self.wait('volumes', 'e2e-v2', 'available')
        check(vol['size'] == 2 and vol['snapshot_id'] == self.ids['e2e-s1'],
              f'e2e-v2: {vol["size"]} GiB from {vol["snapshot_id"]}')
        self.expect_zfs(volsize={self.zvol('e2e-v2'): 2 * GiB},
                        origin={self.zvol('e2e-v2'):
                                self.zsnap('e2e-v1', 'e2e-s1')})
        check(g.md5(self.zvol('e2e-v2')) == md5_of('A'),
              'e2e-v2 lacks the snapshot data')
        # clone of a volume
        g.fill(z1, 'C')
        self.create('e2e-c1', 1, '--source-volid', v1)
        vol = self.wait('volumes', 'e2e-c1', 'available')
        check(vol['source_volid'] == v1, f'source_volid {vol["source_volid"]}')
        self.expect_zfs(origin={self.zvol('e2e-c1'): self.zvol('e2e-v1')})
        check(g.md5(self.zvol('e2e-c1')) == md5_of('C'),
              'e2e-c1 lacks the source data')
        # extend
        self.cinder('extend', v1, '2')
        self.wait('volumes', 'e2e-v1', 'available')
        check(self.get('volumes', v1)['size'] == 2,
              'e2e-v1 not 2 GiB in Cinder')
        self.expect_zfs(volsize={self.zvol('e2e-v1'): 2 * GiB})
        check(g.md5(z1) == md5_of('C'), 'extend changed e2e-v1 data')

    def s3_attach(self):
        g = self.guest
        att, info = self.attach('e2e-v1')
        iqn = info['data']['target_iqn']
        check(iqn in g.targets(),
              f'{iqn} not served by {g.target}: {g.targets()}')
        s = self.session(info)
        size = s.size()
        check(size == 2 * GiB, f'LUN size {size}, expected 2 GiB')
        s.verify_pattern(ord('C'), MiB)           # written on the host
        s.write_pattern(0x5a, 8 * MiB, 4 * MiB)   # written over iSCSI
        s.verify_pattern(0x5a, 8 * MiB, 4 * MiB)
        check(g.md5(self.zvol('e2e-v1'), 8 * MiB, 4 * MiB)
              == md5_of(0x5a, 8 * MiB),
              'data written over iSCSI is not on the zvol')
        # the intruder even has the CHAP secret: only the ACL can stop it
        self.expect_refused(info, OTHER_INITIATOR,
                            'initiator not attached, right CHAP secret')
        self.detach(att, 'e2e-v1')
        check(self.get('attachments', att) is None, 'attachment still listed')
        check(iqn not in g.targets(),
              f'{iqn} still served after attachment-delete')
        self.expect_refused(info, INITIATOR, 'after attachment-delete')

    def s5_restart(self):
        g = self.guest
        att, info = self.attach('e2e-v2')
        iqn = info['data']['target_iqn']
        s = self.session(info)
        s.write_pattern(0x77, MiB, 16 * MiB)
        queued = {}

        def while_down():
            # cinder-volume is gone: the storage host loses the live
            # target (as after a target service restart), and a user
            # asks for a new volume, which waits in RabbitMQ.
            g.drop_target(iqn)
            check(iqn not in g.targets(), f'could not drop {iqn}')
            queued['id'] = self.create('e2e-v5', 1, '--volume-type', TYPE)

        dt = self.stack.restart_volume(while_down)
        say(f'    cinder-volume restarted and initialised in {dt:.1f}s')
        check(iqn in g.targets(), f'ensure_export did not restore {iqn}: '
              f'{g.targets()}')
        check(self.get('volumes', self.ids['e2e-v2'])['status'] == 'in-use',
              'e2e-v2 no longer in-use')
        s.verify_pattern(0x77, MiB, 16 * MiB)
        s.verify_pattern(ord('A'), MiB)
        self.wait('volumes', 'e2e-v5', 'available')
        self.expect_zfs(present=[self.zvol('e2e-v5')])
        self.detach(att, 'e2e-v2')
        check(iqn not in g.targets(), f'{iqn} still served after detach')

    def s4_dependencies(self):
        g = self.guest

        # test_delete_source_volume
        self.create('d1-src', 1, '--volume-type', TYPE)
        self.wait('volumes', 'd1-src', 'available')
        self.create('d1-clone', 1, '--source-volid', self.ids['d1-src'])
        self.wait('volumes', 'd1-clone', 'available')
        src = self.zvol('d1-src')
        self.delete_volume('d1-src')
        rows = self.expect_zfs(absent=[src], present=[self.zvol('d1-clone')])
        hidden = f'{g.parent}/deleted-volume-{self.ids["d1-src"]}'
        check(any(n.startswith(hidden) for n in rows),
              f'd1-src not kept hidden for its clone: {self.ours(rows)}')
        self.delete_volume('d1-clone')
        self._expect_none_of('d1-src', 'd1-clone')

        # test_delete_source_snapshot
        self.create('d2-src', 1, '--volume-type', TYPE)
        self.wait('volumes', 'd2-src', 'available')
        self.snapshot('d2-snap', 'd2-src')
        self.wait('snapshots', 'd2-snap', 'available')
        self.create('d2-vfs', 1, '--snapshot-id', self.ids['d2-snap'])
        self.wait('volumes', 'd2-vfs', 'available')
        snap = self.zsnap('d2-src', 'd2-snap')
        self.delete_snapshot('d2-snap')
        rows = g.zfs()
        check(snap not in rows or rows[snap]['defer_destroy'],
              f'{snap} neither gone nor deferred')
        self.delete_volume('d2-src')
        self.expect_zfs(present=[self.zvol('d2-vfs')])
        self.delete_volume('d2-vfs')
        self._expect_none_of('d2-src', 'd2-vfs')

        # test_delete_dep_chain
        self._chain('c', with_clone=True)
        for n in ('c-s1', 'c-s2'):
            self.delete_snapshot(n)
        for n in ('c-v3', 'c-v1', 'c-v2', 'c-v4'):
            self.delete_volume(n)
        self._expect_none_of('c-v1', 'c-v2', 'c-v3', 'c-v4')

        # test_delete_dep_chain_2
        self._chain('k', with_clone=False)
        for n in ('k-s1', 'k-s2'):
            self.delete_snapshot(n)
        for n in ('k-v1', 'k-v2', 'k-v3'):
            self.delete_volume(n)
        self._expect_none_of('k-v1', 'k-v2', 'k-v3')

        # then delete everything the earlier scenarios left
        # (the snapshot first: Cinder refuses to delete a volume that has
        # snapshots; e2e-v2 was made from it, e2e-c1 is a clone of e2e-v1)
        self.delete_snapshot('e2e-s1')
        for n in ('e2e-v1', 'e2e-v2', 'e2e-c1', 'e2e-v5'):
            self.delete_volume(n)
        check(not self.all_volumes(), f'volumes left: {self.all_volumes()}')
        check(not self.all_snapshots(),
              f'snapshots left: {self.all_snapshots()}')
        self.expect_only_parent()

    def _chain(self, p: str, with_clone: bool) -> None:
        self.create(f'{p}-v1', 1, '--volume-type', TYPE)
        self.wait('volumes', f'{p}-v1', 'available')
        self.snapshot(f'{p}-s1', f'{p}-v1')
        self.wait('snapshots', f'{p}-s1', 'available')
        self.create(f'{p}-v2', 1, '--snapshot-id', self.ids[f'{p}-s1'])
        self.wait('volumes', f'{p}-v2', 'available')
        self.snapshot(f'{p}-s2', f'{p}-v2')
        self.wait('snapshots', f'{p}-s2', 'available')
        self.create(f'{p}-v3', 1, '--snapshot-id', self.ids[f'{p}-s2'])
        self.wait('volumes', f'{p}-v3', 'available')
        if with_clone:
            self.create(f'{p}-v4', 1, '--source-volid', self.ids[f'{p}-v3'])
            self.wait('volumes', f'{p}-v4', 'available')

    def _expect_none_of(self, *names: str) -> None:
        rows = self.guest.zfs()
        left = [n for n in rows for name in names if self.ids[name] in n]
        check(not left, f'left on the storage host: {left}')

    def s6_bad_input(self):
        g = self.guest
        before = g.zfs_names()
        # size 0: the API refuses
        r = self.cinder('create', '--volume-type', TYPE, '--name', 'e2e-zero',
                        '0', fail=True)
        say('      ' + (r.stderr.strip() or r.stdout.strip()).splitlines()[-1])
        check(not [v for v in self.all_volumes() if v['name'] == 'e2e-zero'],
              'a volume e2e-zero exists')
        # far beyond the pool: first the project quota refuses it...
        r = self.cinder('create', '--volume-type', TYPE, '--name', 'e2e-huge',
                        str(HUGE_GIB), fail=True)
        say('      ' + (r.stderr.strip() or r.stdout.strip()).splitlines()[-1])
        check('quota' in r.stderr + r.stdout, 'not refused by the quota')
        # ...and without a quota the scheduler finds no backend for it
        self.cinder('quota-update', '--gigabytes', '-1', 'admin')
        huge = self.create('e2e-huge', HUGE_GIB, '--volume-type', TYPE)
        self.wait('volumes', 'e2e-huge', 'error')
        msgs = self._wait_messages(huge)
        say(f'      e2e-huge: error; user message: {msgs}')
        # a ZFS property zfs does not know: the driver's zfs create fails
        self.cinder('type-create', BAD_TYPE)
        self.cinder('type-key', BAD_TYPE, 'set',
                    f'volume_backend_name={BACKEND}',
                    'zfs:nosuchprop=on')
        bad = self.create('e2e-badprop', 1, '--volume-type', BAD_TYPE)
        self.wait('volumes', 'e2e-badprop', 'error')
        msgs = self._wait_messages(bad)
        say(f'      e2e-badprop: error; user message: {msgs}')
        check(any('Driver failed to create' in m for m in msgs),
              'no "Driver failed to create the volume" message')
        check(g.zfs_names() == before, f'storage host changed: '
              f'{g.zfs_names()} '
              f'(before: {before})')
        self.cinder('message-list', '--resource_uuid', bad)
        # error volumes delete cleanly
        self.delete_volume('e2e-huge')
        self.delete_volume('e2e-badprop')
        self.cinder('quota-delete', 'admin')
        self.cinder('type-delete', BAD_TYPE)
        self.cinder('type-delete', TYPE)
        check(not self.all_volumes(), f'volumes left: {self.all_volumes()}')
        self.expect_only_parent()

    def _wait_messages(self, rid: str, timeout: float = 30) -> list[str]:
        return services.wait_until(lambda: self.messages(rid), timeout,
                                   interval=0.5,
                                   what=f'a user message for {rid}')


SCENARIOS = [
    # (number, name, method, numbers it needs)
    (1, 'volume type + create', 's1_create', ()),
    (2, 'snapshot, volume from snapshot, clone, extend, revert',
     's2_snapshots', (1,)),
    (3, 'attachment + iSCSI data + detach', 's3_attach', (2,)),
    # run before 4: the restart happens in the middle of the list, and
    # scenarios 4 and 6 run against the restarted cinder-volume
    (5, 'cinder-volume restart (ensure_export)', 's5_restart', (2,)),
    (4, 'dependency chains, then delete everything', 's4_dependencies', (1,)),
    (6, 'bad input (size 0, huge, unknown zfs property)', 's6_bad_input',
     (1,)),
    *images.SCENARIOS,
    *concurrency.SCENARIOS,
    *nvme.SCENARIOS,
    *hosts.SCENARIOS,
]


# Scenarios run with one target helper only, to keep the whole e2e (twice)
# within CI's time: what they exercise happens in ZFS and in Cinder, the
# same whichever helper exports. The LIO pass keeps every scenario that
# goes through the target (create, snapshots, attach and data, restart with
# ensure_export, multiattach, faults) and the image scenarios that must work
# with either helper (10-13: raw and qcow2 images, volume -> image round
# trip, bad images).
_ZFS_SIDE = 'ZFS and Cinder only; the export is not involved'
ONE_HELPER_ONLY = {
    6: ('tgtadm', 'bad input: ' + _ZFS_SIDE),
    14: ('tgtadm', 'which image cache serves is decided in Cinder and ZFS; '
                   'scenario 10 reads golden clones over LIO'),
    20: ('tgtadm', 'concurrent deletes: ' + _ZFS_SIDE),
    21: ('tgtadm', 'random mixes: ' + _ZFS_SIDE),
    24: ('nvmet', 'NVMe-oF/TCP'),
}
# The nvmet pass runs its own scenarios only; the tgt and LIO passes run
# the others (their attachments and data checks are iSCSI).
NVME_ONLY = {num for num, *_ in nvme.SCENARIOS}


def parent_start_time() -> float | None:
    """Wall-clock start of our parent (``lab run``: includes guest boot)."""
    try:
        stat = Path(f'/proc/{os.getppid()}/stat').read_text()
        ticks = int(stat.rsplit(')', 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in
                     Path('/proc/stat').read_text().splitlines()
                     if line.startswith('btime'))
        return btime + ticks / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--keep', action='store_true',
                    help='keep the state dir (config, logs, db)')
    ap.add_argument('--state-dir', help='use this (empty) state dir')
    ap.add_argument('--only', type=int, action='append',
                    help='run only these scenario numbers')
    ap.add_argument('--no-glance', action='store_true',
                    help='run the stack without glance-api')
    args = ap.parse_args(argv)
    try:
        guest, *more_guests = GuestShell.all_from_env()
    except LabError as exc:
        say(f'e2e: {exc}: run me under "python -m cinder_zol_lab run '
            '--target tgtadm -- python e2e/run.py"')
        return 2
    services.unwind_on_termination()

    state = Path(args.state_dir) if args.state_dir else Path(
        tempfile.mkdtemp(prefix='cinder-zol-e2e-'))
    state.mkdir(parents=True, exist_ok=True)
    stack = CinderStack(state, guest, host='e2e', glance=not args.no_glance,
                        log=say, more_shells=tuple(more_guests))
    lab_start = parent_start_time()
    results: list[tuple[int, str, bool, float]] = []
    e2e = None
    failed_any = False
    say(f'e2e: target helper {guest.target}, state dir {state}')
    try:
        try:
            stack.start()
            t = stack.timings
            say(f'e2e: services up in {t["stack up"]:.1f}s '
                f'(RabbitMQ {t["rabbitmq up"]:.1f}s, '
                f'db sync {t["db sync"]:.1f}s, '
                f'cinder-api {t["cinder-api answering"]:.1f}s, '
                f'cinder-volume {t["cinder-volume ready"]:.1f}s'
                + (f', glance {t["glance answering"]:.1f}s'
                   if stack.glance else '') + f'); API {stack.endpoint}')
            if stack.glance:
                dt = stack.smoke_glance()
                say(f'e2e: glance {stack.glance.url}: 1 MiB raw image '
                    f'created, uploaded, downloaded, deleted in {dt:.2f}s')
        except Exception as exc:
            say(f'e2e: services did not start: {exc}')
            results.append((0, 'services up', False,
                            time.monotonic() - T_START))
            raise
        e2e = E2E(stack, guest, tuple(more_guests))
        passed: set[int] = set()
        for num, name, meth, needs in SCENARIOS:
            if args.only and num not in args.only:
                continue
            if (num in hosts.NUMBERS) != bool(more_guests) and \
                    not args.only:
                say(f'e2e: scenario {num} {name}: not run with '
                    f'{1 + len(more_guests)} storage host(s) (the '
                    f'two-guest pass runs {sorted(hosts.NUMBERS)} only)')
                continue
            if guest.target == 'nvmet' and num not in NVME_ONLY and \
                    not args.only:
                say(f'e2e: scenario {num} {name}: not run with nvmet '
                    '(the iSCSI passes run it)')
                continue
            only = ONE_HELPER_ONLY.get(num)
            if only and only[0] != guest.target and not args.only:
                say(f'e2e: scenario {num} {name}: not run with '
                    f'{guest.target} (runs with {only[0]}: {only[1]})')
                continue
            missing = [n for n in needs if n not in passed and
                       (not args.only or n in args.only)]
            t0 = time.monotonic()
            if missing:
                say(f'e2e: scenario {num} {name}: FAIL (0.0s) -- not run: '
                    f'needs scenario {", ".join(map(str, missing))}')
                results.append((num, name, False, 0.0))
                continue
            say(f'e2e: scenario {num} {name} ...')
            try:
                e2e.problems = []
                getattr(e2e, meth)()
                if e2e.problems:
                    raise Failure('; '.join(e2e.problems))
            except (Failure, initiator.LoginRefused, requests.RequestException,
                    subprocess.SubprocessError, services.ServiceError,
                    LabError, AssertionError, KeyError) as exc:
                dt = time.monotonic() - t0
                say(f'    FAILED: {type(exc).__name__}: {exc}')
                if not isinstance(exc, (Failure, services.ServiceError)):
                    traceback.print_exc(file=sys.stdout)
                say(stack.log_tail('cinder-volume', 25, debug=False))
                say(f'e2e: scenario {num} {name}: FAIL ({dt:.1f}s)')
                results.append((num, name, False, dt))
                continue
            dt = time.monotonic() - t0
            passed.add(num)
            say(f'e2e: scenario {num} {name}: PASS ({dt:.1f}s)')
            results.append((num, name, True, dt))
            if num == 1 and e2e.first_available:
                cold = e2e.first_available - T_START
                extra = ''
                if lab_start:
                    since_lab = (e2e.first_available - T_START +
                                 WALL_START - lab_start)
                    extra = (f'; {since_lab:.1f}s'
                             ' from "lab run" start, guest boot included')
                say(f'e2e: cold start to first available volume: {cold:.1f}s '
                    f'(services cold){extra}')
    except (KeyboardInterrupt, services.Terminated) as exc:
        say(f'e2e: interrupted ({type(exc).__name__}); stopping services')
        failed_any = True
    except Exception as exc:
        say(f'e2e: error: {type(exc).__name__}: {exc}')
        traceback.print_exc(file=sys.stdout)
        failed_any = True
    finally:
        t0 = time.monotonic()
        stack.stop()
        say(f'e2e: services stopped in {time.monotonic() - t0:.1f}s')
        if args.keep or failed_any or not all(r[2] for r in results):
            say(f'e2e: state dir kept: {state} (logs in {state / "logs"})')
        else:
            shutil.rmtree(state, ignore_errors=True)
    if guest.run_dir is not None:
        # the same table as the functional tier's; handed over here, so
        # the lab does not print it again after our closing line
        faults.hand_over(guest.run_dir, say)
    n_pass = sum(1 for r in results if r[2])
    n_fail = sum(1 for r in results if not r[2])
    if failed_any and n_fail == 0:
        n_fail = 1
    total = time.monotonic() - T_START
    say(f'e2e: {guest.target}: total {total:.1f}s' + (
        f' ({time.time() - lab_start:.1f}s since "lab run" start)'
        if lab_start else ''))
    say(services.Summary(n_pass, n_fail).line())
    return 1 if n_fail else 0


if __name__ == '__main__':
    sys.exit(main())
