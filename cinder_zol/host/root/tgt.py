"""tgt (tgtd) exports, in the root helper: tgtadm at runtime, a config file
for boot.

Runtime changes go straight to tgtd with ``tgtadm`` (argv lists, no shell,
no tgt-admin: it runs config lines through a shell and takes about a second
per call). Each export is also written to
``/etc/tgt/conf.d/cinder-zol-<volume name>.conf`` (0600, atomically), which
Debian's tgt.service loads at boot with tgt-admin.

Access control: tgtd (measured on 1.0.85) admits an initiator when its
address matches an address ACL OR its name is in the name ACL, and
tgt-admin binds the address ``ALL`` to every target whose config has no
``initiator-address``. So each target carries one address no initiator can
connect from (``255.255.255.255``), a placeholder ``initiator-name`` (so the
name list is never empty) and the real initiators. After every change the
live ACL is read back: ``ALL`` or any other address is an error.

CHAP: one tgtd account per volume (tgtd accounts are global, so an account
shared by several targets could not change its password and its deletion
would unbind it from every target). The secret reaches tgtadm in argv,
which tgtadm offers no other way for; it is never logged, and it is masked
in every error message. tgtd cannot tell a secret: the config file is
where the first export's credentials are kept, and the live target is
made to hold exactly the account whose credentials an export returns. An
account bound to another target is never deleted.

Portals (multipath): tgtd's portals are global, every target answers on
each. An export makes tgtd listen on every port its portals use
(``0.0.0.0:<port>`` for a port no portal serves yet; tgtd listens on 3260
by default), and records those ports in its config file;
``cinder-zol-tgt-portals``, which tgt.service runs after tgtd starts
(setup-storage-host.sh), reopens them after a restart or a reboot. Several
addresses on one port (a multi-NIC host) need nothing: ``0.0.0.0`` serves
them all. A port no export needs any more stays open until tgtd restarts;
it serves nothing an ACL does not allow.

Resize: tgtd caches the LUN size; :meth:`Backend.resize` takes the target
offline (initiators get a retryable status), deletes and re-adds LUN 1
with the same backing store and identity, and brings it back online.
"""

import os
import re
import tempfile
import time

from .. import errors
from . import backend

CONF_DIR = '/etc/tgt/conf.d'
LUN = 1
PLACEHOLDER_INITIATOR = 'iqn.2010-10.org.openstack:cinder-zol.nobody'
PLACEHOLDER_ADDRESS = '255.255.255.255'
_NAME_PREFIXES = ('iqn.', 'eui.', 'naa.')

CONF_TEMPLATE = """\
# Managed by cinder-zol for %(name)s; do not edit.
%(ports)s<target %(iqn)s>
    driver iscsi
    backing-store %(device)s
    scsi_id %(serial)s
    scsi_sn %(serial)s
%(chap)s    initiator-address %(no_address)s
%(initiators)s</target>
"""
_CONF_INITIATOR = re.compile(r'^\s*initiator-name\s+(\S+)\s*$', re.M)
_CONF_TARGET = re.compile(r'^<target\s+(\S+)>\s*$', re.M)
_CONF_CHAP = re.compile(r'^\s*incominguser\s+(\S+)\s+(\S+)\s*$', re.M)
# the ports the export's portals use; cinder-zol-tgt-portals (run by
# tgt.service after tgtd starts, setup-storage-host.sh) reopens them
_CONF_PORT = re.compile(r'^# cinder-zol listens on port (\d+)$', re.M)
# tgtadm --op show --mode portal: "Portal: 0.0.0.0:3260,1", "[::]:3260,1"
_PORTAL = re.compile(r'^Portal: (\S+):(\d+),\d+\s*$', re.M)
# what tgtd listens on for a port none of its portals serves
LISTEN_ADDRESS = '0.0.0.0'
# a LUN with commands in flight cannot be deleted; tgtd finishes them soon
LUN_DELETE_ATTEMPTS = 100
LUN_DELETE_DELAY = 0.1


def is_initiator_name(acl_entry):
    return acl_entry.startswith(_NAME_PREFIXES)


def parse_show(text):
    """``tgtadm --op show --mode target`` -> {iqn: info}."""
    targets = {}
    current = section = lun = nexus = None
    for line in text.splitlines():
        match = re.match(r'^Target (\d+): (\S+)\s*$', line)
        if match:
            current = {'tid': int(match.group(1)), 'luns': {}, 'acls': [],
                       'accounts': [], 'sessions': False, 'state': None,
                       'connections': []}
            targets[match.group(2)] = current
            section = lun = None
            continue
        if current is None:
            continue
        item = line.strip()
        if item.endswith(' information:'):
            section = item[:-len(' information:')]
            continue
        if section == 'System' and item.startswith('State:'):
            current['state'] = item.split(':', 1)[1].strip()
        elif section == 'I_T nexus' and item.startswith('I_T nexus:'):
            current['sessions'] = True
            # for iSCSI the nexus id is the session id tgtadm --sid takes
            nexus = item.split(':', 1)[1].strip()
        elif section == 'I_T nexus' and item.startswith('Connection:'):
            current['connections'].append(
                (nexus, item.split(':', 1)[1].strip()))
        elif section == 'LUN':
            match = re.match(r'^LUN: (\d+)$', item)
            if match:
                lun = int(match.group(1))
                current['luns'][lun] = None
            elif item.startswith('Backing store path:') and lun is not None:
                current['luns'][lun] = item.split(':', 1)[1].strip()
        elif section == 'ACL' and item:
            current['acls'].append(item)
        elif section == 'Account' and item and \
                not item.endswith(' (outgoing)'):
            current['accounts'].append(item)
    return targets


def render_conf(name, iqn, device, serial, chap, initiators, ports=()):
    chap_line = '    incominguser %s %s\n' % tuple(chap) if chap else ''
    names = [PLACEHOLDER_INITIATOR] + [i for i in initiators
                                       if i != PLACEHOLDER_INITIATOR]
    return CONF_TEMPLATE % {
        'name': name, 'iqn': iqn, 'device': device, 'serial': serial,
        'chap': chap_line, 'no_address': PLACEHOLDER_ADDRESS,
        'ports': ''.join('# cinder-zol listens on port %d\n' % p
                         for p in sorted(set(ports))),
        'initiators': ''.join('    initiator-name %s\n' % i for i in names)}


def conf_ports(text):
    """The ports a config of ours records, sorted."""
    return sorted({int(p) for p in _CONF_PORT.findall(text or '')})


def parse_portals(text):
    """``tgtadm --op show --mode portal`` -> [(address, port)]."""
    return [(address, int(port)) for address, port in _PORTAL.findall(text)]


def parse_conf(text, iqn):
    """(chap or None, initiators) recorded in our config for this IQN."""
    if not text or _CONF_TARGET.findall(text) != [iqn]:
        return None, []
    chap = _CONF_CHAP.search(text)
    initiators = [n for n in _CONF_INITIATOR.findall(text)
                  if n != PLACEHOLDER_INITIATOR]
    return (list(chap.groups()) if chap else None), initiators


def _secrets(argv):
    """The CHAP secrets in a tgtadm argv (``--password S`` or ``=S``)."""
    found = []
    for i, arg in enumerate(argv):
        if arg == '--password' and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith('--password='):
            found.append(arg[len('--password='):])
    return [s for s in found if s]


def _masked(argv):
    """argv as text for messages, every CHAP secret replaced by ***."""
    out = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == '--password':
            out.append('***')
        elif arg.startswith('--password='):
            out.append('--password=***')
        else:
            out.append(arg)
    return ' '.join(out)


def _scrub(text, secrets):
    for secret in secrets:
        text = text.replace(secret, '***')
    return text


class Backend(backend.Backend):

    tool = 'tgtadm'
    restores_itself = True    # tgt.service loads conf.d at boot

    def __init__(self, executor, conf_dir=CONF_DIR):
        self.executor = executor
        self.conf_dir = conf_dir

    # -- plumbing --------------------------------------------------------

    def tgtadm(self, *args, ok=()):
        """Run tgtadm; a failure (unless its text is in ``ok``) raises."""
        argv = ['tgtadm', '--lld', 'iscsi'] + list(args)
        done = self.executor.run(argv)
        if done.returncode == 0:
            return done.stdout
        stderr = _scrub((done.stderr or done.stdout).strip(), _secrets(argv))
        if any(fragment in stderr for fragment in ok):
            return ''
        hint = ''
        if done.returncode == 127:
            hint = 'Install tgt on the storage host.'
        elif "can't connect" in stderr or 'tgt daemon' in stderr or \
                'Transport endpoint' in stderr:
            hint = 'Is tgtd running? systemctl start tgt'
        raise errors.TargetError('%s failed' % _masked(argv), stderr, hint)

    def targets(self):
        return parse_show(self.tgtadm('--mode', 'target', '--op', 'show'))

    def listen(self, ports):
        """Make tgtd listen on each port; True if a portal was added.

        tgtd's portals are global: every target answers on each of them.
        A port that some portal already serves (tgtd's default
        ``0.0.0.0:3260`` and ``[::]:3260``, or an operator's own address)
        is left alone; any other gets ``0.0.0.0:<port>``.
        """
        served = {port for _address, port in parse_portals(
            self.tgtadm('--mode', 'portal', '--op', 'show'))}
        added = False
        for port in ports:
            if port not in served:
                self.tgtadm('--mode', 'portal', '--op', 'new', '--params',
                            'portal=%s:%d' % (LISTEN_ADDRESS, port))
                added = True
        return added

    def conf_path(self, name):
        return os.path.join(self.conf_dir, 'cinder-zol-%s.conf' % name)

    def read_conf(self, name):
        try:
            with open(self.conf_path(name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_conf(self, name, text):
        """Replace the config file atomically (0600: it holds a secret)."""
        os.makedirs(self.conf_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.conf_dir, prefix='.cinder-zol-')
        try:
            with os.fdopen(fd, 'w') as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.conf_path(name))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def remove_conf(self, name):
        try:
            os.unlink(self.conf_path(name))
        except FileNotFoundError:
            pass

    def _new_tid(self, targets):
        return max([t['tid'] for t in targets.values()] + [0]) + 1

    def _check_acl(self, iqn, initiators):
        """Read the live ACL back: never open, never missing a name."""
        live = self.targets().get(iqn)
        if live is None:
            raise errors.TargetError('tgtd does not list %s after creating '
                                     'it' % iqn)
        open_to_all = [a for a in live['acls'] if not is_initiator_name(a)
                       and a != PLACEHOLDER_ADDRESS]
        if open_to_all:
            raise errors.TargetError(
                'the target %s admits initiators by address (%s), which '
                'tgtd lets in regardless of their name' % (
                    iqn, ', '.join(open_to_all)),
                hint='Remove initiator-address from its configuration.')
        missing = [i for i in [PLACEHOLDER_INITIATOR] + list(initiators)
                   if i not in live['acls']]
        if missing:
            raise errors.TargetError(
                'initiator ACL entries %s of %s are not active (ACL: %s)'
                % (', '.join(missing), iqn, ', '.join(live['acls'])))
        return live

    def _bind(self, tid, initiator):
        self.tgtadm('--mode', 'target', '--op', 'bind', '--tid', str(tid),
                    '--initiator-name', initiator, ok=('already exists',))

    def _set_state(self, tid, state):
        self.tgtadm('--mode', 'target', '--op', 'update', '--tid', str(tid),
                    '--name', 'state', '--value', state)

    def _add_lun(self, tid, device, serial):
        self.tgtadm('--mode', 'logicalunit', '--op', 'new', '--tid',
                    str(tid), '--lun', str(LUN), '--backing-store', device)
        self.tgtadm('--mode', 'logicalunit', '--op', 'update', '--tid',
                    str(tid), '--lun', str(LUN), '--params',
                    'scsi_id=%s,scsi_sn=%s' % (serial, serial))

    @staticmethod
    def _bound_elsewhere(targets, iqn, user):
        return sorted(other for other, info in targets.items()
                      if other != iqn and user in info['accounts'])

    def _new_account(self, targets, iqn, chap):
        """Create the volume's account with this secret (not bound yet).

        An account of that name bound to no other target is a leftover of
        this volume whose secret is unknown: it is replaced. One bound to
        another target is not ours to touch.
        """
        user, secret = chap
        others = self._bound_elsewhere(targets, iqn, user)
        if others:
            raise errors.TargetError(
                'the CHAP account %s of %s is bound to %s'
                % (user, iqn, ', '.join(others)),
                hint='Each volume needs its own CHAP user name.')
        new = ('--mode', 'account', '--op', 'new', '--user', user,
               '--password', secret)
        try:
            self.tgtadm(*new)
        except errors.TargetError as e:
            if 'already exists' not in e.stderr:
                raise
            self.tgtadm('--mode', 'account', '--op', 'delete', '--user',
                        user, ok=("can't find the account",))
            self.tgtadm(*new)

    def _delete_account(self, targets, iqn, user):
        """Delete a per-volume account.

        One that another target uses too is only unbound from ours:
        deleting an account unbinds it from every target.
        """
        live = targets.get(iqn)
        if self._bound_elsewhere(targets, iqn, user):
            if live is not None:
                self.tgtadm('--mode', 'account', '--op', 'unbind', '--tid',
                            str(live['tid']), '--user', user,
                            ok=("can't find the account",
                                "can't find the target"))
            return
        self.tgtadm('--mode', 'account', '--op', 'delete', '--user', user,
                    ok=("can't find the account",))

    def _write_conf(self, name, text):
        try:
            self.write_conf(name, text)
        except OSError as e:
            raise errors.TargetError('writing %s failed'
                                     % self.conf_path(name), e.strerror)

    # -- operations ------------------------------------------------------

    def storage(self, name, iqn):
        """What the live target serves (LUN 0 is tgt's controller).

        None when tgtd has no such target.
        """
        live = self.targets().get(iqn)
        if live is None:
            return None
        return [path for lun, path in sorted(live['luns'].items())
                if lun != 0]

    def export(self, name, iqn, device, chap, initiators, ports, serial):
        listening = self.listen(ports)
        targets = self.targets()
        live = targets.get(iqn)
        old_conf = self.read_conf(name)
        conf_chap, conf_initiators = parse_conf(old_conf, iqn)
        if chap and conf_chap:
            # the first export's credentials stay: every attachment of
            # this volume is given the same ones
            chap = conf_chap
        wanted = list(conf_initiators)
        for initiator in initiators:
            if initiator not in wanted and initiator != PLACEHOLDER_INITIATOR:
                wanted.append(initiator)
        text = render_conf(name, iqn, device, serial, chap, wanted, ports)
        if live is not None:
            return self._complete(targets, live, name, iqn, device, serial,
                                  chap, wanted, text, old_conf, listening)
        tid = self._new_tid(targets)
        created_target = created_account = False
        try:
            self.tgtadm('--mode', 'target', '--op', 'new', '--tid', str(tid),
                        '--targetname', iqn)
            created_target = True
            self._add_lun(tid, device, serial)
            if chap:
                self._new_account(targets, iqn, chap)
                created_account = True
                self.tgtadm('--mode', 'account', '--op', 'bind', '--tid',
                            str(tid), '--user', chap[0])
            self.tgtadm('--mode', 'target', '--op', 'bind', '--tid',
                        str(tid), '--initiator-address', PLACEHOLDER_ADDRESS)
            for initiator in [PLACEHOLDER_INITIATOR] + wanted:
                self._bind(tid, initiator)
            self._write_conf(name, text)
            self._check_acl(iqn, wanted)
        except BaseException:
            self._rollback(name, tid if created_target else None,
                           chap if created_account else None, old_conf)
            raise
        return self._result(tid, chap, wanted, changed=True)

    def _complete(self, targets, live, name, iqn, device, serial, chap,
                  wanted, text, old_conf, listening):
        """Bring a live target up to the export; never tears it down."""
        tid = live['tid']
        current = live['luns'].get(LUN)
        if current is not None and current != device:
            raise errors.TargetError(
                'LUN %d of %s is %s, not %s' % (LUN, iqn, current, device))
        changed = listening
        if current is None:
            # a resize that could not re-add the LUN left it out
            self._add_lun(tid, device, serial)
            changed = True
        user = chap[0] if chap else None
        if user and user not in live['accounts']:
            # tgtd cannot say what a secret is: the account it has is
            # replaced by the one returned
            self._new_account(targets, iqn, chap)
            self.tgtadm('--mode', 'account', '--op', 'bind', '--tid',
                        str(tid), '--user', user)
            changed = True
        for stale in live['accounts']:
            if stale != user:
                self._delete_account(targets, iqn, stale)
                changed = True
        if PLACEHOLDER_ADDRESS not in live['acls']:
            self.tgtadm('--mode', 'target', '--op', 'bind', '--tid',
                        str(tid), '--initiator-address', PLACEHOLDER_ADDRESS)
            changed = True
        for initiator in [PLACEHOLDER_INITIATOR] + wanted:
            if initiator not in live['acls']:
                self._bind(tid, initiator)
                changed = True
        if live['state'] != 'ready':
            # a resize was interrupted while the target was offline
            self._set_state(tid, 'ready')
            changed = True
        if old_conf != text:
            self._write_conf(name, text)
            changed = True
        self._check_acl(iqn, wanted)
        return self._result(tid, chap, wanted, changed=changed)

    @staticmethod
    def _result(tid, chap, initiators, changed):
        return {'tid': tid, 'lun': LUN, 'chap': list(chap) if chap else None,
                'initiators': list(initiators), 'changed': changed}

    def _rollback(self, name, tid, chap, old_conf):
        """Undo a half-made export; every step is tried.

        ``tid`` is None when the target was not created by us (its
        creation failed, e.g. because that tid was taken meanwhile).
        """
        for step in (
                lambda: tid is not None and self.tgtadm(
                    '--mode', 'target', '--op', 'delete', '--force',
                    '--tid', str(tid), ok=("can't find the target",)),
                lambda: chap and self.tgtadm(
                    '--mode', 'account', '--op', 'delete', '--user', chap[0],
                    ok=("can't find the account",)),
                lambda: (self.write_conf(name, old_conf)
                         if old_conf is not None
                         else self.remove_conf(name))):
            try:
                step()
            except (errors.HostError, OSError):
                pass

    def remove(self, name, iqn):
        targets = self.targets()
        live = targets.get(iqn)
        conf_chap, _initiators = parse_conf(self.read_conf(name), iqn)
        users = set(live['accounts'] if live else [])
        if conf_chap:
            users.add(conf_chap[0])
        if live is not None:
            self.tgtadm('--mode', 'target', '--op', 'delete', '--force',
                        '--tid', str(live['tid']),
                        ok=("can't find the target",))
        for user in sorted(users):
            # per-volume accounts; one another target uses stays (the
            # target's deletion unbound it from ours)
            if not self._bound_elsewhere(targets, iqn, user):
                self.tgtadm('--mode', 'account', '--op', 'delete', '--user',
                            user, ok=("can't find the account",))
        self.remove_conf(name)
        return {'removed': live is not None}

    def allow(self, name, iqn, initiator, chap):
        text = self.read_conf(name)
        conf_chap, initiators = parse_conf(text, iqn)
        live = self.targets().get(iqn)
        if live is None:
            if text is None:
                raise errors.NotFound('target %s does not exist: the volume '
                                      'is not exported' % iqn)
            raise errors.NotFound('tgtd lost target %s (restarted?); '
                                  'ensure_export recreates it' % iqn)
        self._bind(live['tid'], initiator)
        if initiator not in initiators:
            initiators = initiators + [initiator]
            # only a config of ours for this target is updated: without
            # it the serial and the CHAP secret are unknown here
            if _records(text, iqn):
                device = _conf_device(text) or live['luns'].get(LUN)
                self._write_conf(name, render_conf(
                    name, iqn, device, _conf_serial(text), conf_chap,
                    initiators, conf_ports(text)))
        self._check_acl(iqn, [initiator])
        return {'initiators': initiators}

    def deny(self, name, iqn, initiators):
        text = self.read_conf(name)
        conf_chap, recorded = parse_conf(text, iqn)
        live = self.targets().get(iqn)
        if initiators is None:
            initiators = sorted(set(recorded) | set(
                a for a in (live['acls'] if live else [])
                if is_initiator_name(a) and a != PLACEHOLDER_INITIATOR))
        for initiator in initiators:
            if initiator == PLACEHOLDER_INITIATOR:
                continue
            if live is not None:
                self.tgtadm('--mode', 'target', '--op', 'unbind', '--tid',
                            str(live['tid']), '--initiator-name', initiator,
                            ok=('does not exist', "can't find"))
        left = [i for i in recorded if i not in initiators]
        if _records(text, iqn) and left != recorded:
            device = _conf_device(text) or (
                live['luns'].get(LUN) if live else None)
            self._write_conf(name, render_conf(
                name, iqn, device, _conf_serial(text), conf_chap, left,
                conf_ports(text)))
        return {'initiators': left}

    def resize(self, name, iqn, device, serial):
        """Make tgtd see the zvol's new size.

        tgtd reads the size once, when the LUN is added, and never tells an
        initiator: the LUN must be re-added. A command that reaches the
        target while LUN 0 is gone fails with ILLEGAL REQUEST, which Linux
        does not retry (EIO in the guest). So, with initiators logged in:
        the target goes offline (new logins are refused as a target error,
        which open-iscsi retries), their connections are closed (the
        commands in flight are requeued by the initiator's session
        recovery, up to its replacement_timeout, 120 s by default), the LUN
        is re-added and the target comes back. Measured with I/O running:
        tests/functional/test_export.py ExtendUnderIOTestCase.
        """
        live = self.targets().get(iqn)
        if live is None:
            return {'changed': False}
        current = live['luns'].get(LUN)
        if current is not None and current != device:
            raise errors.TargetError(
                'LUN %d of %s is %s, not %s' % (LUN, iqn, current, device))
        tid = str(live['tid'])
        self._set_state(tid, 'offline')
        try:
            for sid, cid in live['connections']:
                self.tgtadm('--mode', 'conn', '--op', 'delete', '--tid', tid,
                            '--sid', sid, '--cid', cid,
                            ok=("can't find the session",
                                "can't find the connection"))
            self._readd_lun(tid, device, serial)
        except BaseException:
            # back online whatever happened; the first error is the story
            try:
                self._set_state(tid, 'ready')
            except errors.HostError:
                pass
            raise
        self._set_state(tid, 'ready')
        return {'changed': True,
                'connections_closed': len(live['connections'])}

    def _readd_lun(self, tid, device, serial):
        for attempt in range(LUN_DELETE_ATTEMPTS):
            try:
                # a LUN an earlier resize left out is simply added
                self.tgtadm('--mode', 'logicalunit', '--op', 'delete',
                            '--tid', tid, '--lun', str(LUN),
                            ok=("can't find the logical unit",))
                break
            except errors.TargetError as e:
                if 'still active' not in e.stderr:
                    raise
                if attempt + 1 == LUN_DELETE_ATTEMPTS:
                    raise errors.TargetError(
                        'LUN %d of target %s stayed active for %s s'
                        % (LUN, tid,
                           LUN_DELETE_ATTEMPTS * LUN_DELETE_DELAY),
                        e.stderr, 'Retry the resize.')
                time.sleep(LUN_DELETE_DELAY)
        self._add_lun(tid, device, serial)

    def show(self, name, iqn):
        live = self.targets().get(iqn)
        conf_chap, initiators = parse_conf(self.read_conf(name), iqn)
        return {'exists': live is not None and LUN in live['luns'],
                'device': live['luns'].get(LUN) if live else None,
                'initiators': [a for a in (live['acls'] if live else [])
                               if is_initiator_name(a) and
                               a != PLACEHOLDER_INITIATOR],
                'recorded_initiators': initiators,
                'chap_user': conf_chap[0] if conf_chap else None}

    def version(self):
        self.targets()
        return {'helper': self.tool}


def _records(text, iqn):
    """Whether a config text is ours for exactly this target."""
    return bool(text) and _CONF_TARGET.findall(text) == [iqn]


def _conf_serial(text):
    match = re.search(r'^\s*scsi_sn\s+(\S+)\s*$', text or '', re.M)
    return match.group(1) if match else ''


def _conf_device(text):
    match = re.search(r'^\s*backing-store\s+(\S+)\s*$', text or '', re.M)
    return match.group(1) if match else ''
