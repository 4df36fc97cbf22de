"""The request loop the agent and the root helper share.

Both read a request (``OP ARG...`` with its payload on stdin, or JSON
lines in a session), parse it once against :mod:`.wire`, run it through
their own ``dispatch(ctx, operation, args, payload)``, and answer with one
reply line. Every request, run or refused, leaves one audit line in
syslog (:func:`.log.audit`); a malformed session line is refused and the
session goes on.

Operations are implemented where they belong (:mod:`.ops`, :mod:`.images`,
:mod:`.root.exports`...) and bound here to their name in the wire table
with :func:`implements`.
"""

import json
import sys

from . import errors
from . import log
from . import wire

# operation name -> func(ctx, *args, payload)
IMPLEMENTATIONS = {}

REFUSALS = (errors.Refused, errors.NotOwned)


def implements(name):
    """Bind the decorated function to operation ``name`` of the wire table."""
    def bind(func):
        assert name in wire.OPERATIONS, name
        assert name not in IMPLEMENTATIONS, name
        IMPLEMENTATIONS[name] = func
        return func
    return bind


def reply_ok(result):
    return wire.reply_ok(result, log.take_notes())


def reply_error(error):
    return wire.reply_error(error, log.take_notes())


def write(reply, stream=None):
    stream = stream or sys.stdout
    try:
        stream.write(wire.encode(reply))
        stream.flush()
    except BrokenPipeError:
        pass   # the client is gone; the operation itself is done


def decode(data, what):
    """A JSON object from UTF-8 bytes, or Refused (nothing ran)."""
    try:
        value = json.loads(data.decode('utf-8'))
    except (ValueError, RecursionError):   # bad UTF-8 is a ValueError
        raise errors.Refused('%s is not UTF-8 JSON (or nested too deeply)'
                             % what)
    if not isinstance(value, dict):
        raise errors.Refused('%s is not a JSON object' % what)
    return value


def read_payload(stream):
    data = stream.read(wire.MAX_REQUEST + 1)
    if len(data) > wire.MAX_REQUEST:
        raise errors.Refused('payload larger than %d bytes'
                             % wire.MAX_REQUEST)
    if not data.strip():
        return {}
    return decode(data, 'payload')


def answer(run):
    """Run one request: its reply, and its audit line in syslog.

    ``run(seen)`` records the request's argv and payload in ``seen`` as
    soon as it knows them and returns the result. Whatever fails becomes
    an error reply: one bad request never ends a session.
    """
    seen = {'argv': None, 'payload': None}
    try:
        result = run(seen)
    except Exception as e:
        if not isinstance(e, errors.HostError):
            e = errors.HostError('unexpected %s in the storage host agent'
                                 % type(e).__name__, str(e))
        refused = isinstance(e, REFUSALS)
        log.audit(seen['argv'], seen['payload'], '%s (%s: %s)' % (
            'REFUSED' if refused else 'failed', e.kind, e), refused)
        return reply_error(e)
    log.audit(seen['argv'], seen['payload'], 'ok')
    return reply_ok(result)


def exit_status(reply):
    """0, 1, or REFUSED_EXIT when nothing ran because it was refused."""
    if reply['ok']:
        return 0
    refusals = [cls.kind for cls in REFUSALS]
    return wire.REFUSED_EXIT if reply['error']['kind'] in refusals else 1


def parse(ctx, argv, root_only=False):
    """(Operation, args) of ``argv``, or Refused.

    ``root_only``: the root helper, which runs root operations only.
    """
    operation, args = wire.parse(argv, ctx.config)
    if root_only and not operation.root:
        raise errors.Refused('%s is not a root helper operation'
                             % operation.name)
    return operation, args


def one_request(ctx, argv, dispatch, stream, root_only=False):
    """Run ``OP ARG...`` with stdin as payload; return the exit status.

    ``stream(ctx, operation, args, argv)`` runs a data stream operation
    on stdin/stdout and returns its exit status.
    """
    try:
        operation, args = parse(ctx, argv, root_only)
    except errors.Refused as e:
        operation, args, refusal = None, None, e
    if operation is not None and operation.stream:
        return stream(ctx, operation, args, argv)

    def run(seen):
        seen['argv'] = argv
        if operation is None:
            raise refusal
        payload = seen['payload'] = read_payload(sys.stdin.buffer) \
            if (operation.payload or operation.root) else {}
        return dispatch(ctx, operation, args, payload)

    reply = answer(run)
    write(reply)
    status = exit_status(reply)
    if status == wire.REFUSED_EXIT:
        sys.stderr.write('%s: refused: %s\n' % (
            'cinder-zol-target' if root_only else 'cinder-zol-host',
            errors.from_dict(reply['error'])))
    return status


def session(ctx, dispatch, inp=None, out=None, root_only=False):
    """Serve JSON-line requests until EOF; one reply line each.

    ``root_only``: the root helper's session, which refuses everything
    but root operations. A malformed line is refused and the session
    goes on with the next one.
    """
    inp = inp or sys.stdin.buffer
    out = out or sys.stdout
    while True:
        line = inp.readline(wire.MAX_REQUEST + 1)
        if not line:
            return 0

        def run(seen, line=line):
            if len(line) > wire.MAX_REQUEST and not line.endswith(b'\n'):
                _skip_line(inp)
                raise errors.Refused('request longer than %d bytes'
                                     % wire.MAX_REQUEST)
            request = decode(line, 'request')
            argv = seen['argv'] = request.get('argv')
            payload = seen['payload'] = request.get('payload') or {}
            if not isinstance(argv, list) or \
                    not all(isinstance(arg, str) for arg in argv):
                raise errors.Refused('a request is {"argv": [strings], '
                                     '"payload": {...}}')
            operation, args = parse(ctx, argv, root_only)
            if operation.stream:
                raise errors.Refused('%s streams data: not in a session'
                                     % operation.name)
            return dispatch(ctx, operation, args, payload)

        write(answer(run), out)


def _skip_line(inp):
    """Discard the rest of an over-long line, up to its newline."""
    while True:
        rest = inp.readline(wire.MAX_REQUEST)
        if not rest or rest.endswith(b'\n'):
            return
