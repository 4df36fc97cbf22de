"""What the driver, the agent and the root helper must agree on.

Everything that crosses SSH (driver -> agent) or sudo (agent -> root
helper) is defined here once, and both ends import it: the operations and
their argument grammar, the limits, the reply envelope, the data-record
framing and the target payload keys. Standard library and this package's
own stdlib modules only: the storage host installs it as it is.
"""

import collections
import json

from . import errors
from . import names

# The protocol both ends check for equality (the driver refuses an agent
# that answers ``version`` with another number). Bump it when an older
# peer would misread what is sent: an operation's argument spec, a reply's
# shape or a result key the driver relies on, the record framing, a
# payload key whose meaning changes. New operations, and new optional
# payload or result keys that the other end may ignore, need no bump.
PROTOCOL = 1

PROGRAM = '/usr/libexec/cinder-zol/cinder-zol-host'
ROOT_PROGRAM = '/usr/libexec/cinder-zol/cinder-zol-target'

# -- limits ---------------------------------------------------------------

REFUSED_EXIT = 126          # refused: nothing ran
MAX_REQUEST = 1 << 20       # a JSON request or payload
MAX_COMMAND = 16 * 1024     # SSH_ORIGINAL_COMMAND
# Snapshots one request (and one `zfs snapshot`) may take at once: ~90
# characters each keeps the request within MAX_COMMAND.
MAX_SNAPSHOTS = 128
# The longest an export waits for its /dev/zvol link (the driver asks for
# less).
MAX_WAIT = 120

# -- operations -----------------------------------------------------------
#
# Argument kinds: PARENT (a dataset listed in host.conf), NAME and SNAP (one
# safe name component), SIZE (bytes, decimal), HELPER (an enabled target
# helper), NAMES (one or more NAME, last argument only), SNAPSHOTS (one or
# more NAME@SNAP of distinct zvols, at most MAX_SNAPSHOTS, last argument
# only).
#
# lock: None, 'shared' or 'exclusive' (the parent's dependency lock);
# payload: reads a JSON object; stream: stdin/stdout carry data records;
# root: runs in the root helper.

Operation = collections.namedtuple('Operation',
                                   'name spec lock payload stream root')


def _operation(name, spec='', lock=None, payload=False, stream=False,
               root=False):
    return Operation(name, tuple(spec.split()), lock, payload, stream, root)


OPERATIONS = collections.OrderedDict((o.name, o) for o in (
    # information
    _operation('version'),
    _operation('check', 'PARENT'),
    _operation('stats', 'PARENT'),
    _operation('sweep', 'PARENT', lock='exclusive'),
    # volumes and snapshots
    _operation('create', 'PARENT NAME SIZE', payload=True),
    _operation('delete', 'PARENT NAME', lock='exclusive'),
    _operation('snapshot', 'PARENT SNAP NAMES'),
    _operation('delete-snapshot', 'PARENT NAME SNAP', lock='exclusive'),
    _operation('clone', 'PARENT NAME NAME SIZE', lock='shared',
               payload=True),
    _operation('clone-snapshot', 'PARENT NAME SNAP NAME SIZE',
               lock='shared', payload=True),
    _operation('extend', 'PARENT NAME SIZE'),
    _operation('revert', 'PARENT NAME SNAP SIZE', lock='exclusive',
               payload=True),
    _operation('rename', 'PARENT NAME NAME', lock='exclusive'),
    # manage, unmanage, retype
    _operation('manageable', 'PARENT'),
    _operation('manage', 'PARENT NAME NAME', lock='exclusive'),
    _operation('unmanage', 'PARENT NAME', lock='exclusive'),
    _operation('manage-snapshot', 'PARENT NAME SNAP SNAP',
               lock='exclusive'),
    _operation('set-props', 'PARENT NAME', payload=True),
    # groups
    _operation('group-check', 'PARENT NAMES'),
    _operation('group-snapshot', 'PARENT SNAPSHOTS', lock='shared'),
    _operation('clone-group', 'PARENT NAMES', lock='shared', payload=True),
    # the image cache
    _operation('image-find', 'PARENT NAME'),
    _operation('clone-image', 'PARENT NAME NAME SIZE', lock='shared',
               payload=True),
    _operation('image-begin', 'PARENT NAME SIZE', payload=True),
    _operation('image-commit', 'PARENT NAME NAME', lock='exclusive',
               payload=True),
    _operation('image-upload', 'PARENT NAME', lock='exclusive'),
    _operation('image-drop', 'PARENT NAME', lock='exclusive'),
    _operation('image-evict', 'PARENT', lock='exclusive', payload=True),
    _operation('image-purge', 'PARENT', lock='exclusive'),
    _operation('image-list', 'PARENT'),
    # the root helper: targets and zvol data
    _operation('target-export', 'PARENT NAME HELPER', payload=True,
               root=True),
    _operation('target-remove', 'PARENT NAME HELPER', payload=True,
               root=True),
    _operation('target-allow', 'PARENT NAME HELPER', payload=True,
               root=True),
    _operation('target-deny', 'PARENT NAME HELPER', payload=True,
               root=True),
    _operation('target-resize', 'PARENT NAME HELPER', payload=True,
               root=True),
    _operation('target-show', 'PARENT NAME HELPER', payload=True,
               root=True),
    _operation('target-version', 'HELPER', root=True),
    _operation('write', 'PARENT NAME', stream=True, root=True),
    _operation('read', 'PARENT NAME', stream=True, root=True),
))

# The payload keys each target operation reads (cinder_zol.targets builds
# them, the root helper validates them). ``iqn`` is the target's name
# whatever the protocol (an NQN for NVMe-oF); ``ports`` every port the
# driver's portals use (``port`` alone when it sends none); ``wait`` the
# seconds to wait for the zvol's device, at most MAX_WAIT.
TARGET_PAYLOAD = {
    'target-export': ('iqn', 'chap', 'initiators', 'ports', 'serial',
                      'wait'),
    'target-remove': ('iqn',),
    'target-allow': ('iqn', 'initiator', 'chap'),
    'target-deny': ('iqn', 'initiators'),
    'target-resize': ('iqn', 'serial'),
    'target-show': ('iqn',),
}
# What the export payload carries besides: the port a driver without
# ``ports`` listens on.
EXPORT_PAYLOAD = TARGET_PAYLOAD['target-export'] + ('port',)


def check_arg(kind, value, config):
    """One argument of kind ``kind``, or errors.Refused.

    PARENT and HELPER need the storage host's configuration (host.conf).
    """
    if kind == 'PARENT':
        return config.check_parent(value)
    if kind in ('NAME', 'SNAP', 'NAMES'):
        return names.component(value, kind.lower())
    if kind == 'SNAPSHOTS':
        name, at, snap = value.partition('@')
        if not at:
            raise errors.Refused('%r is not NAME@SNAPSHOT' % (value,))
        names.component(name, 'zvol name')
        names.component(snap, 'snapshot name')
        return value
    if kind == 'SIZE':
        names.size(value)
        return value
    if kind == 'HELPER':
        return config.check_helper(value)
    raise AssertionError(kind)


def parse(argv, config):
    """Validate ``[OP, ARG...]`` against the vocabulary; (Operation, args).

    Raises errors.Refused for anything else; nothing has run then.
    """
    if not argv or argv[0] not in OPERATIONS:
        raise errors.Refused('unknown operation %r' % (argv[:1],))
    operation = OPERATIONS[argv[0]]
    args = list(argv[1:])
    spec = operation.spec
    variadic = bool(spec) and spec[-1] in ('NAMES', 'SNAPSHOTS')
    if len(args) != len(spec) and not (variadic and len(args) >= len(spec)):
        raise errors.Refused('%s takes %s, not %d arguments' % (
            operation.name, ' '.join(spec) or 'no arguments', len(args)))
    if variadic and len(args) - len(spec) + 1 > MAX_SNAPSHOTS:
        raise errors.Refused('%s takes at most %d %s' % (
            operation.name, MAX_SNAPSHOTS, spec[-1]))
    for i, value in enumerate(args):
        check_arg(spec[min(i, len(spec) - 1)], value, config)
    return operation, args


# -- replies ----------------------------------------------------------------
#
# One JSON line: ``{"ok": true, "result": {...}, "notes": [...]}`` or
# ``{"ok": false, "error": {"kind": ..., "message": ..., "stderr": ...,
# "hint": ...}, "notes": [...]}`` (errors.HostError.to_dict()). Notes are
# things the operator should hear of; the driver logs them.

def reply_ok(result, notes=None):
    return _with_notes({'ok': True, 'result': result}, notes)


def reply_error(error, notes=None):
    """``error``: a HostError or its dict."""
    if isinstance(error, errors.HostError):
        error = error.to_dict()
    return _with_notes({'ok': False, 'error': error}, notes)


def _with_notes(reply, notes):
    if notes is not None:
        reply['notes'] = notes
    return reply


def encode(reply, sort_keys=True):
    """One reply line (text, with its newline)."""
    return json.dumps(reply, sort_keys=sort_keys) + '\n'


def decode(line):
    """A reply line as its dict; None when it is no JSON object."""
    try:
        reply = json.loads(line)
    except (TypeError, ValueError):
        return None
    return reply if isinstance(reply, dict) else None


def outcome(reply, fail, note=None):
    """The result of a decoded reply, or ``fail(error dict)`` raised.

    Each end passes its own ``fail`` (the host: errors.from_dict, the
    driver: its exception for the kind) and ``note`` for the notes.
    """
    for text in reply.get('notes') or ():
        if note is not None:
            note(text)
    if reply.get('ok'):
        return reply.get('result') or {}
    raise fail(reply.get('error') or {})


def request_line(argv, payload):
    """A session request: ``{"argv": [...], "payload": {...}}`` and EOL."""
    return json.dumps({'argv': list(argv), 'payload': payload or {}}) + '\n'


# -- zvol data records -------------------------------------------------------
#
# Raw data travels as records: an 8-byte big-endian offset and an 8-byte
# length, then that many bytes. Zero regions are simply not sent; a record
# of length 0 ends the stream and carries the total size as its offset.

HEADER = 16
CHUNK = 1 << 20             # the longest record either end sends
MAX_RECORD = 4 * CHUNK      # the longest record the root helper accepts


def record_header(offset, length):
    return offset.to_bytes(8, 'big') + length.to_bytes(8, 'big')


def end_record(size):
    """The record that ends a stream of ``size`` bytes."""
    return record_header(size, 0)


def parse_header(header):
    """HEADER bytes -> (offset, length); length 0 ends the stream."""
    return int.from_bytes(header[:8], 'big'), int.from_bytes(header[8:],
                                                             'big')
