"""The request context: everything an operation may use on this host.

One per process, built by the agent (:mod:`.agent`) and by the root helper
(:mod:`.root.main`); operations receive it as ``ctx``. ``host`` always
means a :class:`.zfs.ZfsHost`, which ``ctx.zfs(parent)`` gives.
"""

from . import config as config_mod
from . import devices
from . import execute
from . import locks
from . import zfs


class Context(object):
    """The configuration, the executor, the locks, and the test seams.

    ``target_runner(operation, args, payload)``, when set, runs a root
    operation in place of the root helper (tests);
    ``wait_for_device``, ``device_of`` and ``target_backends`` are the
    root helper's, replaced by fakes in tests; ``transient_prefixes`` is
    what a sweep may remove (the agent's image imports and uploads).
    """

    def __init__(self, config, executor=None, target_runner=None,
                 lock_dir=config_mod.LOCK_DIR,
                 target_lock_dir=config_mod.TARGET_LOCK_DIR,
                 lock_wait=locks.DEFAULT_WAIT):
        self.config = config
        self.executor = executor or execute.Executor()
        self.target_runner = target_runner
        self.lock_dir = lock_dir
        self.target_lock_dir = target_lock_dir
        self.lock_wait = lock_wait
        self.target_backends = {}
        self.wait_for_device = devices.wait_for_device
        self.device_of = devices.device_of
        self.target_state_dir = config_mod.TARGET_STATE_DIR
        self.transient_prefixes = ()
        self.root_session = None    # the agent's sudo session, when needed
        self._zfs = {}
        self._lock_owners = None

    def zfs(self, parent):
        if parent not in self._zfs:
            self._zfs[parent] = zfs.ZfsHost(self.executor, parent,
                                            self.config.pool_features)
        return self._zfs[parent]

    def zfs_version(self):
        if not self.config.datasets:
            return None
        return self.zfs(self.config.datasets[0]).version()

    def locked(self, parent, mode):
        owners = self._lock_owners
        if owners is None:
            uid = config_mod.agent_uid(self.config.user)
            owners = self._lock_owners = {uid} if uid is not None else set()
        return locks.hold(self.lock_dir, locks.lock_name(parent),
                          shared=(mode == 'shared'), wait=self.lock_wait,
                          owners=owners)
