"""Images: sparse records, the golden-image cache and the copy paths,
through the driver and the in-process storage host."""

import logging
import os
import shutil
import tempfile
import threading

from unittest import mock

import fixtures
from oslo_concurrency import processutils
from oslo_utils import units

from cinder import exception as cinder_exception
from cinder.image import image_utils
from cinder.message import api as message_api
from cinder.message import message_field
from cinder import objects
from cinder.tests.unit import fake_constants as fake
from cinder.volume.flows.manager import create_volume

from cinder_zol import exception
from cinder_zol import images
from tests.unit import test_driver

MiB = units.Mi
GiB = units.Gi
IMAGE = 'c0ffee00-1111-2222-3333-444455556666'


def sparse_file(path, size, extents):
    with open(path, 'wb') as f:
        f.truncate(size)
        for offset, data in extents:
            f.seek(offset)
            f.write(data)


class RecordsTestCase(test_driver.test.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.path = os.path.join(self.dir, 'raw')

    def test_only_data_travels(self):
        # a hole, a written all-zero chunk, data inside and across chunks
        sparse_file(self.path, 64 * MiB, [
            (8 * MiB, bytes(MiB)), (20 * MiB + 5, b'A' * 300),
            (40 * MiB - 100, b'B' * 200)])
        stats = {}
        stream = b''.join(images.records(self.path, stats=stats))
        self.assertEqual(64 * MiB, stats['size'])
        self.assertLessEqual(stats['sent'], 3 * MiB)
        self.assertGreater(stats['sent'], 0)
        out = os.path.join(self.dir, 'copy')
        import io
        self.assertEqual(64 * MiB, images.write_records(io.BytesIO(stream),
                                                        out))
        with open(self.path, 'rb') as a, open(out, 'rb') as b:
            self.assertEqual(a.read(), b.read())

    def test_not_sparse_sends_everything(self):
        sparse_file(self.path, 4 * MiB, [(MiB, b'x')])
        stats = {}
        b''.join(images.records(self.path, sparse=False, stats=stats))
        self.assertEqual(4 * MiB, stats['sent'])

    def test_truncated_stream(self):
        import io
        self.assertRaises(cinder_exception.VolumeBackendAPIException,
                          images.write_records,
                          io.BytesIO(bytes(8) + (100).to_bytes(8, 'big') +
                                     b'abcd'),
                          os.path.join(self.dir, 'x'))

    def test_hash(self):
        self.assertEqual('sha512:ab', images.image_hash(
            {'os_hash_algo': 'sha512', 'os_hash_value': 'ab',
             'checksum': 'cd'}))
        self.assertEqual('md5:cd', images.image_hash({'checksum': 'cd'}))
        self.assertIsNone(images.image_hash({}))


class FakeImageService(object):
    """show/download of raw images whose bytes come from local files."""

    def __init__(self):
        self.images = {}

    def add(self, image_id, path, **meta):
        self.images[image_id] = dict(
            id=image_id, status='active', disk_format='raw',
            container_format='bare', size=os.path.getsize(path),
            virtual_size=os.path.getsize(path), os_hash_algo='sha512',
            os_hash_value='aa' * 64, properties={}, path=path, **meta)

    def show(self, context, image_id):
        return dict(self.images[image_id])


class ImageCacheTestCase(test_driver.DriverTestBase):

    # the real per-image lock (tooz's file driver), not Cinder's mock of it
    MOCK_TOOZ = False

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.override_config('image_conversion_dir', self.dir)
        self.glance = FakeImageService()
        raw = os.path.join(self.dir, 'image.raw')
        sparse_file(raw, 3 * MiB, [(MiB, b'bootsector' * 100)])
        self.glance.add(IMAGE, raw)
        self.fetches = []
        self.mock_object(image_utils, 'fetch_to_raw', self.fake_fetch)

    def fake_fetch(self, context, image_service, image_id, dest, blocksize,
                   size=None, run_as_root=True, disable_sparse=False):
        """Cinder's fetch_to_raw, reduced to what the driver relies on."""
        self.fetches.append((image_id, size, run_as_root))
        meta = image_service.images[image_id]
        if size is not None and meta['virtual_size'] > size * GiB:
            raise cinder_exception.ImageUnacceptable(
                image_id=image_id, reason='image does not fit')
        shutil.copyfile(meta['path'], dest)

    def meta(self, image_id=IMAGE):
        return self.glance.show(None, image_id)

    def clone_image(self, vol, image_id=IMAGE):
        return self.driver.clone_image(self.ctxt, vol, (None, []),
                                       self.meta(image_id), self.glance)

    def entry(self, name='image-' + IMAGE):
        return self.ds(name)

    def test_first_volume_fills_the_cache_later_ones_clone(self):
        first = self.volume(2)
        self.assertEqual(({}, True), self.clone_image(first))
        entry = self.entry()
        self.assertEqual(GiB, entry['volsize'])
        self.assertEqual('sha512:' + 'aa' * 64,
                         entry['props']['cinder_zol:image_hash'])
        self.assertEqual(IMAGE, entry['props']['cinder_zol:image_id'])
        self.assertEqual(self.path('image-' + IMAGE, 'golden'),
                         self.ds(first.name)['origin'])
        self.assertEqual(2 * GiB, self.ds(first.name)['volsize'])
        self.assertEqual([(IMAGE, 2, False)], self.fetches)
        # the data reached the cache zvol, and only the data was sent
        data = self.host.devices.read('tank/cinder/image-' + IMAGE, MiB,
                                      1000)
        self.assertEqual(b'bootsector' * 100, data)

        second = self.volume(5)
        del self.runner.requests[:]
        self.assertEqual(({}, True), self.clone_image(second))
        self.assertEqual(['image-find', 'clone-snapshot'],
                         self.runner.ops())
        self.assertEqual(1, len(self.fetches))
        self.assertEqual(5 * GiB, self.ds(second.name)['volsize'])

    def test_cache_survives_and_is_found_by_a_new_driver(self):
        self.clone_image(self.volume(1))
        self.driver.do_setup(self.ctxt)
        self.driver.check_for_setup_error()
        self.clone_image(self.volume(1))
        self.assertEqual(1, len(self.fetches))

    def test_type_with_another_block_size_gets_its_own_entry(self):
        self.clone_image(self.volume(1))
        vol = self.typed_volume(1, **{'zfs:volblocksize': '64K'})
        self.clone_image(vol)
        self.assertIsNotNone(self.entry('image-%s-64k' % IMAGE))
        self.assertEqual(2, len(self.fetches))

    def test_changed_data_replaces_the_entry(self):
        kept = self.volume(1)
        self.clone_image(kept)
        self.glance.images[IMAGE]['os_hash_value'] = 'bb' * 64
        fresh = self.volume(1)
        self.clone_image(fresh)
        self.assertEqual(2, len(self.fetches))
        self.assertEqual('sha512:' + 'bb' * 64,
                         self.entry()['props']['cinder_zol:image_hash'])
        # the volume made from the old data keeps it
        origin = self.ds(kept.name)['origin']
        self.assertTrue(origin.startswith(self.path('deleted-image-')))

    def test_concurrent_first_volumes_make_one_entry(self):
        vols = [self.volume(1) for _ in range(4)]
        errors = []

        def make(vol):
            try:
                self.clone_image(vol)
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=make, args=(v,)) for v in vols]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual([], errors)
        self.assertEqual(1, len(self.fetches))
        entries = [n for n in self.zfs.names() if 'image-' in n and
                   '@' not in n]
        self.assertEqual(['tank/cinder/image-' + IMAGE], entries)

    def test_commit_race_between_services_keeps_one_entry(self):
        host = self.driver.storage
        host.image_begin('image-x', GiB, {'props': {}, 'image_id': 'x',
                                          'hash': 'md5:1'})
        imp2 = host.image_begin('image-x', GiB, {'props': {},
                                                 'image_id': 'x',
                                                 'hash': 'md5:1'})
        names = [n for n in self.zfs.names() if 'importing-' in n]
        self.assertEqual('committed', host.image_commit(
            names[0].split('/')[-1], 'image-x'))
        self.assertEqual('exists', host.image_commit(imp2, 'image-x'))
        self.assertEqual([], [n for n in self.zfs.names()
                              if 'importing-' in n])

    def test_failed_transfer_leaves_nothing(self):
        self.mock_object(self.driver.storage, 'write',
                         side_effect=exception.HostOperationFailed(
                             what='connection lost'))
        self.assertRaises(exception.HostOperationFailed, self.clone_image,
                          self.volume(1))
        self.assert_only_parent_left()
        self.assertEqual([], [f for f in os.listdir(self.dir)
                              if f.startswith('zol-image')])

    def _bad_image(self, error):
        self.mock_object(image_utils, 'fetch_to_raw', side_effect=error)
        create = self.mock_object(message_api.API, 'create')
        self.assertRaises(cinder_exception.ImageCopyFailure,
                          self.clone_image, self.volume(1))
        self.assert_only_parent_left()
        # Cinder reschedules a create that fails with anything else: the
        # next backend would fetch the same bad image again, and the user
        # would only learn that no backend was found
        self.assertIn(cinder_exception.ImageCopyFailure,
                      create_volume.OnFailureRescheduleTask(
                          None, None, None, None, False).no_reschedule_types)
        create.assert_called_once_with(
            self.ctxt, message_field.Action.COPY_IMAGE_TO_VOLUME,
            resource_uuid=mock.ANY, exception=mock.ANY)

    def test_corrupt_image_fails_without_reschedule(self):
        self._bad_image(processutils.ProcessExecutionError(
            cmd='qemu-img convert', exit_code=1,
            stderr='qcow2: Image is corrupt'))

    def test_download_checksum_mismatch_fails_without_reschedule(self):
        self._bad_image(cinder_exception.ImageDownloadFailed(
            image_href=IMAGE, reason='Corrupt image download'))

    def test_image_larger_than_the_volume(self):
        raw = os.path.join(self.dir, 'big.raw')
        sparse_file(raw, 3 * GiB, [(0, b'x')])
        self.glance.add('big', raw)
        self.assertRaises(cinder_exception.ImageUnacceptable,
                          self.clone_image, self.volume(1), 'big')
        self.assert_only_parent_left()

    def test_cached_image_larger_than_the_volume(self):
        # the entry exists (from a 2 GiB image); a 1 GiB volume is refused
        # on the host, with no read of the entry before the clone
        raw = os.path.join(self.dir, 'two.raw')
        sparse_file(raw, 2 * GiB, [(0, b'x')])
        self.glance.add('two', raw)
        self.clone_image(self.volume(2), 'two')
        vol = self.volume(1)
        e = self.assertRaises(exception.ZfsInvalid, self.clone_image, vol,
                              'two')
        self.assertIn('refusing to make a %d-byte volume' % GiB, str(e))
        self.assertIsNone(self.ds(vol.name))

    def test_not_for_the_cache(self):
        vol = self.volume(1)
        self.set_conf(zol_image_cache=False)
        self.assertEqual((None, False), self.clone_image(vol))
        self.set_conf(zol_image_cache=True)
        self.glance.images[IMAGE]['properties'] = {'img_signature': 'x'}
        self.assertEqual((None, False), self.clone_image(vol))
        self.glance.images[IMAGE]['properties'] = {}
        self.glance.images[IMAGE]['container_format'] = 'ova'
        self.assertEqual((None, False), self.clone_image(vol))
        self.assertEqual([], self.fetches)

    def test_eviction_least_recently_used_first(self):
        self.set_conf(zol_image_cache_max_count=2)
        raws = {}
        for image_id in ('i1', 'i2', 'i3'):
            raws[image_id] = os.path.join(self.dir, image_id)
            sparse_file(raws[image_id], MiB, [(0, image_id.encode())])
            self.glance.add(image_id, raws[image_id])
        v1 = self.volume(1)
        self.clone_image(v1, 'i1')        # i1 used by a clone
        self.clone_image(self.volume(1), 'i2')
        self.driver.delete_volume(self.volume(1))
        for name in [n for n in self.zfs.names() if 'volume-' in n and
                     '@' not in n]:
            if v1.name not in name:
                self.driver.storage.delete_volume(name.split('/')[-1])
        self.clone_image(self.volume(1), 'i3')
        names = sorted(n.split('/')[-1] for n in self.zfs.names()
                       if '/image-' in n and '@' not in n)
        # i2 had no clone left: evicted; i1 still has one, i3 is new
        self.assertEqual(['image-i1', 'image-i3'], names)

    def test_purge_keeps_clones_working(self):
        vol = self.volume(1)
        self.clone_image(vol)
        self.assertEqual(['image-' + IMAGE],
                         self.driver.storage.image_purge())
        self.assertIsNotNone(self.ds(vol.name))
        self.driver.delete_volume(vol)
        self.assert_only_parent_left()


class CinderCacheTestCase(ImageCacheTestCase):
    """Cinder's own image volume cache next to the golden-image cache."""

    def setup_logs(self, **conf):
        self.set_conf(**conf)
        logs = self.useFixture(fixtures.FakeLogger(
            name='cinder_zol.images', level=logging.INFO))
        self.driver.do_setup(self.ctxt)
        return logs.output

    def test_no_word_when_cinder_cache_is_off(self):
        self.assertEqual('', self.setup_logs(
            image_volume_cache_enabled=False))

    def test_warning_without_the_internal_tenant(self):
        out = self.setup_logs(image_volume_cache_enabled=True)
        self.assertIn('cinder_internal_tenant_project_id or '
                      'cinder_internal_tenant_user_id is not', out)
        self.assertIn('zol_image_cache already serves', out)

    def test_both_on_says_which_serves_what(self):
        self.override_config('cinder_internal_tenant_project_id',
                             fake.PROJECT2_ID)
        self.override_config('cinder_internal_tenant_user_id',
                             fake.USER2_ID)
        out = self.setup_logs(image_volume_cache_enabled=True)
        self.assertIn('only keeps the images it declines', out)
        self.assertEqual('', self.setup_logs(zol_image_cache=False))

    def test_declined_image_through_cinder_cache_leaves_nothing(self):
        """The calls Cinder's cache makes for an image the driver declines.

        The first volume is written over SSH, the cache entry is a clone
        of it, the next volume a clone of the entry; deleting the user
        volumes and evicting the entry (a volume delete) leaves the parent
        empty. (Data through clones: e2e scenario 14, on real ZFS.)
        """
        self.glance.images[IMAGE]['container_format'] = 'ovf'
        first, entry, second = (self.volume(1) for _ in range(3))
        self.assertEqual((None, False), self.clone_image(first))
        self.driver.create_volume(first)
        self.driver.copy_image_to_volume(self.ctxt, first, self.glance,
                                         IMAGE)
        self.driver.create_cloned_volume(entry, first)
        self.driver.create_cloned_volume(second, entry)
        self.assertEqual(1, len(self.fetches))
        self.assertEqual([], [n for n in self.zfs.names() if '/image-' in n])
        self.assertTrue(self.ds(entry.name)['origin'].startswith(
            self.path(first.name) + '@'))
        self.assertTrue(self.ds(second.name)['origin'].startswith(
            self.path(entry.name) + '@'))
        self.assertEqual(b'bootsector' * 100, self.host.devices.read(
            self.path(first.name), MiB, 1000))
        self.driver.delete_volume(first)
        self.driver.delete_volume(entry)     # Cinder's eviction
        self.assertIsNotNone(self.ds(second.name))
        self.driver.delete_volume(second)
        self.assert_only_parent_left()


class CopyTestCase(ImageCacheTestCase):

    def test_copy_image_to_volume_writes_only_data(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.driver.copy_image_to_volume(self.ctxt, vol, self.glance, IMAGE)
        self.assertEqual(b'bootsector' * 100, self.host.devices.read(
            'tank/cinder/' + vol.name, MiB, 1000))
        self.assertEqual('write', self.runner.requests[-1][0])

    def test_reimage_overwrites_old_data(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        path = self.host.devices.path('/dev/zvol/tank/cinder/' + vol.name)
        with open(path, 'r+b') as f:
            f.write(b'old' * 1000)
        self.driver.copy_image_to_volume(self.ctxt, vol, self.glance, IMAGE,
                                         disable_sparse=True)
        self.assertEqual(bytes(3000), self.host.devices.read(
            'tank/cinder/' + vol.name, 0, 3000))

    def test_copy_volume_to_image(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        path = self.host.devices.path('/dev/zvol/tank/cinder/' + vol.name)
        with open(path, 'r+b') as f:
            f.seek(10 * MiB)
            f.write(b'payload')
        uploaded = {}

        def upload(context, image_service, image_meta, tmp, volume,
                   run_as_root=True):
            uploaded['size'] = os.path.getsize(tmp)
            with open(tmp, 'rb') as f:
                f.seek(10 * MiB)
                uploaded['data'] = f.read(7)
            uploaded['run_as_root'] = run_as_root
        with mock.patch.object(images.image_utils, 'temporary_file',
                               image_utils.temporary_file), \
                mock.patch('cinder.volume.volume_utils.upload_volume',
                           upload):
            self.driver.copy_volume_to_image(self.ctxt, vol, self.glance,
                                             {'id': 'new'})
        self.assertEqual({'size': GiB, 'data': b'payload',
                          'run_as_root': False}, uploaded)
        self.assertEqual([], [f for f in os.listdir(self.dir)
                              if f.startswith('zol-upload')])

    def test_attached_volume_is_read_from_a_clone(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        vol.volume_attachment = objects.VolumeAttachmentList(objects=[
            objects.VolumeAttachment(context=self.ctxt,
                                     id='11111111-2222-3333-4444-555555555555',
                                     attach_status='attached')])
        with mock.patch('cinder.volume.volume_utils.upload_volume'):
            del self.runner.requests[:]
            self.driver.copy_volume_to_image(self.ctxt, vol, self.glance,
                                             {'id': 'new'})
        self.assertEqual(['clone', 'read', 'delete'], self.runner.ops())
        self.assertEqual('upload-' + vol.name, self.runner.requests[1][-1])
        self.assertNotIn(self.path('upload-' + vol.name), self.zfs.names())
