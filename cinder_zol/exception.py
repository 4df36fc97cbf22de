"""Exceptions raised by the command runner, the ZFS host model and targets.

All derive from Cinder's VolumeBackendAPIException, so cinder-volume shows
them to the operator with the storage host's own error text.
"""

from cinder import exception
from cinder.i18n import _


class StorageHostError(exception.VolumeBackendAPIException):
    """Something went wrong talking to the storage host."""


class StorageHostUnreachable(StorageHostError):
    message = _('Cannot reach the ZFS storage host %(host)s:%(port)s: '
                '%(reason)s. Check san_ip, san_ssh_port, san_login and the '
                'credentials (san_private_key or san_password).')


class HostKeyNotTrusted(StorageHostError):
    message = _('The SSH host key of %(host)s (%(key_type)s %(fingerprint)s) '
                'is %(state)s in %(known_hosts)s; refusing to connect. Verify '
                'the key on the storage host (ssh-keygen -lf '
                '/etc/ssh/ssh_host_%(short_type)s_key.pub), then add it with '
                '"ssh-keyscan -p %(port)s %(host)s >> %(known_hosts)s" (or '
                'set zol_ssh_trust_on_first_use = True for a new host).')


class CommandTimeout(StorageHostError):
    message = _('Command "%(cmd)s" on %(host)s did not finish within '
                '%(timeout)s s (zol_ssh_command_timeout).')


class ZfsError(StorageHostError):
    """A zfs command failed; carries zfs's own stderr."""

    message = _('%(action)s failed: %(stderr)s%(hint)s')

    def __init__(self, message=None, **kwargs):
        kwargs.setdefault('hint', '')
        self.stderr = kwargs.get('stderr', '')
        super().__init__(message, **kwargs)


class ZfsNotFound(ZfsError):
    pass


class ZfsBusy(ZfsError):
    pass


class ZfsHasDependents(ZfsError):
    pass


class ZfsOutOfSpace(ZfsError):
    pass


class ZfsInvalid(ZfsError):
    """zfs rejected a name, property or value."""


class ZfsExists(ZfsError):
    pass


class UnsafeName(exception.InvalidInput):
    """A dataset name that could escape the parent or be interpreted."""


class NotOwned(StorageHostError):
    message = _('Dataset %(dataset)s exists but was not created by '
                'cinder-zol (no cinder_zol:managed property); refusing to '
                'touch it. Rename or remove it by hand if it is not needed.')


class TargetError(StorageHostError):
    message = _('iSCSI export of %(volume)s failed: %(reason)s')
