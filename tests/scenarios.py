"""Dependency scenarios, one table for the unit and the real-host tier.

Each scenario is a list of steps on named volumes and snapshots, ending with
every Cinder object deleted; the storage host must then hold nothing but the
parent dataset. The same table drives the fake ZFS host (tests/unit) and the
lab guest (tests/functional), so the fake cannot drift from real zfs.

Steps:
    ('create', V, size_gib)            create_volume
    ('snap', S, V)                     create_snapshot of V
    ('from_snap', V, S, size_gib)      create_volume_from_snapshot
    ('clone', V, SRC, size_gib)        create_cloned_volume
    ('extend', V, size_gib)            extend_volume
    ('revert', V, S)                   revert_to_snapshot
    ('del', V) / ('del_snap', S)       delete_volume / delete_snapshot
    ('alive', V)                       V's zvol still exists and is usable
"""

import uuid

from oslo_utils import units

from cinder import context
from cinder.tests.unit import fake_snapshot
from cinder.tests.unit import fake_volume

SCENARIOS = {
    # cinder-tempest-plugin test_volume_dependency: test_delete_source_volume
    'delete_source_volume_with_clone': [
        ('create', 'a', 1), ('clone', 'b', 'a', 1), ('del', 'a'),
        ('alive', 'b'), ('del', 'b')],
    # ... test_delete_source_snapshot
    'delete_source_snapshot_with_volume': [
        ('create', 'a', 1), ('snap', 's', 'a'), ('from_snap', 'b', 's', 1),
        ('del_snap', 's'), ('alive', 'b'), ('del', 'a'), ('alive', 'b'),
        ('del', 'b')],
    'delete_clone_first': [
        ('create', 'a', 1), ('snap', 's', 'a'), ('from_snap', 'b', 's', 2),
        ('del', 'b'), ('del_snap', 's'), ('del', 'a')],
    'chain_snapshot_volume_snapshot_volume': [
        ('create', 'a', 1), ('snap', 's1', 'a'), ('from_snap', 'b', 's1', 1),
        ('snap', 's2', 'b'), ('from_snap', 'c', 's2', 2),
        ('del_snap', 's1'), ('del', 'a'), ('del_snap', 's2'), ('del', 'b'),
        ('alive', 'c'), ('del', 'c')],
    'chain_deleted_from_the_leaf': [
        ('create', 'a', 1), ('snap', 's1', 'a'), ('from_snap', 'b', 's1', 1),
        ('snap', 's2', 'b'), ('from_snap', 'c', 's2', 1),
        ('del', 'c'), ('del_snap', 's2'), ('del', 'b'), ('del_snap', 's1'),
        ('del', 'a')],
    'clone_of_clone_sources_deleted': [
        ('create', 'a', 1), ('clone', 'b', 'a', 1), ('clone', 'c', 'b', 2),
        ('del', 'a'), ('del', 'b'), ('alive', 'c'), ('del', 'c')],
    'middle_of_chain_deleted_last': [
        ('create', 'a', 1), ('clone', 'b', 'a', 1), ('clone', 'c', 'b', 1),
        ('del', 'a'), ('del', 'c'), ('alive', 'b'), ('del', 'b')],
    'golden_image_many_clones': [
        ('create', 'g', 1), ('clone', 'v1', 'g', 1), ('clone', 'v2', 'g', 1),
        ('clone', 'v3', 'g', 3), ('del', 'g'), ('del', 'v2'),
        ('alive', 'v1'), ('alive', 'v3'), ('del', 'v1'), ('del', 'v3')],
    'snapshots_and_clones_mixed': [
        ('create', 'a', 1), ('snap', 's1', 'a'), ('clone', 'b', 'a', 1),
        ('snap', 's2', 'a'), ('from_snap', 'c', 's2', 1), ('del_snap', 's1'),
        ('del_snap', 's2'), ('del', 'a'), ('del', 'c'), ('alive', 'b'),
        ('del', 'b')],
    'revert_with_clone_of_newer_data': [
        ('create', 'a', 1), ('snap', 's', 'a'), ('clone', 'b', 'a', 1),
        ('revert', 'a', 's'), ('alive', 'a'), ('alive', 'b'),
        ('del_snap', 's'), ('del', 'a'), ('alive', 'b'), ('del', 'b')],
    'revert_after_extend': [
        ('create', 'a', 1), ('snap', 's', 'a'), ('extend', 'a', 2),
        ('revert', 'a', 's'), ('alive', 'a'), ('del_snap', 's'),
        ('del', 'a')],
    'snapshot_of_clone_then_delete_source': [
        ('create', 'a', 1), ('clone', 'b', 'a', 1), ('snap', 's', 'b'),
        ('del', 'a'), ('from_snap', 'c', 's', 1), ('del_snap', 's'),
        ('del', 'b'), ('alive', 'c'), ('del', 'c')],
}


def make_volume(ctxt, size=1, **kwargs):
    """A Cinder volume object as the volume manager hands it over."""
    kwargs.setdefault('volume_type_id', None)
    kwargs.setdefault('provider_location', None)
    return fake_volume.fake_volume_obj(ctxt, id=str(uuid.uuid4()),
                                       size=size, **kwargs)


def make_snapshot(ctxt, vol):
    snap = fake_snapshot.fake_snapshot_obj(
        ctxt, id=str(uuid.uuid4()), volume_id=vol.id, volume_size=vol.size)
    snap.volume = vol
    return snap


class ScenarioRunner(object):
    """Plays a scenario on a driver; ``alive`` is checked by a callback."""

    def __init__(self, driver, check_alive):
        self.driver = driver
        self.check_alive = check_alive
        self.ctxt = context.get_admin_context()
        self.volumes, self.snapshots = {}, {}

    def _volume(self, label, size):
        vol = make_volume(self.ctxt, size, display_name=label)
        self.volumes[label] = vol
        return vol

    def play(self, steps):
        d = self.driver
        for step in steps:
            op, label, args = step[0], step[1], step[2:]
            if op == 'create':
                d.create_volume(self._volume(label, args[0]))
            elif op == 'snap':
                snap = make_snapshot(self.ctxt, self.volumes[args[0]])
                self.snapshots[label] = snap
                d.create_snapshot(snap)
            elif op == 'from_snap':
                d.create_volume_from_snapshot(
                    self._volume(label, args[1]), self.snapshots[args[0]])
            elif op == 'clone':
                d.create_cloned_volume(self._volume(label, args[1]),
                                       self.volumes[args[0]])
            elif op == 'extend':
                d.extend_volume(self.volumes[label], args[0])
                self.volumes[label].size = args[0]
            elif op == 'revert':
                d.revert_to_snapshot(self.ctxt, self.volumes[label],
                                     self.snapshots[args[0]])
            elif op == 'del':
                d.delete_volume(self.volumes.pop(label))
            elif op == 'del_snap':
                d.delete_snapshot(self.snapshots.pop(label))
            elif op == 'alive':
                vol = self.volumes[label]
                self.check_alive(vol.name, vol.size * units.Gi)
            else:
                raise ValueError('unknown step %r' % (step,))
        assert not self.volumes and not self.snapshots, \
            'a scenario must delete everything it created'
