"""Image transfers on the real storage host: uploads read through a real
ZFS clone, and the leases of imports under the real agent, sudo and flock.
"""

import os
import shutil
import tempfile
import time

from oslo_utils import units

from cinder import objects

from cinder_zol import images
from tests.functional import base

HASH = 'md5:' + 'a' * 32


class CapturingImageService(object):
    """Glance's update, read as glanceclient reads it."""

    def __init__(self):
        self.uploads = []

    def update(self, context, image_id, image_meta, data=None,
               purge_props=True, store_id=None, base_image_ref=None):
        size, found = 0, {}
        while True:
            chunk = data.read(65536)
            if not chunk:
                break
            if chunk.strip(b'\0'):
                found[size] = chunk.strip(b'\0')
            size += len(chunk)
        self.uploads.append({'size': size, 'data': found})


class ImagesTestCase(base.LabTestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def upload_clones(self):
        return [n for n in self.zfs_names() if '/upload-' in n]

    def test_attached_raw_upload_streams_from_a_clone(self):
        vol = self.volume(1)
        vol.glance_metadata = {}
        self.driver.create_volume(vol)
        self.addCleanup(self.driver.delete_volume, vol)
        self.guest('udevadm settle; printf payload | dd of=/dev/zvol/%s/%s '
                   'bs=1M seek=10 conv=notrunc status=none'
                   % (self.parent, vol.name))
        vol.volume_attachment = objects.VolumeAttachmentList(objects=[
            objects.VolumeAttachment(
                context=self.ctxt, id='11111111-2222-3333-4444-555555555555',
                attach_status='attached')])
        glance = CapturingImageService()
        self.driver.copy_volume_to_image(
            self.ctxt, vol, glance,
            {'id': 'new', 'disk_format': 'raw', 'container_format': 'bare'})
        self.assertEqual([{'size': units.Gi,
                           'data': {10 * units.Mi: b'payload'}}],
                         glance.uploads)
        self.assertEqual([], self.upload_clones())

    def begin(self, drv, name):
        return drv.storage.image_begin(name, units.Gi, {
            'props': {}, 'image_id': 'lab', 'hash': HASH})

    def test_import_in_flight_survives_another_services_start(self):
        importing = self.begin(self.driver, 'image-lab')
        self.make_driver()          # another service starts: its sweep
        self.assertIn('%s/%s' % (self.parent, importing), self.zfs_names())
        raw = os.path.join(self.dir, 'raw')
        with open(raw, 'wb') as f:
            f.truncate(4 * units.Mi)
            f.seek(units.Mi)
            f.write(b'image data')
        self.driver.storage.write(importing, images.records(raw))
        self.assertEqual('committed', self.driver.storage.image_commit(
            importing, 'image-lab'))
        self.addCleanup(self.driver.storage.image_purge)

    def test_import_of_a_service_that_died_is_swept(self):
        importing = self.begin(self.driver, 'image-lab')
        self.driver.runner.close()  # its connections end, so do its agents
        other = self.make_driver()
        deadline = time.monotonic() + 15
        while '%s/%s' % (self.parent, importing) in self.zfs_names():
            self.assertLess(time.monotonic(), deadline,
                            'the import of a closed service stays leased')
            time.sleep(0.5)
            other.storage.sweep()
