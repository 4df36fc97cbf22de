"""A fake runner for the target helpers: records argv + stdin, replays
canned outputs or errors per remote operation."""

import ast
import collections
import json

from oslo_concurrency import processutils

from cinder_zol import runner
from cinder_zol.targets import base
from cinder_zol.targets import tgt

FLOCK = ['flock', '-w', str(base.REMOTE_LOCK_WAIT), '-E',
         str(base.LOCK_CONFLICT_EXIT), base.REMOTE_LOCK_FILE]

TGT_SCRIPTS = {tgt.STATE_SCRIPT: 'state', tgt.APPLY_SCRIPT: 'apply',
               tgt.REMOVE_SCRIPT: 'remove', tgt.ALLOW_SCRIPT: 'allow',
               tgt.DENY_SCRIPT: 'deny', tgt.REFRESH_SCRIPT: 'refresh'}

Call = collections.namedtuple('Call', 'op argv args input params')


def error(stderr, exit_code=1, stdout=''):
    return processutils.ProcessExecutionError(
        stdout=stdout, stderr=stderr, exit_code=exit_code, cmd='...')


def lio_params(program):
    """The parameters a LIO program passes to main()."""
    last = program.rstrip('\n').splitlines()[-1]
    assert last.startswith('main(json.loads(') and last.endswith('))')
    return json.loads(ast.literal_eval(last[len('main(json.loads('):-2]))


class FakeRunner(object):
    host = 'storage1'

    def __init__(self):
        self.calls = []
        self.replies = collections.defaultdict(list)

    def reply(self, op, stdout='', stderr=''):
        self.replies[op].append(runner.Result(stdout, stderr))

    def fail(self, op, stderr, exit_code=1):
        self.replies[op].append(error(stderr, exit_code))

    def run(self, argv, input=None, timeout=None, check_exit_code=True):
        argv = list(argv)
        assert argv[:len(FLOCK)] == FLOCK, argv
        cmd = argv[len(FLOCK):]
        params = None
        if cmd[:2] == ['sh', '-c']:
            op = TGT_SCRIPTS[cmd[2]]
            args = cmd[4:]
        elif cmd == ['python3', '-']:
            params = lio_params(input)
            op = 'lio-' + params['op']
            args = []
        else:
            raise AssertionError('unexpected command %r' % argv)
        self.calls.append(Call(op, argv, args, input, params))
        if not self.replies[op]:
            return runner.Result('', '')
        reply = self.replies[op].pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def ops(self):
        return [c.op for c in self.calls]

    def all_argv_text(self):
        return '\n'.join(' '.join(c.argv) for c in self.calls)


def show_target(iqn, device, tid=1, acls=None, sessions=False,
                with_lun=True):
    acls = ([tgt.PLACEHOLDER_ADDRESS, tgt.PLACEHOLDER_INITIATOR]
            if acls is None else acls)
    lines = ['Target %d: %s' % (tid, iqn),
             '    System information:',
             '        Driver: iscsi',
             '        State: ready',
             '    I_T nexus information:']
    if sessions:
        lines += ['        I_T nexus: 1',
                  '            Initiator: iqn.1993-08.org.debian:01:abc '
                  'alias: compute1',
                  '            Connection: 0',
                  '                IP Address: 192.0.2.50']
    lines += ['    LUN information:',
              '        LUN: 0',
              '            Type: controller',
              '            SCSI ID: IET     00010000',
              '            Backing store type: null',
              '            Backing store path: None',
              '            Backing store flags: ']
    if with_lun:
        lines += ['        LUN: 1',
                  '            Type: disk',
                  '            SCSI ID: 7f1c',
                  '            Size: 1074 MB, Block size: 512',
                  '            Backing store type: rdwr',
                  '            Backing store path: %s' % device,
                  '            Backing store flags: ']
    lines += ['    Account information:',
              '        someuser',
              '    ACL information:']
    lines += ['        %s' % a for a in acls]
    return '\n'.join(lines) + '\n'
