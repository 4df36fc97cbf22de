"""Image data between Glance and zvols, over the driver's own SSH link.

No attach, no iSCSI initiator on the cinder-volume host: Cinder's
``image_utils`` fetches, checks and converts the image to a sparse raw file
in ``image_conversion_dir`` (its format, size, backing-file and
``image_conversion_disable`` rules apply unchanged), and only the file's
data travels to the storage host, as records (offset, length, data) that
the root helper writes into the zvol. Zero regions are neither sent nor
written, so a transfer is proportional to the image's data, not to its
virtual size. The other way round, the storage host sends the zvol's
non-zero blocks, which become a sparse file that ``image_utils`` converts
and uploads.

:class:`ImageCache` keeps one golden zvol per image on the storage host
(:mod:`cinder_zol.host.images`): the first volume from an image fills it,
every later one is a ZFS clone of its ``@golden`` snapshot.

Next to Cinder's own image volume cache (``image_volume_cache_enabled``
with ``cinder_internal_tenant_project_id``/``_user_id``): both may be on,
and they never hold the same image at once. Cinder asks the driver's
``clone_image`` first (``create_volume.py`` ``_create_from_image``) and
looks at its own cache only when the driver declines, so:

* an image the golden cache takes (bare or compressed container, a
  Glance checksum, no signature Cinder must verify) is served by it alone:
  downloaded once into ``image-<id>``, every volume a clone of
  ``@golden``; Cinder's cache makes no entry and no internal-tenant
  volume for it;
* an image it declines goes Cinder's way, which with this driver is ZFS
  too: the first volume is written over SSH (``copy_image_to_volume``,
  one download), Cinder's entry is an internal-tenant volume made with
  ``create_cloned_volume`` (a clone of that first volume), and every
  later volume is a clone of the entry. Evicting the entry (Cinder's LRU
  limits, an out-of-date image, or deleting the volume) is an ordinary
  delete with dependents: clones made from it keep working and the zvols
  go with the last of them;
* encrypted volumes use neither: Cinder attaches and formats them.

Nothing is copied twice and each cache cleans up its own entries, so the
driver only says at start-up which cache serves what
(:func:`check_cinder_cache`); turning Cinder's on adds caching for the
images the golden cache declines (signed images above all, which Cinder
then verifies once) and costs one internal-tenant volume per such image.
"""

import contextlib
import errno
import math
import os

from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import units

from cinder import coordination
from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder.image import image_utils
from cinder.volume import volume_utils

from cinder_zol.host import errors as host_errors
from cinder_zol.host import names as host_names
from cinder_zol.host import props as zfs_props
from cinder_zol.host import wire

LOG = logging.getLogger(__name__)
cfg.CONF.import_opt('cinder_internal_tenant_project_id', 'cinder.context')
cfg.CONF.import_opt('cinder_internal_tenant_user_id', 'cinder.context')

_ZERO = bytes(wire.CHUNK)


def _data_ranges(fd, size):
    """(start, end) of the regions a sparse file has data in."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:      # only a hole is left
                return
            if e.errno == errno.EINVAL:     # no SEEK_DATA: read it all
                yield offset, size
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        offset = end


def records(path, sparse=True, stats=None):
    """The file as write records; all-zero chunks are left out.

    ``sparse=False`` (re-imaging a volume that holds old data) sends every
    chunk. ``stats`` (a dict) gets the bytes sent and the file's size.
    """
    stats = stats if stats is not None else {}
    stats.update(sent=0, size=0)
    with open(path, 'rb') as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        stats['size'] = size
        ranges = _data_ranges(fd, size) if sparse else [(0, size)]
        for start, end in ranges:
            offset = start
            while offset < end:
                data = os.pread(fd, min(wire.CHUNK, end - offset), offset)
                if not data:
                    break
                if not sparse or data != _ZERO[:len(data)]:
                    yield wire.record_header(offset, len(data)) + data
                    stats['sent'] += len(data)
                offset += len(data)
    yield wire.end_record(size)


def _read_exact(reader, size):
    data = bytearray()
    while len(data) < size:
        chunk = reader.read(size - len(data))
        if not chunk:
            raise cinder_exception.VolumeBackendAPIException(
                data=_('the storage host ended the data stream early'))
        data += chunk
    return bytes(data)


def write_records(reader, path):
    """Records from ``reader`` into a sparse file; the total size."""
    with open(path, 'wb') as f:
        fd = f.fileno()
        while True:
            offset, length = wire.parse_header(
                _read_exact(reader, wire.HEADER))
            if length == 0:
                os.ftruncate(fd, offset)
                return offset
            os.pwrite(fd, _read_exact(reader, length), offset)


def image_hash(image_meta):
    """Glance's checksum of the image data, 'algo:hex'.

    None when Glance gives none the storage host records (md5, sha256 or
    sha512, :func:`cinder_zol.host.names.image_hash`).
    """
    candidates = []
    if image_meta.get('os_hash_value'):
        candidates.append('%s:%s' % (image_meta.get('os_hash_algo') or
                                     'sha512', image_meta['os_hash_value']))
    if image_meta.get('checksum'):
        candidates.append('md5:%s' % image_meta['checksum'])
    for candidate in candidates:
        try:
            return host_names.image_hash(candidate)
        except host_errors.Refused:
            LOG.debug('Image checksum %r is not one the storage host '
                      'records.', candidate)
    return None


def _gib(size):
    return max(1, int(math.ceil(size / float(units.Gi))))


# refusals Cinder already does not reschedule: they pass unchanged
_NO_RESCHEDULE = (cinder_exception.ImageUnacceptable,
                  cinder_exception.ImageTooBig,
                  cinder_exception.ImageConversionNotAllowed,
                  cinder_exception.ImageSignatureVerificationException,
                  cinder_exception.ImageCopyFailure)


@contextlib.contextmanager
def fetched(context, image_service, image_id, volume_size=None,
            blocksize=units.Mi, disable_sparse=False):
    """The image as a sparse raw file in image_conversion_dir.

    A failure to get the image's data (download, checksum, conversion) is
    an ImageCopyFailure, as in Cinder's own copy path: Cinder does not
    reschedule that, since every backend would fetch the same bad image.
    """
    with image_utils.temporary_file(prefix='zol-image-%s-' % image_id) as tmp:
        try:
            image_utils.fetch_to_raw(context, image_service, image_id, tmp,
                                     blocksize, size=volume_size,
                                     run_as_root=False,
                                     disable_sparse=disable_sparse)
        except _NO_RESCHEDULE:
            raise
        except processutils.ProcessExecutionError as e:
            raise cinder_exception.ImageCopyFailure(reason=e.stderr)
        except Exception as e:
            raise cinder_exception.ImageCopyFailure(reason=e)
        yield tmp


def check_cinder_cache(configuration):
    """Log which image cache serves what, once, at driver start-up.

    Cinder's image volume cache next to ``zol_image_cache`` is safe (see
    the module's docstring), so nothing is refused. A warning only when
    Cinder's cache is on without its internal tenant: Cinder then never
    makes an entry and says so at every volume from an image.
    """
    if not configuration.safe_get('image_volume_cache_enabled'):
        return
    if not (cfg.CONF.cinder_internal_tenant_project_id and
            cfg.CONF.cinder_internal_tenant_user_id):
        LOG.warning('image_volume_cache_enabled is set but '
                    'cinder_internal_tenant_project_id or '
                    'cinder_internal_tenant_user_id is not: Cinder\'s image '
                    'volume cache cannot make entries. Set both in '
                    '[DEFAULT], or turn the option off%s.',
                    ' (zol_image_cache already serves volumes from images '
                    'as ZFS clones)' if configuration.zol_image_cache
                    else '')
        return
    if configuration.zol_image_cache:
        LOG.info('Image caches: zol_image_cache serves every image it can '
                 '(bare or compressed, with a Glance checksum, unsigned) as '
                 'a clone of its golden zvol; Cinder\'s image volume cache '
                 'only keeps the images it declines, as internal-tenant '
                 'volumes that are ZFS clones too. No image is cached '
                 'twice.')


class ImageCache(object):
    """Golden zvols on the storage host, one per image (and block size)."""

    def __init__(self, storage, configuration):
        self.storage = storage
        self.configuration = configuration

    @staticmethod
    def entry_name(image_id, props):
        vbs = props.get('volblocksize')
        return 'image-%s' % image_id + ('-%s' % vbs.lower() if vbs else '')

    def applies(self, volume, image_meta):
        """Why the cache cannot serve this image, or None when it can."""
        if not self.configuration.zol_image_cache:
            return 'zol_image_cache is off'
        if image_meta.get('container_format') not in (None, 'bare',
                                                      'compressed'):
            return ('container_format %s'
                    % image_meta.get('container_format'))
        if not image_hash(image_meta):
            return 'Glance reports no checksum'
        properties = image_meta.get('properties') or {}
        if properties.get('img_signature') and \
                self.configuration.safe_get('verify_glance_signatures') \
                != 'disabled':
            return 'the image is signed; Cinder verifies it while copying'
        return None

    def clone(self, context, volume, image_meta, image_service, wishes):
        """Make ``volume`` a clone of the image's golden zvol."""
        image_id = image_meta['id']
        digest = image_hash(image_meta)
        name = self.entry_name(image_id, wishes['props'])
        size = volume.size * units.Gi
        with coordination.COORDINATOR.get_lock('zol-image-%s' % name):
            found = self.storage.clone_image(name, volume.name, size, wishes,
                                             digest)
            if found == 'stale':
                LOG.info('Image cache entry %(n)s holds other data than '
                         'image %(i)s has now; replacing it.',
                         {'n': name, 'i': image_id})
                self.storage.delete_volume(name)
            if found != 'cloned':
                self._fill(context, volume, image_meta, image_service, name,
                           digest, dict(wishes, name=volume.name, size=size))
        return {}

    def _entry_props(self, wishes):
        """The backend's properties, and the block size the entry is for.

        Not the first volume's type: every type's volumes share the entry's
        data as it was written.
        """
        conf = self.configuration
        props = zfs_props.merged(conf.zol_zvol_properties,
                                 conf.zol_volblocksize, {})
        if wishes['props'].get('volblocksize'):
            props['volblocksize'] = wishes['props']['volblocksize']
        return props

    def _fill(self, context, volume, image_meta, image_service, name,
              digest, clone):
        """Write the image into a new cache entry and ``clone`` from it."""
        image_id = image_meta['id']
        with fetched(context, image_service, image_id, volume.size) as tmp:
            size = _gib(os.path.getsize(tmp)) * units.Gi
            importing = self.storage.image_begin(
                name, size, {'props': self._entry_props(clone),
                             'image_id': image_id, 'hash': digest})
            try:
                stats = {}
                self.storage.write(importing, records(tmp, stats=stats))
                result = self.storage.image_commit(importing, name, clone)
            except Exception:
                self._drop(importing)
                raise
        LOG.info('Image %(i)s cached on the storage host as %(n)s: '
                 '%(sent).1f MiB of data sent for %(size).1f MiB (%(r)s).',
                 {'i': image_id, 'n': name, 'sent': stats['sent'] / units.Mi,
                  'size': stats['size'] / units.Mi, 'r': result})
        self.evict(keep=name)

    def _drop(self, importing):
        drop_quietly(self.storage, importing,
                     'the start-up sweep removes it')

    def evict(self, keep=None):
        conf = self.configuration
        if not (conf.zol_image_cache_max_count or
                conf.zol_image_cache_max_size_gb):
            return
        result = self.storage.image_evict(
            conf.zol_image_cache_max_count,
            conf.zol_image_cache_max_size_gb * units.Gi, keep)
        if result.get('evicted'):
            LOG.info('Evicted from the image cache: %s',
                     ', '.join(result['evicted']))


def copy_image_to_zvol(storage, context, volume, image_service, image_id,
                       disable_sparse=False):
    """Write an image into an existing zvol (Cinder's generic path)."""
    with fetched(context, image_service, image_id, volume.size,
                 disable_sparse=disable_sparse) as tmp:
        stats = {}
        storage.write(volume.name, records(tmp, sparse=not disable_sparse,
                                           stats=stats))
    LOG.info('Image %(i)s written to %(v)s: %(sent).1f MiB sent for '
             '%(size).1f MiB.', {'i': image_id, 'v': volume.name,
                                 'sent': stats['sent'] / units.Mi,
                                 'size': stats['size'] / units.Mi})


def drop_quietly(storage, name, later):
    """Remove an import or upload clone; a failure only postpones it.

    Never raised: the operation's own outcome is what the caller reports.
    ``later`` says what removes it then.
    """
    try:
        storage.image_drop(name)
    except Exception as e:
        LOG.warning('Removing %(n)s from the storage host failed; %(l)s: '
                    '%(e)s', {'n': name, 'l': later, 'e': e})


class ZvolReader(object):
    """A zvol's bytes as a file (``read(n)``), from its data records.

    Only the zvol's non-zero blocks travel; the zeros between them are
    made here. For Glance's upload, read in the calling green thread: the
    source is an SSH channel, which a native thread (eventlet's tpool,
    where Cinder's upload_volume puts a ``volume_fd``) cannot wait on.
    Records out of order or a stream that ends early fail the read: never
    a shorter image.
    """

    def __init__(self, reader):
        self._reader = reader
        self._pos = 0        # offset of the next byte read() returns
        self._next = 0       # where the pending record's data starts
        self._left = 0       # bytes of that record not read yet
        self._ended = False  # the end record came: _next is the size

    def read(self, size=-1):
        chunks = []
        wanted = size if size is not None and size >= 0 else None
        while wanted is None or wanted > 0:
            piece = self._piece(wire.CHUNK if wanted is None
                                else min(wanted, wire.CHUNK))
            if not piece:
                break
            chunks.append(piece)
            if wanted is not None:
                wanted -= len(piece)
        return b''.join(chunks)

    def _piece(self, limit):
        """Up to ``limit`` (at most wire.CHUNK) bytes; b'' at the end."""
        if self._pos == self._next and not self._left and not self._ended:
            self._header()
        if self._pos < self._next:
            count = min(limit, self._next - self._pos)
            self._pos += count
            return _ZERO[:count]
        count = min(limit, self._left)
        data = _read_exact(self._reader, count) if count else b''
        self._pos += count
        self._next += count
        self._left -= count
        return data

    def _header(self):
        offset, length = wire.parse_header(
            _read_exact(self._reader, wire.HEADER))
        if offset < self._pos:
            raise cinder_exception.VolumeBackendAPIException(
                data=_('the storage host sent data for offset %(o)d after '
                       '%(p)d') % {'o': offset, 'p': self._pos})
        self._next, self._left, self._ended = offset, length, not length


def upload_zvol(storage, context, image_service, image_meta, volume, name):
    """Upload the zvol ``name`` as ``volume``'s image.

    A raw image that is not to be compressed goes from the zvol straight
    to Glance, as Cinder's generic path sends a raw volume: nothing is
    written locally, whatever the volume's size. Other formats need a
    file for qemu-img: a sparse copy of the zvol's data in
    image_conversion_dir, converted and uploaded by Cinder.
    """
    if image_meta.get('disk_format') == 'raw' and \
            image_meta.get('container_format') != 'compressed':
        _stream_to_glance(storage, context, image_service, image_meta,
                          volume, name)
        return
    with image_utils.temporary_file(prefix='zol-upload-%s-' % volume.id) \
            as tmp:
        _read_zvol_to_file(storage, name, tmp, image_meta)
        volume_utils.upload_volume(context, image_service, image_meta, tmp,
                                   volume, run_as_root=False)


def _stream_to_glance(storage, context, image_service, image_meta, volume,
                      name):
    """Cinder's upload of a raw volume, read in this thread.

    What volume_utils.upload_volume does with a ``volume_fd``, without
    its tpool (see :class:`ZvolReader`).
    """
    vtype = volume.volume_type
    store_id = vtype.extra_specs.get('image_service:store_id') \
        if vtype else None
    base_image_ref = volume.glance_metadata.get('image_id') \
        if volume.glance_metadata else None
    with storage.read(name) as reader:
        image_service.update(context, image_meta['id'], {},
                             ZvolReader(reader), store_id=store_id,
                             base_image_ref=base_image_ref)


def _read_zvol_to_file(storage, name, path, image_meta):
    try:
        with storage.read(name) as reader:
            return write_records(reader, path)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise cinder_exception.ImageTooBig(image_id=image_meta['id'], reason=_(
            'image_conversion_dir %(d)s has no room left for the volume\'s '
            'data, which the conversion to %(f)s needs there. Free space '
            'in it, point image_conversion_dir at a larger file system, or '
            'upload in raw format (streamed, nothing stored locally).')
            % {'d': os.path.dirname(path),
               'f': image_meta.get('disk_format')})
