"""e2e scenarios: volumes from Glance images and images from volumes.

Mixed into ``run.E2E``; ``SCENARIOS`` rows are appended to run.py's table
as (number, name, method, numbers it needs).

Every image here is made on this machine with known bytes at known offsets
(``REGIONS``, ``NOISE``; zeros elsewhere), uploaded to the stack's real
glance-api, and checked where it lands: on the zvol (md5 read on the
storage host) and through the iSCSI export (qemu-io patterns), or, going
the other way, downloaded from glance and hashed here. Each scenario
deletes what it made, purges the storage host's image cache (the agent's
``image-purge``, asked over SSH as the driver's own account) and ends with
only the parent dataset left, so the scenarios after it see a clean host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid

import requests

from cinder_zol_lab import services
from cinder_zol_lab.stack import BACKEND

KiB = 2 ** 10
MiB = 2 ** 20
GiB = 2 ** 30
AGENT = '/usr/libexec/cinder-zol/cinder-zol-host'
IMAGE_SIZE = 64 * MiB
# (offset, length, byte): uneven offsets, one region ends the image
REGIONS = ((0, MiB, 0xa1), (3 * MiB + 64 * KiB, 2 * MiB, 0xb2),
           (40 * MiB, 3 * MiB, 0xc3), (IMAGE_SIZE - 512 * KiB, 512 * KiB,
                                       0xd4))
# pseudo-random bytes: a byte-for-byte order the md5 checks
NOISE = (16 * MiB, MiB)
DATA = sum(n for _, n, _ in REGIONS) + NOISE[1]     # non-zero bytes
# what scenario 12 writes into a 1 GiB volume before uploading it
UPLOAD_REGIONS = ((0, MiB, 0x31), (300 * MiB + 64 * KiB, 2 * MiB, 0x32),
                  (GiB - 256 * KiB, 256 * KiB, 0x33))
LIVE_REGION = (512 * MiB, MiB, 0x34)     # written while attached
FILLED = 'Image %s cached on the storage host'
DOWNLOAD = 'Image download '             # cinder's image_utils.fetch
BOTH_CACHES = 'only keeps the images it declines'   # the driver's do_setup
CINDER_ENTRY = 'Creating new image-volume cache entry'   # cinder/image/cache


def pattern_image(path: Path, seed: int) -> str:
    """A sparse IMAGE_SIZE raw file with REGIONS and NOISE; its md5."""
    with open(path, 'wb') as f:
        f.truncate(IMAGE_SIZE)
        for offset, length, byte in REGIONS:
            os.pwrite(f.fileno(), bytes([byte]) * length, offset)
        os.pwrite(f.fileno(), random.Random(seed).randbytes(NOISE[1]),
                  NOISE[0])
    return file_md5(path)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(4 * MiB), b''):
            h.update(chunk)
    return h.hexdigest()


def zero_gaps(spans, end: int):
    """(offset, length) of what ``spans`` leave uncovered in [0, end)."""
    pos = 0
    for offset, length in sorted(spans):
        if offset > pos:
            yield pos, offset - pos
        pos = max(pos, offset + length)
    if pos < end:
        yield pos, end - pos


def expected_md5(regions, size: int) -> str:
    """md5 of ``size`` bytes: ``regions`` (offset, length, byte), zeros."""
    h = hashlib.md5()
    pos = 0
    for offset, length, byte in sorted(regions):
        h.update(bytes(offset - pos))
        h.update(bytes([byte]) * length)
        pos = offset + length
    while pos < size:
        n = min(64 * MiB, size - pos)
        h.update(bytes(n))
        pos += n
    return h.hexdigest()


class Scenarios:
    """Scenarios 10-13; they use run.E2E's CLI, wait and check helpers."""

    # -- helpers ---------------------------------------------------------

    @property
    def _e2e(self):
        """run.py's module (``__main__`` when run as a script)."""
        return sys.modules[type(self).__module__]

    def _prove(self, cond, msg) -> None:
        self._e2e.check(cond, msg)

    def _glance(self, method: str, path: str, ok=(200,), **kw):
        headers = {**self.stack.auth_headers(), **kw.pop('headers', {})}
        r = requests.request(method, f'{self.stack.glance.url}/v2{path}',
                             headers=headers, timeout=kw.pop('timeout', 120),
                             **kw)
        if r.status_code not in ok:     # (r.text would read a download)
            self._prove(False, f'glance {method} {path}: {r.status_code} '
                        f'{r.text[:300]}')
        return r

    def _image(self, name: str, path: Path, disk_format: str,
               virtual_size: int = IMAGE_SIZE,
               container_format: str = 'bare') -> dict:
        """Upload ``path`` to glance; the active image.

        Glance's default visibility (shared): its unauthenticated context
        has no admin role, which making an image public needs.
        """
        image = self._glance('POST', '/images', (201,), json={
            'name': name, 'disk_format': disk_format,
            'container_format': container_format}).json()
        self._made['images'].append(image['id'])
        with open(path, 'rb') as f:
            self._glance('PUT', f'/images/{image["id"]}/file', (204,),
                         data=f, headers={
                             'Content-Type': 'application/octet-stream'})
        image = self._glance('GET', f'/images/{image["id"]}').json()
        self._prove(image['status'] == 'active', f'glance image {name}: '
                    f'{image["status"]}')
        # (glance inspects the disk only in a bare container)
        self._prove(image.get('virtual_size') == (
            virtual_size if container_format == 'bare' else None),
            f'glance computed virtual_size {image.get("virtual_size")} '
            f'for {name}')
        return image

    def _download(self, image_id: str, dest: Path) -> Path:
        with self._glance('GET', f'/images/{image_id}/file', stream=True,
                          timeout=600) as r, open(dest, 'wb') as f:
            for chunk in r.iter_content(4 * MiB):
                f.write(chunk)
        return dest

    def _wait_image(self, image_id: str, timeout: float = 300) -> dict:
        seen = {}

        def active():
            image = self._glance('GET', f'/images/{image_id}').json()
            seen['status'] = image['status']
            self._prove(image['status'] not in ('killed', 'deleted'),
                        f'image {image_id} went {image["status"]}')
            return image if image['status'] == 'active' else None
        return services.wait_until(
            active, timeout, interval=1,
            what=lambda: f'image {image_id} to become active (still '
                         f'{seen.get("status")})')

    def _agent(self, *argv: str) -> dict:
        """One request to the storage host agent, as the driver sends it.

        Over SSH as the driver's account (in least-privilege mode its key
        may run nothing but the agent), so this purge is what an operator
        could do with the driver's own credentials.
        """
        login = dataclasses.replace(self.guest, user=self.guest.login)
        r = login.run([AGENT, *argv], input='{}', check=False,
                      control=False)
        lines = r.stdout.strip().splitlines()
        try:
            reply = json.loads(lines[-1])
        except (IndexError, ValueError):
            reply = {}
        self._prove(reply.get('ok'), f'agent {shlex.join(argv)}: exit '
                    f'{r.returncode} {r.stdout[-300:]}{r.stderr[-300:]}')
        return reply.get('result') or {}

    def _purge(self) -> list[str]:
        return self._agent('image-purge', self.guest.parent)['evicted']

    def _entry(self, image_id: str) -> str:
        return f'{self.guest.parent}/image-{image_id}'

    def _zfs_props(self, dataset: str, *props: str) -> list[str]:
        out = self.guest.run(['zfs', 'get', '-H', '-o', 'value',
                              ','.join(props), dataset]).stdout
        return out.split('\n')[:len(props)]

    def _verify_over_iscsi(self, name: str, size: int,
                           negative: bool = False) -> None:
        """The image's bytes as an initiator reads them over iSCSI.

        REGIONS, the zeros between them and two zero spans after the image.
        ``negative``: first show that a wrong pattern is caught.
        """
        att, info = self.attach(name)
        self._made['attachments'].append((att, name))
        if negative:
            try:
                self.session(info).verify_pattern(REGIONS[0][2] ^ 1, 4 * KiB)
                caught = False
            except AssertionError:
                caught = True
            self._prove(caught, 'qemu-io accepted a wrong pattern')
        cmds = ['read -P 0x%02x %d %d' % (b, o, n) for o, n, b in REGIONS]
        cmds += ['read -P 0x00 %d %d' % g for g in zero_gaps(
            [(o, n) for o, n, _ in REGIONS] + [NOISE], IMAGE_SIZE)]
        cmds += ['read -P 0x00 %d %d' % (IMAGE_SIZE, 8 * MiB),
                 'read -P 0x00 %d %d' % (size - MiB, MiB)]
        out = self.session(info).qemu_io(*cmds)
        done = out.count('read ')
        self._prove(done == len(cmds), f'{name}: {done} of {len(cmds)} '
                    f'reads over iSCSI completed:\n{out}')
        self.detach(att, name)
        self._made['attachments'].remove((att, name))

    def _data_on_host(self, name: str, digest: str) -> None:
        """The zvol's first IMAGE_SIZE bytes are the image's (md5)."""
        self._prove(self.guest.md5(self.zvol(name), IMAGE_SIZE) == digest,
                    f'{name}: the first {IMAGE_SIZE // MiB} MiB differ from '
                    'the image')

    def _log_since(self, offset: int) -> str:
        """cinder-volume's log (DEBUG lines too) from ``offset`` on."""
        with open(self.stack.logs / 'cinder-volume.log', 'rb') as f:
            f.seek(offset)
            return f.read().decode(errors='replace')

    def _log_at(self) -> int:
        return self.stack.log_offset('cinder-volume')

    def _from_image(self, name: str, image: dict) -> float:
        """A 1 GiB volume from ``image``; the seconds to available."""
        t0 = time.monotonic()
        self.create(name, 1, '--image-id', image['id'])
        self._made['volumes'].append(name)
        vol = self.wait('volumes', name, 'available')
        dt = time.monotonic() - t0
        self._prove(vol['bootable'] == 'true',
                    f'{name}: bootable {vol["bootable"]}')
        meta = vol.get('volume_image_metadata') or {}
        for key in ('image_id', 'checksum', 'disk_format'):
            want = image[key] if key != 'image_id' else image['id']
            self._prove(meta.get(key) == want, f'{name}: '
                        f'volume_image_metadata {key}={meta.get(key)!r}, '
                        f'expected {want!r}')
        return dt

    def _expect_cached(self, image: dict, *volumes: str) -> None:
        """The image's golden zvol, labelled, and ``volumes`` its clones."""
        entry = self._entry(image['id'])
        golden = f'{entry}@golden'
        self.expect_zfs(present=[entry, golden],
                        origin={self.zvol(v): golden for v in volumes},
                        volsize={self.zvol(v): GiB for v in volumes})
        digest = f'{image["os_hash_algo"]}:{image["os_hash_value"]}'
        props = self._zfs_props(entry, 'cinder_zol:image_id',
                                'cinder_zol:image_hash')
        self._prove(props == [image['id'], digest],
                    f'{entry}: image_id, image_hash {props}, expected '
                    f'{[image["id"], digest]}')

    @contextlib.contextmanager
    def _image_scenario(self):
        """A scratch directory; afterwards everything made is deleted.

        On success the cleanup is checked (cache purged, only the parent
        dataset left); after a failure it is best effort, so the scenarios
        after this one start on a clean host either way. An interrupted
        run (Terminated, Ctrl-C) skips it: the guest goes anyway.
        """
        self._made = {'volumes': [], 'images': [], 'attachments': []}
        with tempfile.TemporaryDirectory(prefix='e2e-images-') as tmp:
            try:
                yield Path(tmp)
            except Exception:
                self._cleanup(strict=False)
                raise
            self._cleanup(strict=True)

    def _cleanup(self, strict: bool) -> None:
        steps = [(self.detach, att, name)
                 for att, name in self._made['attachments']]
        steps += [(self._delete_if_there, name)
                  for name in self._made['volumes']]
        steps += [(self._glance, 'DELETE', f'/images/{iid}', (204, 404))
                  for iid in self._made['images']]
        steps += [(self._purge,)]
        for func, *args in steps:
            try:
                func(*args)
            except Exception as exc:
                if strict:
                    raise
                self._e2e.say(f'    cleanup: {func.__name__}{tuple(args)}: '
                              f'{type(exc).__name__}: {exc}')
        self._made = {'volumes': [], 'images': [], 'attachments': []}
        if strict:
            self._prove(not self.all_volumes(),
                        f'volumes left: {self.all_volumes()}')
            self.expect_only_parent()

    def _delete_if_there(self, name: str) -> None:
        if self.get('volumes', self.ids[name]) is not None:
            self.delete_volume(name)

    # -- scenarios -------------------------------------------------------

    def s10_image_raw(self):
        """Raw image -> volume: data, metadata, golden zvol, O(1) clone."""
        g = self.guest
        say = self._e2e.say
        with self._image_scenario() as tmp:
            digest = pattern_image(tmp / 'pattern.raw', 10)
            image = self._image('e2e-raw', tmp / 'pattern.raw', 'raw')
            iid = image['id']
            at = self._log_at()
            first = self._from_image('img-v1', image)
            log = self._log_since(at)
            fills = re.findall(FILLED % iid + r'.*: ([\d.]+) MiB of data '
                               r'sent for ([\d.]+) MiB', log)
            self._prove(log.count(DOWNLOAD) == 1 and fills == [
                (f'{DATA / MiB:.1f}', f'{IMAGE_SIZE / MiB:.1f}')],
                f'img-v1: expected one download and one cache fill sending '
                f'only the image\'s data, got {log.count(DOWNLOAD)} '
                f'downloads and fills (MiB sent, MiB) {fills}')
            self._expect_cached(image, 'img-v1')
            self._data_on_host('img-v1', digest)
            self._verify_over_iscsi('img-v1', GiB, negative=True)

            # the second volume: a clone of @golden, nothing downloaded
            at = self._log_at()
            second = self._from_image('img-v2', image)
            log = self._log_since(at)
            self._prove(log.count(DOWNLOAD) == 0 and FILLED % iid not in log,
                        f'img-v2: the image was downloaded again '
                        f'({log.count(DOWNLOAD)} downloads)')
            self._expect_cached(image, 'img-v1', 'img-v2')
            self._data_on_host('img-v2', digest)
            say(f'      first volume {first:.1f}s (download + fill), '
                f'second {second:.1f}s (clone of @golden)')

            # the image goes from glance: the cache must not serve it
            entry = self._entry(iid)
            before = g.zfs_names()
            self._glance('DELETE', f'/images/{iid}', (204,))
            r = self.cinder('create', '--image-id', iid, '--name',
                            'img-gone', '1', fail=True)
            say('      ' + (r.stderr.strip() or r.stdout.strip()
                            ).splitlines()[-1])
            self._prove(not [v for v in self.all_volumes()
                             if v['name'] == 'img-gone'],
                        'a volume img-gone exists')
            self._prove(g.zfs_names() == before,
                        f'storage host changed: {g.zfs_names()}')

            # purge with clones alive: the entry hides until they go
            evicted = self._purge()
            self._prove(evicted == [f'image-{iid}'], f'purged {evicted}')
            rows = g.zfs()
            self._prove(entry not in rows and any(
                n.startswith(f'{g.parent}/deleted-image-{iid}')
                for n in rows), f'{entry} not kept hidden for its clones: '
                f'{self.ours(rows)}')
            self._data_on_host('img-v2', digest)

    def s11_image_qcow2(self):
        """qcow2 image -> volume: converted on the way, same bytes."""
        with self._image_scenario() as tmp:
            digest = pattern_image(tmp / 'pattern.raw', 11)
            subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O',
                            'qcow2', str(tmp / 'pattern.raw'),
                            str(tmp / 'pattern.qcow2')], check=True,
                           capture_output=True)
            size = (tmp / 'pattern.qcow2').stat().st_size
            image = self._image('e2e-qcow2', tmp / 'pattern.qcow2', 'qcow2')
            self._prove(image['size'] == size and size < IMAGE_SIZE // 4,
                        f'glance holds {image["size"]} bytes, the qcow2 '
                        f'file has {size}')
            dt = self._from_image('img-q1', image)
            self._e2e.say(f'      {size / MiB:.1f} MiB qcow2 -> volume in '
                          f'{dt:.1f}s')
            self._expect_cached(image, 'img-q1')
            self._data_on_host('img-q1', digest)
            self._verify_over_iscsi('img-q1', GiB)

    def s12_volume_to_image(self):
        """Volume -> image, raw while available, qcow2 while attached."""
        g = self.guest
        say = self._e2e.say
        with self._image_scenario() as tmp:
            vid = self.create('up-v1', 1)
            self._made['volumes'].append('up-v1')
            self.wait('volumes', 'up-v1', 'available')
            att, info = self.attach('up-v1')
            self._made['attachments'].append((att, 'up-v1'))
            s = self.session(info)
            for offset, length, byte in UPLOAD_REGIONS:
                s.write_pattern(byte, length, offset)
            self.detach(att, 'up-v1')
            self._made['attachments'].remove((att, 'up-v1'))

            raw = self._upload('up-v1', 'e2e-up-raw', 'raw', 'available')
            got = self._download(raw['id'], tmp / 'up.raw')
            self._prove(got.stat().st_size == GiB,
                        f'raw image of {got.stat().st_size} bytes')
            self._prove(file_md5(got) == expected_md5(UPLOAD_REGIONS, GiB),
                        'the raw image differs from what was written')
            got.unlink()

            # attached: the driver reads a temporary clone
            att, info = self.attach('up-v1')
            self._made['attachments'].append((att, 'up-v1'))
            offset, length, byte = LIVE_REGION
            self.session(info).write_pattern(byte, length, offset)
            at = self._log_at()
            qcow = self._upload('up-v1', 'e2e-up-qcow2', 'qcow2', 'in-use')
            clone = f'upload-volume-{vid}'
            self._prove(clone in self._log_since(at),
                        f'no temporary clone {clone} in cinder-volume\'s log')
            self._prove(not [n for n in g.zfs_names() if clone in n],
                        f'{clone} left on the storage host')
            got = self._download(qcow['id'], tmp / 'up.qcow2')
            info = json.loads(subprocess.run(
                ['qemu-img', 'info', '--output', 'json', '-f', 'qcow2',
                 str(got)], check=True, capture_output=True,
                text=True).stdout)
            self._prove(info['virtual-size'] == GiB,
                        f'qcow2 image: virtual size {info["virtual-size"]}')
            subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw',
                            str(got), str(tmp / 'back.raw')], check=True,
                           capture_output=True)
            self._prove(file_md5(tmp / 'back.raw') == expected_md5(
                UPLOAD_REGIONS + (LIVE_REGION,), GiB),
                'the qcow2 image differs from what was written')
            say(f'      qcow2 image {got.stat().st_size / MiB:.1f} MiB')

    def _upload(self, name: str, image_name: str, disk_format: str,
                status: str) -> dict:
        t0 = time.monotonic()
        r = self.cinder('upload-to-image', '--disk-format', disk_format,
                        *(['--force', 'True'] if status == 'in-use' else []),
                        self.ids[name], image_name)
        iid = self._e2e.parse_table(r.stdout).get('image_id')
        self._prove(iid, f'no image_id in upload-to-image output:\n'
                    f'{r.stdout}')
        self._made['images'].append(iid)
        self.wait('volumes', name, status)
        image = self._wait_image(iid)
        self._prove(image['disk_format'] == disk_format,
                    f'{image_name}: disk_format {image["disk_format"]}')
        self._e2e.say(f'      {disk_format} upload of {name} ({status}) '
                      f'{time.monotonic() - t0:.1f}s')
        return image

    def s13_bad_images(self):
        """Corrupt, too large, deleted: refused or error, nothing leaks."""
        g = self.guest
        say = self._e2e.say
        with self._image_scenario() as tmp:
            before = g.zfs_names()
            pattern_image(tmp / 'pattern.raw', 13)

            # bit rot in glance's store: the download's checksum fails
            rot = self._image('e2e-rot', tmp / 'pattern.raw', 'raw')
            store = self.stack.glance.dir / 'images' / rot['id']
            with open(store, 'r+b') as f:
                os.pwrite(f.fileno(), b'\x5e' * 4096, 0)
            self._error_volume('img-rot', rot)

            # a qcow2 with an L2 entry pointing at an unaligned offset:
            # its header passes every inspector, the conversion fails
            subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O',
                            'qcow2', str(tmp / 'pattern.raw'),
                            str(tmp / 'bad.qcow2')], check=True,
                           capture_output=True)
            corrupt_qcow2(tmp / 'bad.qcow2')
            bad = self._image('e2e-corrupt', tmp / 'bad.qcow2', 'qcow2')
            self._error_volume('img-corrupt', bad)

            # virtual size beyond the volume: the API refuses it
            subprocess.run(['qemu-img', 'create', '-f', 'qcow2',
                            str(tmp / 'big.qcow2'), '2G'], check=True,
                           capture_output=True)
            big = self._image('e2e-big', tmp / 'big.qcow2', 'qcow2',
                              virtual_size=2 * GiB)
            self._create_refused('img-big', big['id'], 'virtual size')

            # deleted in glance before any volume was made from it
            self._glance('DELETE', f'/images/{big["id"]}', (204,))
            self._create_refused('img-deleted', big['id'],
                                 'unable to access requested image')
            self._prove(g.zfs_names() == before,
                        f'storage host changed: {g.zfs_names()} '
                        f'(before: {before})')
            self._prove(not self._agent('image-list', g.parent)['entries'],
                        'image cache entries made from bad images')
            say('      nothing left on the storage host')

    def _error_volume(self, name: str, image: dict) -> None:
        rid = self.create(name, 1, '--image-id', image['id'])
        self._made['volumes'].append(name)
        self.wait('volumes', name, 'error')
        msgs = self._wait_messages(rid)
        self._e2e.say(f'      {name}: error; user message: {msgs}')
        # not rescheduled: no "no backend found" from the scheduler
        self._prove(msgs and all(m.startswith('copy image to volume')
                                 for m in msgs),
                    f'{name}: user messages {msgs}, expected only "copy '
                    'image to volume: ..."')

    def _create_refused(self, name: str, image_id: str, why: str) -> None:
        r = self.cinder('create', '--image-id', image_id, '--name', name,
                        '1', fail=True)
        text = (r.stderr.strip() or r.stdout.strip())
        self._e2e.say('      ' + text.splitlines()[-1])
        self._prove(why.lower() in text.lower(),
                    f'{name}: refused, but not for {why!r}: {text}')
        self._prove(not [v for v in self.all_volumes()
                         if v['name'] == name], f'a volume {name} exists')

    # -- both image caches ----------------------------------------------

    @contextlib.contextmanager
    def _cinder_image_cache(self):
        """cinder-volume restarted with Cinder's image volume cache on.

        The internal tenant is two fresh UUIDs: with noauth nothing checks
        them, Cinder only stamps its cache volumes with them
        (cinder/context.py get_internal_tenant_context). Afterwards the
        stack's own configuration comes back, with another restart.
        """
        stack = self.stack
        tenant = {'project': str(uuid.uuid4()), 'user': str(uuid.uuid4())}

        def configure(on: bool):
            stack.extra_conf['DEFAULT'] = [
                f'cinder_internal_tenant_project_id = {tenant["project"]}',
                f'cinder_internal_tenant_user_id = {tenant["user"]}',
            ] if on else []
            stack.extra_conf[BACKEND] = [
                'image_volume_cache_enabled = True'] if on else []
            stack.conf.write_text(stack.cinder_conf())
        at = self._log_at()
        dt = stack.restart_volume(between=lambda: configure(True))
        self._e2e.say(f'      cinder-volume restarted with Cinder\'s image '
                      f'volume cache in {dt:.1f}s')
        self._prove(BOTH_CACHES in self._log_since(at),
                    'the driver did not say at start-up which image cache '
                    'serves what')
        try:
            yield tenant['project']
        finally:
            stack.restart_volume(between=lambda: configure(False))

    def _cache_rows(self) -> list[tuple]:
        """Cinder's image volume cache table: (image_id, volume_id)."""
        return self.stack.sql('cinder', 'SELECT image_id, volume_id FROM '
                              'image_volume_cache_entries')

    def _internal_volumes(self, project: str) -> list[dict]:
        return [v for v in self.all_volumes()
                if v.get('os-vol-tenant-attr:tenant_id') == project]

    def s14_both_image_caches(self):
        """Cinder's image volume cache next to zol_image_cache."""
        g = self.guest
        say = self._e2e.say
        with self._image_scenario() as tmp, \
                self._cinder_image_cache() as project:
            # a bare image: the golden cache serves it, Cinder's stays out
            digest = pattern_image(tmp / 'pattern.raw', 14)
            bare = self._image('e2e-both-bare', tmp / 'pattern.raw', 'raw')
            at = self._log_at()
            self._from_image('both-a1', bare)
            t2 = self._from_image('both-a2', bare)
            log = self._log_since(at)
            self._prove(log.count(DOWNLOAD) == 1 and
                        log.count(FILLED % bare['id']) == 1,
                        f'bare image: {log.count(DOWNLOAD)} downloads, '
                        f'{log.count(FILLED % bare["id"])} cache fills '
                        '(expected one of each)')
            self._expect_cached(bare, 'both-a1', 'both-a2')
            self._prove(not self._internal_volumes(project) and
                        not self._cache_rows() and
                        CINDER_ENTRY not in log,
                        f'Cinder\'s image cache made an entry for an image '
                        f'the golden cache serves: '
                        f'{self._internal_volumes(project)} '
                        f'{self._cache_rows()}')
            self._verify_over_iscsi('both-a2', GiB)
            say(f'      bare image: golden zvol, second volume a clone of '
                f'@golden in {t2:.1f}s; Cinder\'s cache empty')

            # an image the golden cache declines: Cinder's cache, ZFS too
            ovf = self._image('e2e-both-ovf', tmp / 'pattern.raw', 'raw',
                              container_format='ovf')
            at = self._log_at()
            self._from_image('both-b1', ovf)
            entry = services.wait_until(
                lambda: [v for v in self._internal_volumes(project)
                         if v['name'] == f'image-{ovf["id"]}' and
                         v['status'] == 'available'], 60, interval=0.5,
                what=f'Cinder\'s cache volume image-{ovf["id"]}')
            self.ids['both-entry'] = entry[0]['id']
            self._made['volumes'].append('both-entry')
            t2 = self._from_image('both-b2', ovf)
            log = self._log_since(at)
            self._prove(log.count(DOWNLOAD) == 1 and
                        FILLED % ovf['id'] not in log and
                        'no golden-image clone (container_format ovf)'
                        in log,
                        f'ovf image: {log.count(DOWNLOAD)} downloads '
                        '(expected one, through Cinder\'s cache, the golden '
                        'cache declining)')
            self._prove(self._cache_rows() == [
                (ovf['id'], self.ids['both-entry'])],
                f'Cinder\'s cache table {self._cache_rows()}')
            self.expect_zfs(
                absent=[self._entry(ovf['id'])],
                origin={self.zvol('both-entry'): self.zvol('both-b1'),
                        self.zvol('both-b2'): self.zvol('both-entry')})
            self._data_on_host('both-b2', digest)
            self._verify_over_iscsi('both-b2', GiB)
            say(f'      ovf image: Cinder\'s cache entry a ZFS clone of the '
                f'first volume, second volume a clone of the entry in '
                f'{t2:.1f}s')

            # the images go; the user volumes and the entry go in the
            # order that keeps dependents longest
            for image in (bare, ovf):
                self._glance('DELETE', f'/images/{image["id"]}', (204,))
            hidden = f'{g.parent}/deleted-volume-'
            self.delete_volume('both-b1')
            self._prove(any(n.startswith(hidden + self.ids['both-b1'])
                            for n in g.zfs_names()),
                        'both-b1 not kept hidden for the cache entry')
            # Cinder's eviction is this delete (cache.delete_cached_volume)
            self.delete_volume('both-entry')
            self._prove(not self._cache_rows(), f'Cinder\'s cache entry '
                        f'left after its volume went: {self._cache_rows()}')
            self._data_on_host('both-b2', digest)
            self.delete_volume('both-b2')
            left = [n for n in g.zfs_names() if any(
                self.ids[v] in n for v in ('both-b1', 'both-entry',
                                           'both-b2'))]
            self._prove(not left, f'left after the last clone went: {left}')
            for name in ('both-a1', 'both-a2'):
                self.delete_volume(name)
            self._prove(self._purge() == [f'image-{bare["id"]}'],
                        'golden cache entry of the bare image not purged')
            self.expect_only_parent()
            say('      images deleted, volumes and both caches emptied: '
                'only the parent dataset left')


def corrupt_qcow2(path: Path) -> None:
    """Point the first L2 entry of a qcow2 at an unaligned offset."""
    with open(path, 'r+b') as f:
        header = f.read(72)
        l1_offset = int.from_bytes(header[40:48], 'big')
        f.seek(l1_offset)
        l2_offset = int.from_bytes(f.read(8), 'big') & 0x00fffffffffffe00
        if not l2_offset:
            raise ValueError(f'{path}: no L2 table for the first cluster')
        f.seek(l2_offset)
        f.write((0x8000000000000000 | 0x10200).to_bytes(8, 'big'))


SCENARIOS = [
    # (number, name, method, numbers it needs)
    (10, 'raw image -> volume, golden zvol, O(1) second clone',
     's10_image_raw', ()),
    (11, 'qcow2 image -> volume', 's11_image_qcow2', ()),
    (12, 'volume -> image (raw; qcow2 while attached)',
     's12_volume_to_image', ()),
    (13, 'bad images: corrupt, too large, deleted', 's13_bad_images', ()),
    (14, 'Cinder\'s image volume cache next to the golden-image cache',
     's14_both_image_caches', ()),
]
