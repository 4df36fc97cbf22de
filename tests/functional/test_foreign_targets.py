"""Targets that are not cinder-zol's, next to cinder-zol's, on the real host.

Root on the storage host makes what another tool or another Cinder backend
would leave there: a zvol outside the parent dataset exported by the active
iSCSI target (tgt from a config file, LIO with targetcli, with its own CHAP
account) and as an nvmet subsystem, plus a target named exactly as the
driver would name one of its volumes, serving that foreign zvol. Every
target operation sent with the driver's key (the driver's own runner and
account) is refused, and each foreign target stays byte for byte as it was,
also after tgtd restarts.
"""

import re
import shlex
import uuid

from cinder_zol import exception
from tests.functional import base

q = shlex.quote
FOREIGN_IQN = 'iqn.2003-01.org.example.backup:payroll'
FOREIGN_NQN = 'nqn.2014-08.org.example:payroll'
VICTIM = 'iqn.1993-08.org.debian:01:victim'
VICTIM_NQN = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-5555'
ATTACKER = 'iqn.2024-01.com.evil:attacker'
ATTACKER_NQN = 'nqn.2024-01.com.evil:host'
NVMET = '/sys/kernel/config/nvmet'
OPERATIONS = ('export', 'allow', 'deny', 'resize', 'show', 'remove')


class ForeignTargetsTestCase(base.LabTestCase):

    def setUp(self):
        super().setUp()
        self.helper = 'lioadm' if self.shell.lio else 'tgtadm'
        # two zvols outside the parent (LIO opens a device exclusively)
        self.devices = [self.foreign_zvol() for _i in range(2)]
        self.ours = self.volume(1)
        self.driver.create_volume(self.ours)
        self.addCleanup(self.driver.delete_volume, self.ours)
        # named as the driver names this volume's target, serving another
        self.lookalike = 'iqn.2010-10.org.openstack:' + self.ours.name
        self.lookalike_nqn = 'nqn.2010-10.org.openstack:' + self.ours.name

    # -- what root makes, and how it looks --------------------------------

    def foreign_zvol(self):
        zvol = '%s/foreign-%s' % (self.lab['pool'], uuid.uuid4().hex[:8])
        self.guest('zfs create -V 64M %s && udevadm settle' % q(zvol))
        self.addCleanup(self.guest, 'udevadm settle; zfs destroy %s'
                        % q(zvol), check=False)
        return '/dev/zvol/' + zvol

    def make_tgt(self, iqn, device):
        conf = '/etc/tgt/conf.d/foreign-%s.conf' % iqn.rsplit(':', 1)[1]
        self.guest(
            "printf '<target %s>\\n    backing-store %s\\n"
            "    initiator-name %s\\n    incominguser victimUser "
            "victimSecret123456\\n</target>\\n' >%s && "
            "tgt-admin --update %s" % (iqn, device, VICTIM, q(conf),
                                       q(iqn)))
        self.addCleanup(self.guest, 'tgt-admin --delete %s --force; rm -f %s'
                        % (q(iqn), q(conf)), check=False)

    def make_lio(self, iqn, backstore, device):
        base_path = '/iscsi/%s/tpg1' % iqn
        self.guest('; '.join([
            'set -e',
            'targetcli /backstores/block create %s %s' % (backstore, device),
            'targetcli /iscsi create %s' % iqn,
            'targetcli %s/luns create /backstores/block/%s'
            % (base_path, backstore),
            'targetcli %s/acls create %s' % (base_path, VICTIM),
            'targetcli %s/acls/%s set auth userid=victimUser '
            'password=victimSecret123456' % (base_path, VICTIM),
            'targetcli saveconfig >/dev/null']))
        self.addCleanup(self.guest, 'targetcli /iscsi delete %s; '
                        'targetcli /backstores/block delete %s; '
                        'targetcli saveconfig >/dev/null' % (iqn, backstore),
                        check=False)

    def make_nvmet(self, nqn, device):
        s = '%s/subsystems/%s' % (NVMET, nqn)
        self.guest('; '.join([
            'set -e', 'modprobe -a nvmet nvmet-tcp',
            'mkdir %s' % s, 'echo 0 >%s/attr_allow_any_host' % s,
            'mkdir %s/namespaces/1' % s,
            'echo -n %s >%s/namespaces/1/device_path' % (device, s),
            'echo 1 >%s/namespaces/1/enable' % s,
            'mkdir -p %s/hosts/%s' % (NVMET, VICTIM_NQN),
            'ln -s %s/hosts/%s %s/allowed_hosts/' % (NVMET, VICTIM_NQN, s)]))
        self.addCleanup(self.guest, '; '.join([
            'rm -f %s/allowed_hosts/%s' % (s, VICTIM_NQN),
            'rmdir %s/hosts/%s' % (NVMET, VICTIM_NQN),
            'echo 0 >%s/namespaces/1/enable' % s,
            'rmdir %s/namespaces/1 %s' % (s, s)]), check=False)

    def tgt_state(self, iqn):
        """tgtd's view of one target, sessions left out.

        Blocks without their trailing newline: only the last target listed
        has none, and a restart may list the targets in another order.
        """
        out = self.guest('tgtadm --lld iscsi --mode target --op show')
        blocks = ('\n' + out).split('\nTarget ')
        return [b.rstrip('\n') for b in blocks if b.split('\n', 1)[0].endswith(
            ': ' + iqn)] + [self.guest('tgtadm --lld iscsi --mode account '
                                       '--op show')]

    def lio_state(self, iqn):
        path = '/sys/kernel/config/target/iscsi/%s' % iqn
        return self.guest(
            'cd %s && find . | sort && grep -rs . tpgt_1/acls tpgt_1/enable '
            'tpgt_1/attrib/authentication tpgt_1/attrib/generate_node_acls; '
            'for l in tpgt_1/lun/*/*; do [ -L "$l" ] && readlink "$l"; '
            'done; true' % q(path))

    def nvmet_state(self, nqn):
        s = '%s/subsystems/%s' % (NVMET, nqn)
        return self.guest('cd %s && find . | sort && cat attr_allow_any_host '
                          'namespaces/1/device_path namespaces/1/enable; '
                          'ls %s/ports/*/subsystems 2>/dev/null; true'
                          % (q(s), NVMET))

    # -- the driver's key aimed at them -----------------------------------

    def payload(self, op, iqn, initiator, port):
        chap = None if iqn.startswith('nqn.') else [
            'evilUser0000', 'evilSecret0000']
        return {
            'export': {'iqn': iqn, 'chap': chap, 'initiators': [initiator],
                       'port': port, 'serial': self.ours.id, 'wait': 5},
            'allow': {'iqn': iqn, 'initiator': initiator, 'chap': chap},
            'deny': {'iqn': iqn, 'initiators': None},
            'resize': {'iqn': iqn, 'serial': self.ours.id},
            'show': {'iqn': iqn},
            'remove': {'iqn': iqn},
        }[op]

    def assert_refused_everywhere(self, helper, iqn, initiator, port,
                                  state, name=None):
        """Each operation fails as refused, and changes nothing.

        For a name that is no zvol of the parent, not found will do.
        """
        before = state()
        kinds = (exception.HostRefused, exception.NotOwned)
        if name:
            kinds += (exception.ZfsNotFound,)
        for op in OPERATIONS:
            e = self.assertRaises(
                exception.HostOperationFailed,
                self.driver.storage.target, op, name or self.ours.name,
                helper, self.payload(op, iqn, initiator, port))
            self.assertIsInstance(e, kinds, '%s %s: %s' % (op, iqn, e))
            self.assertNotIn('victimSecret', str(e))
            self.assertEqual(before, state(), '%s changed %s' % (op, iqn))

    def test_iscsi_targets_of_others_are_refused(self):
        port = int(self.lab['iscsi_port'])
        if self.helper == 'lioadm':
            self.make_lio(FOREIGN_IQN, 'payroll', self.devices[0])
            self.make_lio(self.lookalike, self.ours.name + '-x',
                          self.devices[1])
            state = self.lio_state
        else:
            self.make_tgt(FOREIGN_IQN, self.devices[0])
            self.make_tgt(self.lookalike, self.devices[1])
            state = self.tgt_state
        for iqn in (FOREIGN_IQN, self.lookalike):
            self.assert_refused_everywhere(self.helper, iqn, ATTACKER, port,
                                           lambda: state(iqn))
        if self.helper == 'lioadm':
            # remove naming the foreign backstore: not ours either
            self.assert_refused_everywhere(
                self.helper, 'iqn.2010-10.org.openstack:payroll', ATTACKER,
                port, lambda: self.lio_state(FOREIGN_IQN), name='payroll')
        # the driver's own attach of that volume fails loudly, as it must:
        # its target name is taken by somebody else's target
        self.assertRaises(exception.HostRefused, self.driver.create_export,
                          self.ctxt, self.ours,
                          {'initiator': ATTACKER, 'host': 'evil'})
        if self.helper == 'tgtadm':
            self.assert_back_after_tgt_restart(FOREIGN_IQN, self.lookalike)

    def assert_back_after_tgt_restart(self, *iqns):
        """A tgtd restart brings every target back, foreign ones and ours.

        tgt-admin reads every conf.d file, so one bad line of ours would
        keep all of them down.
        """
        mine = self.volume(1)
        self.driver.create_volume(mine)
        self.addCleanup(self.driver.delete_volume, mine)
        update = self.driver.create_export(
            self.ctxt, mine, {'initiator': VICTIM, 'host': 'compute'})
        for key, value in (update or {}).items():
            setattr(mine, key, value)
        self.addCleanup(self.driver.remove_export, self.ctxt, mine)
        before = [self.restarted_view(i) for i in iqns]
        self.guest('systemctl restart tgt')
        listed = self.shell.targets()
        for iqn in iqns + ('iqn.2010-10.org.openstack:' + mine.name,):
            self.assertIn(iqn, listed)
        self.assertEqual(before, [self.restarted_view(i) for i in iqns])

    def restarted_view(self, iqn):
        """tgt_state without what tgt-admin renumbers at every start.

        tids follow the order tgt-admin loads targets in, and the default
        SCSI ID and serial of a LUN are made from the tid.
        """
        return [re.sub(r'^[0-9]+: |^ *SCSI (ID|SN): .*$', '', block,
                       flags=re.M)
                for block in self.tgt_state(iqn)]

    def test_nvmet_subsystems_of_others_are_refused(self):
        if not self.shell.nvme_port:
            self.fail('the lab guest forwards no NVMe/TCP port')
        driver = self.make_driver(zol_target_helper='nvmet',
                                  target_protocol='nvmet_tcp',
                                  target_port=self.shell.nvme_port)
        self.driver = driver
        port = int(self.shell.nvme_port)
        self.make_nvmet(FOREIGN_NQN, self.devices[0])
        self.make_nvmet(self.lookalike_nqn, self.devices[1])
        for nqn in (FOREIGN_NQN, self.lookalike_nqn):
            self.assert_refused_everywhere('nvmet', nqn, ATTACKER_NQN, port,
                                           lambda: self.nvmet_state(nqn))
