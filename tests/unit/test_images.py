"""Images: sparse records, the golden-image cache and the copy paths,
through the driver and the in-process storage host."""

import contextlib
import errno
import io
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
from cinder_zol.host import agent
from cinder_zol import images
from tests.unit import host_fixture
from tests.unit import test_driver
from tests.unit import test_host_images

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
        self.assertRaises(cinder_exception.VolumeBackendAPIException,
                          images.write_records,
                          io.BytesIO(bytes(8) + (100).to_bytes(8, 'big') +
                                     b'abcd'),
                          os.path.join(self.dir, 'x'))

    def test_hash(self):
        sha512, md5 = 'ab' * 64, 'cd' * 16
        self.assertEqual('sha512:' + sha512, images.image_hash(
            {'os_hash_algo': 'sha512', 'os_hash_value': sha512,
             'checksum': md5}))
        # an algorithm the storage host does not record: Glance's md5
        self.assertEqual('md5:' + md5, images.image_hash(
            {'os_hash_algo': 'sha3_512', 'os_hash_value': sha512,
             'checksum': md5}))
        self.assertIsNone(images.image_hash(
            {'os_hash_value': sha512 + '\n'}))
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
        self.assertEqual(['clone-image'], self.runner.ops())
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
        digest = 'md5:' + '1' * 32
        host.image_begin('image-x', GiB, {'props': {}, 'image_id': 'x',
                                          'hash': digest})
        imp2 = host.image_begin('image-x', GiB, {'props': {},
                                                 'image_id': 'x',
                                                 'hash': digest})
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
        self.assertEqual(['image-upload', 'read', 'image-drop'],
                         self.runner.ops())
        self.assertTrue(self.runner.requests[1][-1].startswith(
            'upload-%s-' % vol.name))
        self.assertEqual([], [n for n in self.zfs.names() if 'upload-' in n])


class EvictionTestCase(ImageCacheTestCase):

    def add_images(self, *image_ids):
        for image_id in image_ids:
            raw = os.path.join(self.dir, image_id)
            sparse_file(raw, MiB, [(0, image_id.encode())])
            self.glance.add(image_id, raw)

    def test_entries_in_use_are_never_evicted(self):
        # every entry has clones: evicting one frees nothing, and the next
        # volume from its image would download it again
        self.set_conf(zol_image_cache_max_count=1)
        self.add_images('i1', 'i2')
        volumes = [self.volume(1) for _ in range(5)]
        for number, vol in enumerate(volumes):
            self.clone_image(vol, ('i1', 'i2')[number % 2])
        self.assertEqual(2, len(self.fetches))
        self.assertEqual([], [n for n in self.zfs.names()
                              if '/deleted-' in n])
        for vol in volumes:
            self.driver.delete_volume(vol)
        self.driver.image_cache.evict()
        entries = [n for n in self.zfs.names() if '/image-' in n and
                   '@' not in n]
        self.assertEqual(1, len(entries))

    def test_hidden_image_copies_count_in_the_budget(self):
        self.set_conf(zol_image_cache_max_count=2)
        self.add_images('i1', 'i2')
        self.clone_image(self.volume(1), 'i1')
        self.driver.storage.image_purge()    # i1 hidden: a volume uses it
        second = self.volume(1)
        self.clone_image(second, 'i2')
        self.driver.delete_volume(second)
        self.clone_image(self.volume(1), 'i1')
        # the hidden copy of i1, the new image-i1 and image-i2 make three:
        # image-i2, the only one without clones, goes
        self.assertIsNone(self.entry('image-i2'))
        self.assertIsNotNone(self.entry('image-i1'))

    def test_eviction_by_another_service_waits_for_a_clone(self):
        """Another service evicts i1 between the look and the clone.

        (Its fill of an image: i1 has no clones left.)
        """
        self.add_images('i1', 'i2')
        gone = self.volume(1)
        self.clone_image(gone, 'i1')
        self.driver.delete_volume(gone)
        self.clone_image(self.volume(1), 'i2')
        other = host_fixture.make_host(self.zfs)
        other.lock_dir = self.host.lock_dir
        evictions = []

        def evict_by_other_service():
            evictions.append(agent.request(
                other, ['image-evict', test_driver.PARENT],
                {'max_count': 1, 'max_bytes': 0, 'keep': 'image-i2'}))
        looks, racers = [], []
        real = self.host.executor.run

        def run(argv, input=None, timeout=None):
            done = real(argv, input=input, timeout=timeout)
            if argv[:2] == ['zfs', 'list'] and argv[-1].endswith(
                    '/image-i1') and not looks:
                looks.append(argv)
                racers.append(threading.Thread(
                    target=evict_by_other_service))
                racers[0].start()
                racers[0].join(1)    # blocked by the host lock, or done
            return done
        self.mock_object(self.host.executor, 'run', run)
        vol = self.volume(1)
        self.assertEqual(({}, True), self.clone_image(vol, 'i1'))
        self.assertEqual(self.path('image-i1', 'golden'),
                         self.ds(vol.name)['origin'])
        self.assertEqual(1, len(looks))
        self.assertEqual(2, len(self.fetches))
        racers[0].join(10)
        self.assertEqual([], evictions[0]['evicted'])


class GoldenPropertiesTestCase(ImageCacheTestCase):

    def test_entry_has_the_backend_properties_not_the_first_type(self):
        self.set_conf(zol_zvol_properties={'compression': 'lz4'})
        vol = self.typed_volume(1, **{'zfs:compression': 'gzip'})
        self.clone_image(vol)
        self.assertEqual('lz4', self.entry()['props'].get('compression'))
        self.assertEqual('gzip', self.ds(vol.name)['props'].get(
            'compression'))


class UploadTestCase(ImageCacheTestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(test_host_images.end_agent_processes)
        self.uploads = []
        self.glance.update = self.fake_update

    def fake_update(self, context, image_id, image_meta, data=None,
                    purge_props=True, store_id=None, base_image_ref=None):
        """Glance's upload, read as glanceclient reads it.

        Keeps the non-zero bytes and what image_conversion_dir held.
        """
        size, found = 0, {}
        local = os.listdir(self.dir)
        while True:
            chunk = data.read(65536)
            if not chunk:
                break
            if chunk.strip(b'\0'):
                found[size] = chunk.strip(b'\0')
            size += len(chunk)
        self.uploads.append({'id': image_id, 'size': size, 'data': found,
                             'local': local, 'store_id': store_id})

    def written_volume(self, attached=False):
        vol = self.typed_volume(1)
        vol.glance_metadata = {}
        self.driver.create_volume(vol)
        path = self.host.devices.path('/dev/zvol/tank/cinder/' + vol.name)
        with open(path, 'r+b') as f:
            f.seek(10 * MiB)
            f.write(b'payload')
        if attached:
            vol.volume_attachment = objects.VolumeAttachmentList(objects=[
                objects.VolumeAttachment(
                    context=self.ctxt,
                    id='11111111-2222-3333-4444-555555555555',
                    attach_status='attached')])
        return vol

    def upload(self, vol, disk_format='raw', container_format='bare'):
        self.driver.copy_volume_to_image(
            self.ctxt, vol, self.glance,
            {'id': 'new', 'disk_format': disk_format,
             'container_format': container_format})

    def test_raw_upload_streams_without_a_local_copy(self):
        vol = self.written_volume()
        self.upload(vol)
        self.assertEqual([{'id': 'new', 'size': GiB,
                           'data': {10 * MiB: b'payload'}, 'local': [],
                           'store_id': None}],
                         [dict(u, local=[f for f in u['local']
                                         if f.startswith('zol-')])
                          for u in self.uploads])
        self.assertEqual('read', self.runner.requests[-1][0])

    def test_stream_ended_early_fails_the_upload(self):
        # never a shorter image: the upload fails
        vol = self.written_volume()
        records = b''.join(images.records(self._file_with_data()))
        cut = io.BytesIO(records[:-16])       # no end record

        @contextlib.contextmanager
        def receive_stream(argv, timeout=None):
            yield cut
        self.mock_object(self.runner, 'receive_stream', receive_stream)
        self.assertRaises(cinder_exception.VolumeBackendAPIException,
                          self.upload, vol)
        self.assertEqual([], self.uploads)

    def _file_with_data(self):
        path = os.path.join(self.dir, 'data.raw')
        sparse_file(path, 4 * MiB, [(MiB, b'payload')])
        return path

    def test_converted_upload_without_local_space_says_so(self):
        vol = self.written_volume()
        self.mock_object(images.os, 'pwrite', side_effect=OSError(
            errno.ENOSPC, 'No space left on device'))
        e = self.assertRaises(cinder_exception.ImageTooBig, self.upload,
                              vol, 'qcow2')
        self.assertIn('image_conversion_dir', str(e))
        self.assertEqual([], [f for f in os.listdir(self.dir)
                              if f.startswith('zol-upload')])

    def test_lost_reply_of_the_upload_clone_blocks_and_leaks_nothing(self):
        vol = self.written_volume(attached=True)
        real = self.runner.request
        lost = []

        def lose_the_first_clone_reply(program, argv, payload, timeout=None):
            reply = real(program, argv, payload, timeout)
            if argv[0] in ('clone', 'image-upload') and not lost:
                lost.append(argv)
                raise exception.StorageHostConnectionLost(
                    host='fake-zol', port=22, cmd=argv[0], reason='reset')
            return reply
        self.mock_object(self.runner, 'request', lose_the_first_clone_reply)
        self.assertRaises(exception.StorageHostConnectionLost, self.upload,
                          vol)
        self.upload(vol)      # (the fake's clones do not carry data)
        self.assertEqual(GiB, self.uploads[-1]['size'])
        # cinder-volume restarts: its sessions end, the start-up sweep runs
        test_host_images.end_agent_processes()
        self.driver.check_for_setup_error()
        self.assertEqual([], [n for n in self.zfs.names() if 'upload-' in n])
        self.driver.delete_volume(vol)
        self.assert_only_parent_left()

    def upload_clones(self):
        return [n for n in self.zfs.names() if '/upload-' in n and
                '@' not in n]

    def test_stale_upload_clone_is_replaced_at_the_next_upload(self):
        vol = self.written_volume(attached=True)
        lost = exception.StorageHostConnectionLost(
            host='fake-zol', port=22, cmd='read', reason='reset')
        with mock.patch.object(self.runner, 'receive_stream',
                               side_effect=lost), \
                mock.patch.object(self.driver.storage, 'image_drop',
                                  side_effect=lost):
            self.assertRaises(exception.StorageHostConnectionLost,
                              self.upload, vol)
        self.assertEqual(1, len(self.upload_clones()))
        test_host_images.end_agent_processes()     # its session ended
        self.upload(vol)
        self.assertEqual([], self.upload_clones())
