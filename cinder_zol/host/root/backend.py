"""What a target backend provides: the interface of tgt.py, lio.py, nvmet.py.

The root helper (:mod:`.exports`) has validated every argument, checked
the zvol and bound the target to it before it calls a backend; a backend
only makes the live target match. ``name`` is the zvol's name, ``iqn``
the target's (an NQN for nvmet), ``device`` the zvol's /dev/zvol link,
``chap`` [user, secret] or None, ``initiators`` initiator IQNs or host
NQNs, ``ports`` the TCP ports to listen on, ``serial`` the LUN's or
namespace's identity. Results are dicts that travel back to the driver
as they are.
"""

import abc
import time

# Right after a zvol appears (its /dev/zvol link already there) udev or the
# kernel may not take it yet: rtslib asks udev whether it is a disk, nvmet
# opens it when the namespace is enabled. Wait this long, and let udev
# settle once after SETTLE_AFTER seconds.
DEVICE_WAIT = 15
SETTLE_AFTER = 1


def wait_for_udev(ready, executor, wait=DEVICE_WAIT):
    """``ready()`` until it is true or ``wait`` is over; its last value."""
    start = time.monotonic()
    settle = executor is not None
    while True:
        done = ready()
        waited = time.monotonic() - start
        if done or waited >= wait:
            return done
        if settle and waited >= SETTLE_AFTER:
            executor.run(['udevadm', 'settle', '--timeout=10'])
            settle = False
        time.sleep(0.1)


class Backend(object, metaclass=abc.ABCMeta):

    # zol_target_helper name of this backend (the helpers table)
    tool = None
    # True when the target's own service brings exports back at boot;
    # False: restore() re-creates them from the root helper's records.
    restores_itself = True

    def __init__(self, executor):
        self.executor = executor

    @abc.abstractmethod
    def storage(self, name, iqn):
        """The devices the live target serves, or None without a target.

        An empty list: the target serves nothing yet.
        """

    @abc.abstractmethod
    def export(self, name, iqn, device, chap, initiators, ports, serial):
        """Create or complete the export; idempotent.

        Returns ``initiators`` (all now allowed), ``chap`` (the
        credentials kept: an existing export keeps its own) and
        ``changed``, with the protocol's address of the LUN (iSCSI:
        ``tid`` and ``lun``).
        """

    @abc.abstractmethod
    def remove(self, name, iqn):
        """Remove the export; ``{'removed': bool}`` (False: none was)."""

    @abc.abstractmethod
    def allow(self, name, iqn, initiator, chap):
        """Allow one more initiator; ``{'initiators': [...]}`` allowed."""

    @abc.abstractmethod
    def deny(self, name, iqn, initiators):
        """Remove initiators (None: all); ``{'initiators': [...]}`` left."""

    @abc.abstractmethod
    def resize(self, name, iqn, device, serial):
        """Make the live target report the zvol's size.

        ``{'changed': bool}`` and what the backend had to do for it.
        """

    @abc.abstractmethod
    def show(self, name, iqn):
        """The export as it is.

        ``exists``, ``device``, ``initiators`` and what else the backend
        can tell.
        """

    @abc.abstractmethod
    def version(self):
        """``{'helper': tool}``, after checking the tool answers."""
