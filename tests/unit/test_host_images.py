"""The golden-image cache on the storage host: leases of imports and upload
clones against the start-up sweep of another service, and eviction."""

import json
import os

import testtools

from cinder_zol.host import agent
from cinder_zol.host import errors
from cinder_zol.host import images
from tests.unit import fake_zfs
from tests.unit import host_fixture

PARENT = host_fixture.PARENT
GiB = 2 ** 30


def end_agent_processes():
    """A cinder-volume's connections end: so do its agents and leases."""
    for held in list(images._HELD.values()):
        held.close()
    images._HELD.clear()


class LeaseTestCase(testtools.TestCase):
    """Two cinder-volume services on one parent (one lock directory)."""

    def setUp(self):
        super().setUp()
        self.addCleanup(end_agent_processes)
        self.zfs = fake_zfs.FakeZfsHost(PARENT)
        self.service_a = host_fixture.make_host(self.zfs)
        self.service_b = host_fixture.make_host(self.zfs)
        self.service_b.lock_dir = self.service_a.lock_dir

    def call(self, host, *argv, **payload):
        return agent.request(host, list(argv), json.loads(json.dumps(payload)))

    def names(self):
        return [n[len(PARENT) + 1:] for n in self.zfs.names()
                if n.startswith(PARENT + '/')]

    def begin(self):
        return self.call(self.service_a, 'image-begin', PARENT, 'image-x',
                         str(GiB), props={}, image_id='x',
                         hash='md5:' + 'a' * 32)['importing']

    def test_sweep_of_another_service_keeps_an_import_in_flight(self):
        importing = self.begin()
        self.assertEqual(0, self.call(self.service_b, 'sweep',
                                      PARENT)['actions'])
        self.assertIn(importing, self.names())
        self.assertEqual('committed', self.call(
            self.service_a, 'image-commit', PARENT, importing,
            'image-x')['result'])
        self.assertEqual(['image-x', 'image-x@golden'], self.names())

    def test_import_of_a_service_that_is_gone_is_swept(self):
        importing = self.begin()
        end_agent_processes()
        self.assertEqual(1, self.call(self.service_b, 'sweep',
                                      PARENT)['actions'])
        self.assertEqual([], self.names())
        self.assertEqual([], [f for f in self._lock_files()
                              if importing in f])

    def test_import_from_before_leases_is_swept(self):
        # made by an agent of an older release, which took no lease
        self.call(self.service_a, 'create', PARENT, 'importing-image-x-01',
                  str(GiB), sparse=True)
        self.assertEqual(1, self.call(self.service_b, 'sweep',
                                      PARENT)['actions'])
        self.assertEqual([], self.names())

    def test_upload_clone_in_flight_is_kept_then_swept(self):
        self.call(self.service_a, 'create', PARENT, 'volume-a', str(GiB),
                  sparse=True)
        temporary = self.call(self.service_a, 'image-upload', PARENT,
                              'volume-a')['temporary']
        self.call(self.service_b, 'sweep', PARENT)
        self.assertIn(temporary, self.names())
        end_agent_processes()
        self.call(self.service_b, 'sweep', PARENT)
        self.assertEqual(['volume-a'], self.names())

    def test_drop_ends_the_lease(self):
        importing = self.begin()
        self.assertEqual('destroyed', self.call(
            self.service_b, 'image-drop', PARENT, importing)['result'])
        self.assertEqual([], self.names())
        self.assertEqual([], list(images._HELD))

    def test_drop_refuses_other_datasets(self):
        self.call(self.service_a, 'create', PARENT, 'volume-a', str(GiB),
                  sparse=True)
        self.assertRaises(errors.Refused, agent.request, self.service_a,
                          ['image-drop', PARENT, 'volume-a'], {})
        self.assertIn('volume-a', self.names())

    def _lock_files(self):
        return os.listdir(self.service_a.lock_dir)
