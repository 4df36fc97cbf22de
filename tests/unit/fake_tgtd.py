"""An in-memory tgtd that answers ``tgtadm --lld iscsi ...`` like tgt 1.0.85.

State and rules follow tgt's own code (usr/tgtadm.c, usr/mgmt.c,
usr/target.c of 1.0.85, the Debian 12 package): tgtadm checks its options
before it talks to tgtd (the same messages, exit status 22), tgtd answers
with the same error texts (``tgtadm: <text>``, exit status 22), and
``--op show --mode target`` prints byte for byte what tgtadm prints: LUN 0
(the controller) with every target, sizes in tgt's own "MB", address ACL
entries before name entries, accounts in binding order, sessions as
``I_T nexus`` blocks.

What a test controls:

* ``down``: every call fails like tgtadm without a tgtd (exit 107);
* ``fail_next(substring, stderr)``: the next call whose argv (joined with
  spaces) contains the substring fails with that stderr and changes
  nothing;
* ``add_session(tid, initiator)``: a logged-in initiator (an I_T nexus);
* ``set_busy(tid, lun, times)``: the LUN has commands in flight, so the
  next ``times`` deletions of it fail with "this logical unit is still
  active";
* ``devices[path] = size``: what opening a backing store finds (tgtd reads
  the size once, when the LUN is created); ``unopenable`` paths fail;
* ``before(argv)``: runs ahead of every call, after it is recorded.

Every argv is recorded in ``calls``; ``ops()`` lists them as
``'<mode> <op>'`` and ``changes()`` leaves out the ``show`` calls.
"""

import collections

from cinder_zol.host import execute

EINVAL = 22
ENOTCONN = 107
DEFAULT_SIZE = 2 ** 30
DOWN = ('tgtadm: failed to send request hdr to tgt daemon, Transport '
        'endpoint is not connected\n')

# usr/tgtadm.c: tgtadm_strerror()
NO_DRIVER = "can't find the driver"
NO_TARGET = "can't find the target"
NO_LUN = "can't find the logical unit"
NO_SESSION = "can't find the session"
TARGET_EXIST = 'this target already exists'
LUN_EXIST = 'this logical unit number already exists'
ACL_EXIST = 'this access control rule already exists'
ACL_NOEXIST = 'this access control rule does not exist'
USER_EXIST = 'this account already exists'
NO_USER = "can't find the account"
INVALID_REQUEST = 'invalid request'
OUTACCOUNT_EXIST = 'this target already has an outgoing account'
TARGET_ACTIVE = 'this target is still active'
LUN_ACTIVE = 'this logical unit is still active'
UNSUPPORTED = "this operation isn't supported"

# usr/tgtadm.c: long_options -> the short letter verify_mode_params() uses;
# True when the option takes an argument
OPTIONS = {
    'debug': ('d', False), 'help': ('h', False), 'version': ('V', False),
    'lld': ('L', True), 'op': ('o', True), 'mode': ('m', True),
    'tid': ('t', True), 'sid': ('s', True), 'cid': ('c', True),
    'lun': ('l', True), 'name': ('n', True), 'value': ('v', True),
    'backing-store': ('b', True), 'bstype': ('E', True),
    'bsopts': ('S', True), 'bsoflags': ('f', True),
    'blocksize': ('y', True), 'targetname': ('T', True),
    'initiator-address': ('I', True), 'initiator-name': ('Q', True),
    'user': ('u', True), 'password': ('p', True), 'host': ('H', True),
    'force': ('F', False), 'params': ('P', True), 'bus': ('B', True),
    'device-type': ('Y', True), 'outgoing': ('O', False),
    'control-port': ('C', True),
}
MODES = {'system': 'system', 'target': 'target', 'logicalunit':
         'logicalunit', 'portal': 'portal', 'conn': 'conn',
         'session': 'session', 'account': 'account', 'lld': 'lld'}
OPS = ('new', 'delete', 'show', 'bind', 'unbind', 'update', 'stat',
       'start', 'stop')
# usr/tgtadm.c main(): the options each mode/op accepts
ALLOWED = {
    ('target', 'new'): 'LmotTC', ('target', 'delete'): 'LmotCF',
    ('target', 'show'): 'LmotC', ('target', 'bind'): 'LmotIQBHC',
    ('target', 'unbind'): 'LmotIQBHC', ('target', 'update'): 'LmotnvC',
    ('account', 'new'): 'LmoupfC', ('account', 'show'): 'LmoC',
    ('account', 'delete'): 'LmouC', ('account', 'bind'): 'LmotuOC',
    ('account', 'unbind'): 'LmotuOC',
    ('logicalunit', 'new'): 'LmofytlbEYCS',
    ('logicalunit', 'delete'): 'LmotlC',
    ('logicalunit', 'update'): 'LmofytlPC',
    ('conn', 'delete'): 'LmotscC',
    ('portal', 'new'): 'LmoCP', ('portal', 'delete'): 'LmoCP',
    ('portal', 'show'): 'LmoC',
}
# what tgtd listens on when started without --iscsi portal=...
DEFAULT_PORTALS = (('0.0.0.0', 3260), ('::', 3260))
SCSI_ID_LEN = SCSI_SN_LEN = 36
TAB1, TAB2, TAB3, TAB4 = ' ' * 4, ' ' * 8, ' ' * 12, ' ' * 16


class TgtadmError(Exception):

    def __init__(self, text, returncode=EINVAL):
        super().__init__(text)
        self.text = text
        self.returncode = returncode


class Lun(object):

    def __init__(self, lun, kind, path, size, scsi_id, scsi_sn):
        self.lun = lun
        self.kind = kind            # 'controller' or 'disk'
        self.path = path
        self.size = size
        self.scsi_id = scsi_id
        self.scsi_sn = scsi_sn
        self.busy = 0               # deletions that fail as still active

    @property
    def bstype(self):
        return 'null' if self.kind == 'controller' else 'rdwr'


class Target(object):

    def __init__(self, tid, iqn):
        self.tid = tid
        self.iqn = iqn
        self.state = 'ready'
        self.luns = {}              # lun -> Lun
        self.addresses = []         # initiator-address ACL, in bind order
        self.names = []             # initiator-name ACL, in bind order
        self.accounts = []          # incoming users, in binding order
        self.outgoing = None
        self.sessions = []          # (itn_id, initiator, alias, address)

    @property
    def acls(self):
        """What ``ACL information:`` lists: addresses, then names."""
        return self.addresses + self.names


class FakeTgtd(object):
    """Runner-compatible fake: ``run(argv, input=None, timeout=None)``."""

    version = '1.0.85'

    def __init__(self):
        self.targets = {}           # tid -> Target
        self.accounts = collections.OrderedDict()   # user -> password
        self.devices = {}           # backing store path -> size in bytes
        self.unopenable = set()
        self.down = False
        self.calls = []
        self.failures = []          # [substring, stderr, returncode, times]
        self.before = None
        self._next_itn = 1
        self.closed = []        # (tid, initiator) per connection closed
        self.portals = list(DEFAULT_PORTALS)    # (address, port) listening
        self.taken_ports = set()    # ports another program listens on

    # -- test controls -------------------------------------------------------

    def fail_next(self, op_substring, stderr='tgtadm: invalid request',
                  returncode=EINVAL, times=1):
        """Make the next ``times`` calls containing op_substring fail."""
        if not stderr.endswith('\n'):
            stderr += '\n'
        self.failures.append([op_substring, stderr, returncode, times])

    def restart(self):
        """tgtd restarted: everything made with tgtadm is gone."""
        self.targets.clear()
        self.accounts.clear()
        self.portals = list(DEFAULT_PORTALS)

    def add_session(self, tid, initiator, address='127.0.0.1', alias=None):
        target = self.targets[tid]
        itn = self._next_itn
        self._next_itn += 1
        target.sessions.append((itn, initiator, alias, address))
        return itn

    def set_busy(self, tid, lun, times):
        self.targets[tid].luns[lun].busy = times

    def target(self, iqn):
        for target in self.targets.values():
            if target.iqn == iqn:
                return target
        return None

    def add_target(self, tid, iqn, device=None, names=(), addresses=(),
                   accounts=()):
        """Seed a target (as another tool would have made it); not a call.

        ``accounts`` are (user, password) pairs, created and bound.
        """
        self._target_new(tid, iqn)
        target = self.targets[tid]
        if device is not None:
            self._lun_new(tid, 1, device)
        target.addresses.extend(addresses)
        target.names.extend(names)
        for user, password in accounts:
            if user not in self.accounts:
                self._account_new(user, password)
            self._account_bind(tid, user)
        return target

    def ops(self):
        """Every call as '<mode> <op>', e.g. 'logicalunit new'."""
        return [self._op_of(argv) for argv in self.calls]

    def changes(self):
        return [op for op in self.ops() if not op.endswith(' show')]

    def calls_of(self, op):
        """The argv of every call that was ``op`` ('target bind'...)."""
        return [argv for argv in self.calls if self._op_of(argv) == op]

    def state(self):
        """{iqn: summary}, to compare whole states in assertions."""
        return {t.iqn: {'tid': t.tid, 'state': t.state,
                        'luns': {n: lu.path for n, lu in t.luns.items()},
                        'acls': t.acls, 'accounts': list(t.accounts)}
                for t in self.targets.values()}

    @staticmethod
    def _op_of(argv):
        mode = op = '?'
        for i, arg in enumerate(argv):
            for key in ('mode', 'op'):
                value = None
                if arg == '--' + key and i + 1 < len(argv):
                    value = argv[i + 1]
                elif arg.startswith('--%s=' % key):
                    value = arg.split('=', 1)[1]
                if value is not None:
                    if key == 'mode':
                        mode = value
                    else:
                        op = value
        return '%s %s' % (mode, op)

    # -- runner interface ----------------------------------------------------

    def run(self, argv, input=None, timeout=None):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        if self.before is not None:
            self.before(argv)
        try:
            opts, letters = self._parse(argv)
            mode, op = self._check(opts, letters)
            if self.down:
                return execute.Completed(argv, ENOTCONN, '', DOWN)
            joined = ' '.join(argv)
            for failure in self.failures:
                if failure[0] in joined:
                    failure[3] -= 1
                    if failure[3] <= 0:
                        self.failures.remove(failure)
                    return execute.Completed(argv, failure[2], '',
                                             failure[1])
            if opts.get('lld') != 'iscsi':
                raise TgtadmError(NO_DRIVER)
            stdout = getattr(self, '_op_%s_%s' % (mode, op))(opts)
        except TgtadmError as e:
            return execute.Completed(argv, e.returncode, '',
                                     'tgtadm: %s\n' % e.text)
        return execute.Completed(argv, 0, stdout or '', '')

    # -- tgtadm: the client's own checks -------------------------------------

    @staticmethod
    def _parse(argv):
        if not argv or argv[0] != 'tgtadm':
            raise AssertionError('not a tgtadm call: %r' % (argv,))
        opts, letters = {}, []
        i = 1
        while i < len(argv):
            arg = argv[i]
            if not arg.startswith('--'):
                raise TgtadmError("unrecognized option '%s'" % arg)
            key, eq, value = arg[2:].partition('=')
            if key not in OPTIONS:
                raise TgtadmError("unrecognized option '%s'" % arg)
            letter, has_arg = OPTIONS[key]
            if has_arg and not eq:
                if i + 1 >= len(argv):
                    raise TgtadmError(
                        "option '--%s' requires an argument" % key)
                i += 1
                value = argv[i]
            elif not has_arg:
                if eq:
                    raise TgtadmError(
                        "option '--%s' doesn't allow an argument" % key)
                value = True
            opts[key] = value
            letters.append(letter)
            i += 1
        return opts, letters

    @staticmethod
    def _int(opts, key, minimum=None):
        if key not in opts:
            return None
        try:
            value = int(opts[key])
        except ValueError:
            raise TgtadmError("invalid argument '%s' for '--%s'"
                              % (opts[key], key))
        if minimum is not None and value < minimum:
            raise TgtadmError("invalid argument '%s' for '--%s'"
                              % (opts[key], key))
        return value

    def _check(self, opts, letters):
        """usr/tgtadm.c main(): what tgtadm refuses without asking tgtd."""
        if 'op' not in opts:
            raise TgtadmError('specify the operation type')
        op = opts['op']
        if op not in OPS:
            raise TgtadmError('unknown operation: %s' % op)
        if 'mode' not in opts:
            raise TgtadmError('specify the mode')
        mode = opts['mode']
        if mode not in MODES:
            raise TgtadmError('unknown mode: %s' % mode)
        tid = self._int(opts, 'tid', 0)
        self._int(opts, 'lun', 0)
        allowed = ALLOWED.get((mode, op))
        if allowed is None:
            raise AssertionError('fake tgtd does not model %s %s'
                                 % (mode, op))
        if mode == 'target':
            if op != 'show' and not tid:
                raise TgtadmError("'tid' cannot be 0" if tid == 0
                                  else "'tid' option is necessary")
        elif mode == 'logicalunit':
            if not tid:
                raise TgtadmError("'tid' must not be 0" if tid == 0
                                  else "'tid' option is necessary")
            if 'lun' not in opts:
                raise TgtadmError("'lun' option is necessary")
        for letter in letters:
            if letter not in allowed and letter != 'd':
                raise TgtadmError("%s mode: option '-%s' is not "
                                  "allowed/supported" % (mode, letter))
        if mode == 'portal' and op != 'show' and 'params' not in opts:
            raise TgtadmError('you must specify --param portal=<portal>')
        if mode == 'target' and op == 'new' and 'targetname' not in opts:
            raise TgtadmError('creating new target requires a name, use '
                              '--targetname')
        if mode == 'target' and op in ('bind', 'unbind') and not (
                'initiator-address' in opts or 'initiator-name' in opts or
                'bus' in opts or 'host' in opts):
            raise TgtadmError('%s operation requires initiator-address, '
                              'initiator-nameor bus' % op)
        if mode == 'target' and op == 'update' and not (
                'name' in opts and 'value' in opts):
            raise TgtadmError("update operation requires 'name' and "
                              "'value' options")
        if mode == 'account' and op == 'new' and not (
                'user' in opts and 'password' in opts):
            raise TgtadmError("'user' and 'password' options are required")
        if mode == 'account' and op in ('bind', 'unbind') and \
                'user' not in opts:
            raise TgtadmError("'user' option is necessary")
        return mode, op

    # -- tgtd: usr/target.c ---------------------------------------------------

    def _get(self, tid):
        if tid not in self.targets:
            raise TgtadmError(NO_TARGET)
        return self.targets[tid]

    def _target_new(self, tid, iqn):
        if not iqn or any(not (c.isalnum() or c in ':.-') for c in iqn):
            raise TgtadmError(INVALID_REQUEST)
        if tid in self.targets or self.target(iqn) is not None:
            raise TgtadmError(TARGET_EXIST)
        target = self.targets[tid] = Target(tid, iqn)
        target.luns[0] = Lun(0, 'controller', None, 0,
                             'IET     %04x%04x' % (tid, 0),
                             'beaf%d%d' % (tid, 0))

    def _lun_new(self, tid, lun, path):
        target = self._get(tid)
        if lun in target.luns:
            raise TgtadmError(LUN_EXIST)
        if path is not None and path in self.unopenable:
            raise TgtadmError(INVALID_REQUEST)
        size = self.devices.get(path, DEFAULT_SIZE) if path else 0
        target.luns[lun] = Lun(lun, 'disk', path, size,
                               'IET     %04x%04x' % (tid, lun),
                               'beaf%d%d' % (tid, lun))

    def _lun_delete(self, tid, lun, force=False):
        if lun == 0 and not force:
            raise TgtadmError(INVALID_REQUEST)
        target = self.targets.get(tid)
        if target is None or lun not in target.luns:
            raise TgtadmError(NO_LUN)
        unit = target.luns[lun]
        if unit.busy > 0:
            unit.busy -= 1
            raise TgtadmError(LUN_ACTIVE)
        del target.luns[lun]

    def _account_new(self, user, password):
        if user in self.accounts:
            raise TgtadmError(USER_EXIST)
        self.accounts[user] = password

    def _account_bind(self, tid, user, outgoing=False):
        target = self._get(tid)
        if user not in self.accounts:
            raise TgtadmError(NO_USER)
        if outgoing:
            if target.outgoing:
                raise TgtadmError(OUTACCOUNT_EXIST)
            target.outgoing = user
        elif user in target.accounts:
            raise TgtadmError(USER_EXIST)
        else:
            target.accounts.append(user)

    # mode target

    def _op_target_new(self, opts):
        self._target_new(int(opts['tid']), opts['targetname'])

    def _op_target_delete(self, opts):
        target = self._get(int(opts['tid']))
        if target.sessions and 'force' not in opts:
            raise TgtadmError(TARGET_ACTIVE)
        # LUN 0 goes last; a busy LUN stops the deletion where it is
        for lun in sorted(target.luns, reverse=True):
            self._lun_delete(target.tid, lun, force=True)
        del self.targets[target.tid]

    def _op_target_bind(self, opts):
        target = self._get(int(opts['tid']))
        if 'bus' in opts or 'host' in opts:
            raise AssertionError('fake tgtd does not model host binding')
        address = opts.get('initiator-address')
        if address is not None:
            if address in target.addresses:
                raise TgtadmError(ACL_EXIST)
            target.addresses.append(address)
        name = opts.get('initiator-name')
        if name is not None:
            if name in target.names:
                raise TgtadmError(ACL_EXIST)
            target.names.append(name)

    def _op_target_unbind(self, opts):
        target = self._get(int(opts['tid']))
        address = opts.get('initiator-address')
        if address is not None:
            if address not in target.addresses:
                raise TgtadmError(ACL_NOEXIST)
            target.addresses.remove(address)
        name = opts.get('initiator-name')
        if name is not None:
            if name not in target.names:
                raise TgtadmError(ACL_NOEXIST)
            target.names.remove(name)

    def _op_target_update(self, opts):
        if opts['name'] != 'state':
            raise AssertionError('fake tgtd does not model target '
                                 'parameter %s' % opts['name'])
        target = self._get(int(opts['tid']))
        if opts['value'] not in ('offline', 'ready'):
            raise TgtadmError(INVALID_REQUEST)
        target.state = opts['value']

    def _op_target_show(self, opts):
        if 'tid' in opts:
            raise AssertionError('fake tgtd does not model the iSCSI '
                                 'parameters of --op show --tid')
        return self.show()

    # mode conn

    def _op_conn_delete(self, opts):
        # iscsi conn_close_force(): the initiator sees its connection drop
        target = self._get(int(opts['tid']))
        for session in target.sessions:
            if session[0] == int(opts['sid']) and opts['cid'] == '0':
                target.sessions.remove(session)
                self.closed.append((target.tid, session[1]))
                return
        raise TgtadmError(NO_SESSION)

    # mode logicalunit

    def _op_logicalunit_new(self, opts):
        if opts.get('device-type', 'disk') != 'disk' or 'bstype' in opts:
            raise AssertionError('fake tgtd models rdwr disks only')
        self._lun_new(int(opts['tid']), int(opts['lun']),
                      opts.get('backing-store'))

    def _op_logicalunit_delete(self, opts):
        self._lun_delete(int(opts['tid']), int(opts['lun']))

    def _op_logicalunit_update(self, opts):
        target = self._get(int(opts['tid']))
        lun = int(opts['lun'])
        if lun not in target.luns:
            raise TgtadmError(NO_LUN)
        unit = target.luns[lun]
        for param in (opts.get('params') or '').split(','):
            if not param:
                continue
            key, eq, value = param.partition('=')
            if key == 'scsi_id' and eq:
                unit.scsi_id = value[:SCSI_ID_LEN]
            elif key == 'scsi_sn' and eq:
                unit.scsi_sn = value[:SCSI_SN_LEN]
            else:
                raise TgtadmError(INVALID_REQUEST)

    # mode account

    # usr/iscsi/iscsid.c iscsi_param_parse_portals(), iscsi_tcp.c: a bind
    # that fails (the address and port taken) is an invalid request
    @staticmethod
    def _portal_param(opts):
        param = opts['params']
        if not param.startswith('portal='):
            raise TgtadmError(INVALID_REQUEST)
        address, _sep, port = param[len('portal='):].rpartition(':')
        return address.strip('[]'), int(port)

    def _op_portal_show(self, opts):
        # tgtd adds each portal at the head of its list
        return ''.join('Portal: %s:%d,1\n' % (
            '[%s]' % address if ':' in address else address, port)
            for address, port in reversed(self.portals))

    def _op_portal_new(self, opts):
        address, port = self._portal_param(opts)
        if port in self.taken_ports or any(
                p == port and a in (address, '0.0.0.0' if ':' not in address
                                    else '::')
                for a, p in self.portals):
            raise TgtadmError(INVALID_REQUEST)
        self.portals.append((address, port))

    def _op_portal_delete(self, opts):
        portal = self._portal_param(opts)
        if portal not in self.portals:
            raise TgtadmError(INVALID_REQUEST)
        self.portals.remove(portal)

    def _op_account_new(self, opts):
        self._account_new(opts['user'], opts['password'])

    def _op_account_delete(self, opts):
        user = opts.get('user')
        if user is None:
            raise TgtadmError(INVALID_REQUEST)
        if user not in self.accounts:
            raise TgtadmError(NO_USER)
        for target in self.targets.values():
            if user in target.accounts:
                target.accounts.remove(user)
            if target.outgoing == user:
                target.outgoing = None
        del self.accounts[user]

    def _op_account_bind(self, opts):
        tid = int(opts['tid']) if 'tid' in opts else None
        if tid is None:
            raise AssertionError('fake tgtd does not model global accounts')
        self._account_bind(tid, opts['user'], 'outgoing' in opts)

    def _op_account_unbind(self, opts):
        target = self._get(int(opts['tid']))
        user = opts['user']
        if user not in self.accounts:
            raise TgtadmError(NO_USER)
        if 'outgoing' in opts:
            if target.outgoing != user:
                raise TgtadmError(NO_USER)
            target.outgoing = None
        elif user not in target.accounts:
            raise TgtadmError(NO_USER)
        else:
            target.accounts.remove(user)

    def _op_account_show(self, opts):
        if not self.accounts:
            return ''
        # tgtd adds each account at the head of its list
        return 'Account list:\n' + ''.join(
            TAB1 + user + '\n' for user in reversed(self.accounts))

    # -- output --------------------------------------------------------------

    @staticmethod
    def disksize(size):
        """usr/target.c print_disksize(): tgt's idea of a megabyte."""
        sectors = size // 512
        return '%d MB' % ((sectors - (sectors // 625 - 974)) // 1950)

    def show(self):
        """``tgtadm --lld iscsi --mode target --op show``."""
        out = []
        for tid in sorted(self.targets):
            target = self.targets[tid]
            out.append('Target %d: %s\n' % (tid, target.iqn))
            out.append(TAB1 + 'System information:\n')
            out.append(TAB2 + 'Driver: iscsi\n')
            out.append(TAB2 + 'State: %s\n' % target.state)
            out.append(TAB1 + 'I_T nexus information:\n')
            for itn, initiator, alias, address in target.sessions:
                out.append(TAB2 + 'I_T nexus: %d\n' % itn)
                out.append(TAB3 + 'Initiator: %s alias: %s\n'
                           % (initiator, alias or 'none'))
                out.append(TAB3 + 'Connection: 0\n')
                out.append(TAB4 + 'IP Address: %s\n' % address)
            out.append(TAB1 + 'LUN information:\n')
            for lun in sorted(target.luns):
                unit = target.luns[lun]
                disk = unit.kind == 'disk'
                out.append(
                    TAB2 + 'LUN: %d\n' % lun +
                    TAB3 + 'Type: %s\n' % unit.kind +
                    TAB3 + 'SCSI ID: %s\n' % unit.scsi_id +
                    TAB3 + 'SCSI SN: %s\n' % unit.scsi_sn +
                    TAB3 + 'Size: %s, Block size: %d\n'
                    % (self.disksize(unit.size), 512 if disk else 1) +
                    TAB3 + 'Online: %s\n'
                    % ('Yes' if unit.path or not disk else 'No') +
                    TAB3 + 'Removable media: %s\n'
                    % ('No' if unit.path or not disk else 'Yes') +
                    TAB3 + 'Prevent removal: No\n' +
                    TAB3 + 'Readonly: No\n' +
                    TAB3 + 'SWP: No\n' +
                    TAB3 + 'Thin-provisioning: No\n' +
                    TAB3 + 'Backing store type: %s\n' % unit.bstype +
                    TAB3 + 'Backing store path: %s\n' % (unit.path or
                                                         'None') +
                    TAB3 + 'Backing store flags: \n')
            out.append(TAB1 + 'Account information:\n')
            for user in target.accounts:
                out.append(TAB2 + user + '\n')
            if target.outgoing:
                out.append(TAB2 + '%s (outgoing)\n' % target.outgoing)
            out.append(TAB1 + 'ACL information:\n')
            for entry in target.acls:
                out.append(TAB2 + entry + '\n')
        return ''.join(out)
