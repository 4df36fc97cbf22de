"""Locks on the storage host, shared by every process that drives it.

cinder-volume processes on several hosts (or two backends on one parent)
reach the same storage host; an in-process lock cannot keep their
multi-step operations apart, a ``flock`` on the storage host can. Lock
files live in a directory only the lock's users can write (never the
world-writable /run/lock), and a dead holder releases its lock with its
process.
"""

import contextlib
import errno
import fcntl
import os
import stat
import time

from . import errors

DEFAULT_WAIT = 120


def _check_dir(path, owners):
    """The lock directory must not be writable by anybody but its users."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in owners or \
            st.st_mode & 0o022:
        raise errors.Refused(
            'lock directory %s must be a directory owned by uid %s and not '
            'writable by group or others' % (path, ' or '.join(
                str(o) for o in sorted(owners))),
            hint='setup-storage-host.sh creates it (systemd-tmpfiles).')


def ensure_dir(path, owners=None):
    """Create (root only) or check a lock directory."""
    owners = set(owners or ()) | {0, os.geteuid()}
    try:
        os.mkdir(path, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise errors.Unavailable(
                'cannot create lock directory %s' % path, e.strerror,
                'setup-storage-host.sh creates it (systemd-tmpfiles).')
    _check_dir(path, owners)


@contextlib.contextmanager
def hold(directory, name, shared=False, wait=DEFAULT_WAIT, owners=None):
    """Hold ``directory/name.lock`` (shared or exclusive) for the block.

    ``owners``: uids besides root and ourselves that may own the directory
    (the agent account, when root uses the agent's directory).
    """
    ensure_dir(directory, owners)
    path = os.path.join(directory, name + '.lock')
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        if os.geteuid() == 0:
            # root shares the agent account's directory: leave the lock
            # file usable by that account
            st = os.stat(directory)
            os.fchown(fd, st.st_uid, st.st_gid)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise errors.Timeout(
                    'another operation on the storage host held %s for more '
                    'than %s s' % (path, wait),
                    hint='Look for a hung zfs or target command on the '
                         'storage host.')
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        yield
    finally:
        os.close(fd)


def lock_name(dataset):
    """A file name for a dataset's lock: tank/cinder -> tank%cinder."""
    return dataset.replace('/', '%')


@contextlib.contextmanager
def hold_any(directory, name, count, wait=DEFAULT_WAIT, what=None, hint=''):
    """Hold one of ``count`` exclusive slots ``name-<i>`` for the block.

    A counting semaphore every process on the storage host shares; a dead
    holder frees its slot with its process.
    """
    ensure_dir(directory)
    fds = []
    try:
        for i in range(count):
            fds.append(os.open(os.path.join(directory, '%s-%d.lock'
                                            % (name, i)),
                               os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW |
                               os.O_CLOEXEC, 0o600))
        deadline = time.monotonic() + wait
        while True:
            for fd in fds:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    continue
                yield
                return
            if time.monotonic() >= deadline:
                raise errors.Busy('%d %s already run on the storage host; '
                                  'none ended within %s s'
                                  % (count, what or name, wait), hint=hint)
            time.sleep(0.1)
    finally:
        for fd in fds:
            os.close(fd)


# The kernel's id of the running boot: a new one at every boot.
BOOT_ID = '/proc/sys/kernel/random/boot_id'


def _boot_id():
    with open(BOOT_ID) as f:
        return f.read().strip()


def _boot_marker(directory, name):
    return os.path.join(directory, name + '.boot')


def done_this_boot(directory, name):
    """Whether mark_done_this_boot(directory, name) ran since the boot."""
    try:
        with open(_boot_marker(directory, name)) as f:
            return f.read().strip() == _boot_id()
    except OSError:
        return False


def mark_done_this_boot(directory, name):
    """Record that the work due once per boot is done (atomically)."""
    path = _boot_marker(directory, name)
    tmp = '%s.%d' % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC |
                     os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, 'w') as f:
            f.write(_boot_id() + '\n')
        os.replace(tmp, path)
    except OSError as e:
        raise errors.Unavailable('cannot record the boot in %s' % path,
                                 e.strerror or str(e),
                                 'setup-storage-host.sh creates %s '
                                 '(systemd-tmpfiles).' % directory)
