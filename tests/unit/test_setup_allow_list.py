"""The ``zfs allow`` of setup-storage-host.sh is what the agent needs, exactly.

In least privilege zfs runs as the driver's account, with the permissions
the setup script grants it on the parent dataset. The properties the agent
may set come from cinder_zol.host.props; a permission the script lacks
breaks an operation only on a real host, one nothing uses widens what a
stolen key can do. So the script's lists are checked against props here,
both ways. (``--properties`` lets an operator grant more, on purpose.)
"""

import os
import re

import testtools

from cinder_zol.host import props

SCRIPT = os.path.join(os.path.dirname(props.__file__),
                      'setup-storage-host.sh')

# zfs subcommands the agent runs below the parent that need a permission
# of that name (zfs-allow(8)): not list, get or version (none needed), nor
# set and inherit (each property's own). They are code, not data: where
# each is used, in cinder_zol/host:
VERBS_BELOW = {
    # zfs.py ZFS.snapshot_set: snapshots, group snapshots, image cache
    'snapshot',
    # ZFS.clone: volumes from snapshots and images, clones, swap-revert
    'clone',
    # ZFS.promote: swap-revert, deletes of a source with clones
    'promote',
    # ZFS.rename, rename_snapshot: hiding deleted sources, manage, revert
    'rename',
    # ZFS.rollback: revert
    'rollback',
    # ZFS.destroy, destroy_snapshots
    'destroy',
    # zfs-allow(8): snapshot, clone, promote, rename, rollback and
    # destroy need it too
    'mount',
}
# On the parent itself: ZFS.create_volume makes its zvols there (and
# needs mount with it); nothing else.
VERBS_PARENT = {'create', 'mount'}
# `zfs allow`'s one permission for every user property (name with ':')
USERPROP = 'userprop'


def permission(prop):
    return USERPROP if ':' in prop else prop


def script_lists():
    """{variable: [its comma-separated words]} and the zfs allow lines."""
    with open(SCRIPT) as f:
        text = f.read()
    lists = {name: value.split(',') for name, value in re.findall(
        r'^(LOCAL_PERMS|DESCENDANT_PERMS|PROPS)=(\S+)$', text, re.M)}
    allows = [line.strip() for line in text.splitlines()
              if re.match(r'\s*zfs allow ', line)]
    return lists, allows


class SetupAllowListTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.lists, self.allows = script_lists()

    def words(self, name):
        found = self.lists[name]
        self.assertEqual(len(found), len(set(found)), '%s repeats' % name)
        return set(found)

    def test_granted_with_these_lists_only(self):
        self.assertEqual(
            ['zfs allow -l -u "$USER_NAME" "$LOCAL_PERMS" "$PARENT"',
             'zfs allow -d -u "$USER_NAME" "$DESCENDANT_PERMS,$PROPS" '
             '"$PARENT"'], self.allows)

    def test_the_parent_itself(self):
        self.assertEqual(VERBS_PARENT, self.words('LOCAL_PERMS'))

    def test_props_are_those_requested_and_fixed(self):
        self.assertEqual(props.REQUESTABLE | set(props.FIXED),
                         self.words('PROPS'))

    def test_below_the_parent(self):
        """Every property the agent sets or clears, and its verbs."""
        granted = self.words('DESCENDANT_PERMS') | self.words('PROPS')
        self.assertEqual(
            len(granted),
            len(self.words('DESCENDANT_PERMS')) + len(self.words('PROPS')),
            'DESCENDANT_PERMS and PROPS overlap')
        needed = VERBS_BELOW | {permission(p) for p in
                                props.SETTABLE | props.INHERITABLE}
        self.assertEqual(sorted(needed), sorted(granted))
