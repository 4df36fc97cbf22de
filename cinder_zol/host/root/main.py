"""cinder-zol-target: the root helper's entry point (as root, via sudo).

``cinder-zol-target OP ARG...`` (one request, a data stream), ``session``
(JSON-line requests from the agent) or ``restore`` (at boot, root only:
sudoers never allows it). Only root operations of :mod:`..wire` run here.
"""

import os
import sys

from .. import config as config_mod
from .. import context
from .. import errors
from .. import log
from .. import serve
from . import exports
from . import streams


def dispatch(ctx, operation, args, payload):
    """Run a root operation (as root); its result dict."""
    if not isinstance(payload, dict):
        raise errors.Refused('%s needs a JSON object payload'
                             % operation.name)
    if os.geteuid() != 0:
        raise errors.PermissionDenied('%s must run as root' % operation.name)
    return serve.IMPLEMENTATIONS[operation.name](ctx, *args, payload=payload)


def main(argv=None):
    """cinder-zol-target OP ARG... (as root, through sudo)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    log.enable_syslog()
    log.set_origin('root helper request for %s'
                   % os.environ.get('SUDO_USER', 'root'))
    try:
        ctx = context.Context(config_mod.load())
    except errors.HostError as e:
        serve.write(serve.reply_error(e))
        return 1
    if argv == ['session']:
        return serve.session(ctx, dispatch, root_only=True)
    if argv == ['restore']:   # root only: sudoers never allows it
        return 1 if exports.restore(ctx) else 0
    return serve.one_request(ctx, argv, dispatch, streams.audited,
                             root_only=True)
