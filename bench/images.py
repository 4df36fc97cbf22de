"""Volumes from images through the golden-image cache; numbers only.

What the image cache must deliver: the first volume from an image pays
for the cache fill (Cinder's image_utils fetches and converts, the driver
sends only the non-zero records over its own SSH connection); every later
one should be a ZFS clone, as fast for an 8 GiB image as for a 1 GiB one,
and the fill's transfer should run near the speed of a bare SSH pipe. The
driver's real ``clone_image`` runs against the lab guest with a fake Glance
that serves sparse local files the way glanceclient does (64 KiB chunks),
so download and ``qemu-img convert`` are Cinder's own. The bare paths
(OpenSSH and paramiko alone, ``cat > /dev/null``) carry the very bytes the
driver sent, in the same run. Targets are printed next to the numbers;
nothing is asserted (the exit status says only whether the run finished).

Run in a lab guest: ``python -m cinder_zol_lab run --target tgtadm --
python bench/images.py`` (--quick: small images, for development).
"""

import argparse
from concurrent import futures
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

MiB = 2 ** 20
GiB = 2 ** 30
GLANCE_CHUNK = 64 * 1024     # glanceclient's download chunk size
SEND_CHUNK = MiB

# the targets of the image cache, printed next to the numbers
TARGET_CLONE = 0.10          # volume #2 / volume #1
TARGET_SIZE = 1.1            # volume #2 at 8 GiB / at 1 GiB
TARGET_COPY = 0.70           # fill transfer MiB/s / bare SSH MiB/s


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='1 and 2 GiB images with 16 MiB of data, 3 clones '
                        '(for development; the targets speak of 1/8 GiB)')
    p.add_argument('--volumes', type=int, default=10,
                   help='volumes per image (the first fills the cache)')
    p.add_argument('--keep-dir', action='store_true',
                   help='leave the temporary directory (images) behind')
    return p.parse_args(argv)


# -- images ---------------------------------------------------------------

def build_image(path, size, data, regions=4):
    """A sparse raw file of ``size`` with ``data`` bytes in a few regions.

    Random (incompressible) data, so ZFS compression on the storage host
    cannot make the fill cheaper than a real image would be. Returns the
    md5 and sha512 of the whole virtual disk, as Glance reports them.
    """
    per = data // regions // MiB * MiB
    offsets = [(size // regions) * i // MiB * MiB for i in range(regions)]
    with open(path, 'wb') as f:
        f.truncate(size)
        for offset in offsets:
            f.seek(offset)
            for _ in range(per // (8 * MiB)):
                f.write(os.urandom(8 * MiB))
            f.write(os.urandom(per % (8 * MiB)))
    # hashlib lets go of the GIL: one thread per digest
    with futures.ThreadPoolExecutor(2) as pool:
        md5, sha = pool.map(lambda h: _digest(path, h),
                            (hashlib.md5(), hashlib.sha512()))
    return md5, sha, per * regions


def _digest(path, h):
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(16 * MiB)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


class FakeGlance(object):
    """show() and download() of local raw files, as Cinder's Glance API.

    Only what image_utils.fetch_to_raw / fetch / TemporaryImages use.
    """

    temp_images = None

    def __init__(self):
        self.images = {}
        self.paths = {}

    def add(self, path, md5, sha512):
        image_id = str(uuid.uuid4())
        size = os.path.getsize(path)
        self.paths[image_id] = path
        self.images[image_id] = {
            'id': image_id, 'name': os.path.basename(path),
            'status': 'active', 'visibility': 'public', 'protected': False,
            'disk_format': 'raw', 'container_format': 'bare',
            'size': size, 'virtual_size': size, 'min_disk': 0,
            'min_ram': 0, 'checksum': md5, 'os_hash_algo': 'sha512',
            'os_hash_value': sha512, 'properties': {}}
        return image_id

    def show(self, context, image_id):
        return dict(self.images[image_id])

    def download(self, context, image_id, data=None):
        """Every byte, holes included, in glanceclient's chunks."""
        def chunks():
            with open(self.paths[image_id], 'rb') as f:
                while True:
                    chunk = f.read(GLANCE_CHUNK)
                    if not chunk:
                        return
                    yield chunk
        if data is None:
            return chunks()
        for chunk in chunks():
            data.write(chunk)


# -- instrumentation -------------------------------------------------------

class Probe(object):
    """Phase times of a fill and the bytes the runner's send_stream sent.

    Wraps image_utils.fetch and convert_image, images.records (to keep a
    hard link to the converted file, so the bare paths can send the same
    bytes) and the runner's send_stream.
    """

    def __init__(self, drv, keep_dir):
        from cinder.image import image_utils

        from cinder_zol import images
        self.keep_dir = keep_dir
        self.kept = None
        self.reset()
        self._lock = threading.Lock()
        self._wrap(image_utils, 'fetch', 'download')
        self._wrap(image_utils, 'convert_image', 'convert')
        self._wrap(drv.storage, 'image_commit', 'commit')
        self.records = real_records = images.records

        def records(path, *args, **kwargs):
            self.kept = os.path.join(self.keep_dir, 'converted-%s'
                                     % uuid.uuid4().hex[:8])
            os.link(path, self.kept)
            return real_records(path, *args, **kwargs)
        images.records = records
        real_send = drv.runner.send_stream

        def send_stream(argv, chunks, *args, **kwargs):
            def counted():
                for chunk in chunks:
                    self.sent += len(chunk)
                    yield chunk
            t0 = time.monotonic()
            try:
                return real_send(argv, counted(), *args, **kwargs)
            finally:
                self.phases['send'] = (self.phases.get('send', 0) +
                                       time.monotonic() - t0)
        drv.runner.send_stream = send_stream

    def reset(self):
        self.sent = 0
        self.phases = {}

    def _wrap(self, owner, name, phase):
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.monotonic()
            try:
                return real(*args, **kwargs)
            finally:
                self.phases[phase] = (self.phases.get(phase, 0) +
                                      time.monotonic() - t0)
        setattr(owner, name, timed)


# -- bare paths ---------------------------------------------------------

def write_stream(records, converted, path):
    """The record stream the driver sends for ``converted``, as a file."""
    n = 0
    with open(path, 'wb') as f:
        for record in records(converted):
            f.write(record)
            n += len(record)
    return n


def openssh(shell, stream):
    """Seconds to pipe the file through ssh, and of an empty ssh session.

    A fresh connection each (no control master): the handshake is timed
    apart so it can be taken out, as the driver's pooled connection is
    already open when the fill starts.
    """
    t0 = time.monotonic()
    subprocess.run(shell.ssh_argv('true'), check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    handshake = time.monotonic() - t0
    return _pipe(shell, stream, 'cat > /dev/null'), handshake


def _pipe(shell, stream, remote):
    """Seconds to pipe the file into ``remote`` over a fresh ssh session."""
    with open(stream, 'rb') as f:
        t0 = time.monotonic()
        subprocess.run(shell.ssh_argv(remote), check=True, stdin=f,
                       capture_output=True)
        return time.monotonic() - t0


def openssh_zvol(shell, stream, size):
    """Seconds to pipe the file into a fresh zvol through ssh, with fsync.

    What the fill itself must do on the storage host (the agent writes the
    zvol and fsyncs it), without the driver: the write floor, next to the
    wire floor of ``cat > /dev/null``. Same connection setup as openssh().
    """
    zvol = '%s/bench-floor-%s' % (shell.parent, uuid.uuid4().hex[:8])
    shell.run('zfs create -s -V %d %s && udevadm settle && test -b '
              '/dev/zvol/%s' % (size, zvol, zvol))
    try:
        return _pipe(shell, stream, 'dd of=/dev/zvol/%s bs=1M '
                     'iflag=fullblock conv=fsync status=none' % zvol)
    finally:
        # udev probes the zvol when dd closes it: busy for a moment
        shell.run('udevadm settle; for i in $(seq 20); do zfs destroy %s '
                  '&& exit 0; sleep 0.5; done; exit 1' % zvol)


def _send_file(channel, stream):
    with open(stream, 'rb') as f:
        while True:
            chunk = f.read(SEND_CHUNK)
            if not chunk:
                break
            channel.sendall(chunk)
    channel.shutdown_write()
    while channel.recv(65536):
        pass
    return channel.recv_exit_status()


def paramiko_alone(shell, stream):
    """Seconds for one paramiko channel running ``cat > /dev/null``.

    A plain client with the driver's cipher order, connected before the
    clock starts, so this is the transfer alone.
    """
    import paramiko

    from cinder_zol import runner
    client = paramiko.SSHClient()
    client.load_host_keys(str(shell.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(shell.host, port=shell.ssh_port, username=shell.user,
                   pkey=paramiko.PKey.from_path(str(shell.key)),
                   look_for_keys=False, allow_agent=False, timeout=30,
                   transport_factory=runner._Transport)
    try:
        t0 = time.monotonic()
        channel = client.get_transport().open_session()
        channel.exec_command('cat > /dev/null')
        status = _send_file(channel, stream)
        dt = time.monotonic() - t0
        cipher = client.get_transport().remote_cipher
    finally:
        client.close()
    if status:
        raise RuntimeError('cat exited %s' % status)
    return dt, cipher


# -- the bench ------------------------------------------------------------

def mibps(n, seconds):
    return n / MiB / seconds if seconds > 0 else float('nan')


class Run(object):
    """One image: volume #1 (fill), the clones, the bare paths."""

    def __init__(self, label, drv, ctxt, shell, glance, probe, tmp, log):
        self.label = label
        self.drv = drv
        self.ctxt = ctxt
        self.shell = shell
        self.glance = glance
        self.probe = probe
        self.tmp = tmp
        self.log = log
        self.volumes = []
        self.size = None
        self.row = {'label': label}

    def volume(self, size_gb):
        from cinder_zol_lab import demo
        vol = demo.make_volume(self.ctxt, size_gb)
        self.volumes.append(vol)
        return vol

    def clone_image(self, image_id, size_gb):
        vol = self.volume(size_gb)
        meta = self.glance.show(self.ctxt, image_id)
        t0 = time.monotonic()
        update, cloned = self.drv.clone_image(self.ctxt, vol, (None, []),
                                              meta, self.glance)
        dt = time.monotonic() - t0
        if not cloned:
            raise RuntimeError('clone_image declined image %s' % image_id)
        return dt

    def run(self, image_id, size_gb, count):
        row = self.row
        self.size = size_gb * GiB
        self.probe.reset()
        row['first'] = self.clone_image(image_id, size_gb)
        row['sent'] = self.probe.sent
        row['phases'] = dict(self.probe.phases)
        self.log('  %s: volume #1 (fill) %.2f s, %.1f MiB sent'
                 % (self.label, row['first'], row['sent'] / MiB))
        row['clones'] = [self.clone_image(image_id, size_gb)
                         for _ in range(count - 1)]
        if row['clones']:
            self.log('  %s: volumes #2-#%d %s s' % (
                self.label, count,
                ' '.join('%.2f' % t for t in row['clones'])))
        self.bare()
        return row

    def bare(self):
        """The same bytes over the bare paths, right after the fill."""
        row = self.row
        stream = os.path.join(self.tmp, 'stream')
        row['stream'] = write_stream(self.probe.records, self.probe.kept,
                                     stream)
        os.unlink(self.probe.kept)
        for key, measure in (
                ('openssh', lambda: openssh(self.shell, stream)),
                ('zvol', lambda: openssh_zvol(self.shell, stream,
                                              self.size)),
                ('paramiko', lambda: paramiko_alone(self.shell, stream))):
            try:
                row[key] = measure()
            except Exception as e:
                row[key] = None
                self.log('  %s: %s failed: %s' % (
                    self.label, key, str(e).splitlines()[0]))
        os.unlink(stream)

    def delete(self):
        for vol in self.volumes:
            self.drv.delete_volume(vol)
        self.volumes = []


def report(rows, quick):
    """The tables, and this run's numbers against the targets."""
    print('\nvolumes from images (clone_image; seconds)')
    print('%-8s %7s %8s %8s %8s %8s %7s %9s' % (
        'image', 'data', '#1 fill', '#2', 'med 2-N', 'max 2-N', '#2/#1',
        'sent MiB'))
    for r in rows:
        clones = r.get('clones') or [float('nan')]
        print('%-8s %6.0fM %8.2f %8.2f %8.2f %8.2f %7.3f %9.1f' % (
            r['label'], r['data'] / MiB, r['first'], clones[0],
            statistics.median(clones), max(clones),
            clones[0] / r['first'], r['sent'] / MiB))
    print('\nvolume #1 phases (s): download = image_utils.fetch (every '
          'byte, like Glance), convert = qemu-img convert, send = '
          "runner.send_stream (agent writes the zvol), commit = "
          'snapshot @golden')
    for r in rows:
        p = r['phases']
        rest = r['first'] - sum(p.values())
        print('  %-8s download %6.2f  convert %6.2f  send %6.2f  commit '
              '%5.2f  other %5.2f' % (r['label'], p.get('download', 0),
                                      p.get('convert', 0), p.get('send', 0),
                                      p.get('commit', 0), rest))
    print('\nfirst copy transfer vs the bare paths, same bytes (MiB/s)')
    print('%-8s %9s %10s %12s %10s %14s' % (
        'image', 'MiB', 'driver', 'openssh', 'paramiko', 'openssh->zvol'))
    for r in rows:
        n = r['sent']
        drv = mibps(n, r['phases'].get('send', 0))
        ssh = r.get('openssh')
        cells = ['%10.1f' % drv]
        if ssh:
            r['bare'] = mibps(r['stream'], ssh[0] - ssh[1])
            cells.append('%12s' % ('%.1f (%.1f)' % (
                r['bare'], mibps(r['stream'], ssh[0]))))
        else:
            cells.append('%12s' % '-')
        pm = r.get('paramiko')
        cells.append('%10.1f' % mibps(r['stream'], pm[0]) if pm
                     else '%10s' % '-')
        zv = r.get('zvol')
        if zv and ssh:
            r['zvol_rate'] = mibps(r['stream'], zv - ssh[1])
            cells.append('%14.1f' % r['zvol_rate'])
        else:
            cells.append('%14s' % '-')
        r['driver_rate'] = drv
        print('%-8s %9.1f %s' % (r['label'], n / MiB, ' '.join(cells)))
        if n != r['stream']:
            print('  note: the runner sent %d bytes, the stream file has %d'
                  % (n, r['stream']))
    print('  driver: bytes sent / send_stream time (records read, sent, '
          'written into the zvol by the agent); openssh: handshake (%s) '
          'taken out, with it in brackets; paramiko: connected first, one '
          "channel, the driver's cipher order%s; openssh->zvol: the same "
          'bytes into a fresh zvol (dd, fsync), handshake taken out: what '
          'the storage host can write' % (
              ', '.join('%.2f s' % r['openssh'][1] for r in rows
                        if r.get('openssh')) or '-',
              ''.join(', cipher %s' % r['paramiko'][1] for r in rows[:1]
                      if r.get('paramiko'))))

    print('\nimage cache targets, this run%s:' % (
        ' (--quick sizes: not the 1 and 8 GiB images)' if quick else ''))

    def verdict(ok):
        return 'met' if ok else 'NOT met'
    for r in rows:
        clones = r.get('clones')
        if clones:
            v = clones[0] / r['first']
            print('  %s: volume #2 / volume #1 = %.3f (<= %.2f): %s'
                  % (r['label'], v, TARGET_CLONE,
                     verdict(v <= TARGET_CLONE)))
    if len(rows) == 2 and rows[0].get('clones') and rows[1].get('clones'):
        # every one of #2-#N is a "second volume" (a clone of the entry):
        # their median is the estimate, #2 alone is one noisy sample
        small, big = rows
        m = (statistics.median(big['clones']) /
             statistics.median(small['clones']))
        v = big['clones'][0] / small['clones'][0]
        print('  volume #2 %s / %s (median of #2-#N) = %.2f (<= %.1f): %s  '
              '[#2 alone: %.2f]' % (big['label'], small['label'], m,
                                    TARGET_SIZE, verdict(m <= TARGET_SIZE),
                                    v))
    for r in rows:
        if r.get('bare'):
            v = r['driver_rate'] / r['bare']
            print('  %s: first copy %.1f MiB/s / bare ssh %.1f MiB/s = '
                  '%.0f%% (>= %.0f%%): %s' % (
                      r['label'], r['driver_rate'], r['bare'], 100 * v,
                      100 * TARGET_COPY, verdict(v >= TARGET_COPY)))
        if r.get('bare') and r.get('zvol_rate'):
            print('    context: bare ssh into a zvol %.1f MiB/s = %.0f%% of '
                  'bare ssh; the first copy is %.0f%% of it' % (
                      r['zvol_rate'], 100 * r['zvol_rate'] / r['bare'],
                      100 * r['driver_rate'] / r['zvol_rate']))


def main(argv=None):
    args = parse_args(argv)
    # the lab lives next to this directory, not among installed packages
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from oslo_config import cfg

    from cinder import coordination
    from cinder_zol_lab import demo
    from cinder_zol_lab.shell import GuestShell

    if args.quick:
        sizes, data, count = ((1, '1 GiB'), (2, '2 GiB')), 16 * MiB, 4
    else:
        sizes, data, count = ((1, '1 GiB'), (8, '8 GiB')), 200 * MiB, 10
    count = min(count, args.volumes) if args.quick else args.volumes

    shell = GuestShell.from_env()
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix='cinder-zol-bench-images-')
    drv = None
    runs = []
    try:
        drv, ctxt = demo.make_driver(shell)
        conversion = os.path.join(tmp, 'conversion')
        os.makedirs(conversion)
        cfg.CONF.set_override('image_conversion_dir', conversion)
        # image_utils runs qemu-img info through privsep; as in the lab
        # stack, its helper is in this venv, not behind sudo and rootwrap
        cfg.CONF.set_override('helper_command', os.path.join(
            os.path.dirname(sys.executable), 'privsep-helper'),
            'cinder_sys_admin')
        cfg.CONF.set_override('backend_url', 'file://' + os.path.join(
            tmp, 'coordination'), 'coordination')
        coordination.COORDINATOR.start()
        version = drv.storage.version()
        print('bench images: target %s, mode %s (driver logs in as %s), '
              'OpenZFS %s, %d volumes per image; a shared 2-core machine '
              '(CI running): expect noise' % (
                  drv.target.helper, shell.mode or '?', shell.login,
                  version.get('zfs'), count), flush=True)
        glance = FakeGlance()
        probe = Probe(drv, tmp)
        for size_gb, label in sizes:
            path = os.path.join(tmp, 'image-%dg.raw' % size_gb)
            t1 = time.monotonic()
            md5, sha, written = build_image(path, size_gb * GiB, data)
            print('  %s: image built (%d MiB of data), hashed in %.1f s'
                  % (label, written // MiB, time.monotonic() - t1),
                  flush=True)
            image_id = glance.add(path, md5, sha)
            run = Run(label, drv, ctxt, shell, glance, probe, tmp,
                      lambda m: print(m, flush=True))
            runs.append(run)
            run.row['data'] = written
            run.run(image_id, size_gb, count)
            os.unlink(path)
        report([r.row for r in runs], args.quick)
    finally:
        if drv is not None:
            # the host as it was: every volume, then the cache entries
            for run in runs:
                try:
                    run.delete()
                except Exception as e:
                    print('cleanup: deleting %s volumes failed: %s'
                          % (run.label, e), flush=True)
            try:
                print('cleanup: image cache purged: %s'
                      % (drv.storage.image_purge() or '-'), flush=True)
            except Exception as e:
                print('cleanup: image_purge failed: %s' % e, flush=True)
            left = [n for n in shell.zfs_names() if n != shell.parent]
            print('cleanup: left under %s: %s'
                  % (shell.parent, ' '.join(left) or 'nothing'), flush=True)
            try:
                coordination.COORDINATOR.stop()
            except Exception:
                pass
        if not args.keep_dir:
            shutil.rmtree(tmp, ignore_errors=True)
    print('bench images: %.0f s' % (time.monotonic() - t0))
    return 0


if __name__ == '__main__':
    sys.exit(main())
