"""zvol device nodes: the link exports name, and waiting for udev to make it.

Used by the root helper through the request context
(``ctx.wait_for_device``, ``ctx.device_of``), where tests put fakes.
"""

import os
import re
import stat
import time

from . import errors

_ZVOL_NODE = re.compile(r'^/dev/zd[0-9]+$')

# A busy storage host sometimes loses a new zvol's udev event: the node
# exists, the /dev/zvol link never comes. Every this long, ask udev again.
RETRIGGER_AFTER = 5
# udev's change events of every zvol node, replayed (links are idempotent)
RETRIGGER = ('udevadm', 'trigger', '--action=change',
             '--subsystem-match=block', '--sysname-match=zd*')


def retrigger_zvols(executor):
    """Replay the zvol nodes' udev events, and wait for udev to act."""
    executor.run(list(RETRIGGER))
    executor.run(['udevadm', 'settle', '--timeout=10'])


def wait_for_device(link, wait, retrigger=None):
    """The /dev/zvol link once it resolves to a zvol device node.

    ``retrigger()`` runs each RETRIGGER_AFTER seconds the link is still
    missing.
    """
    start = time.monotonic()
    deadline = start + wait
    replay_at = start + RETRIGGER_AFTER
    while True:
        if retrigger and time.monotonic() >= replay_at:
            retrigger()
            replay_at = time.monotonic() + RETRIGGER_AFTER
        real = os.path.realpath(link)
        try:
            if _ZVOL_NODE.match(real) and stat.S_ISBLK(os.stat(real).st_mode):
                return link
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise errors.Timeout('device %s did not appear within %s s'
                                 % (link, wait),
                                 hint='Check udev and the volmode property '
                                      'on the storage host.')
        time.sleep(0.1)


def device_of(link):
    """The path exports name a zvol by: its /dev/zvol link.

    Unlike /dev/zdN, the link stays the zvol's across reboots, so a
    target's storage tells which zvol it serves.
    """
    return link
