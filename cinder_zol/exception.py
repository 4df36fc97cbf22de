"""Exceptions of the runner, the storage host and the target helpers.

All derive from Cinder's VolumeBackendAPIException, so cinder-volume shows
them to the operator with the storage host's own error text (zfs's stderr,
tgtadm's, rtslib's) and a hint of what to do.
"""

from cinder import exception
from cinder.i18n import _


class StorageHostError(exception.VolumeBackendAPIException):
    """Something went wrong talking to the storage host."""


class StorageHostUnreachable(StorageHostError):
    message = _('Cannot reach the ZFS storage host %(host)s:%(port)s: '
                '%(reason)s. Check san_ip, san_ssh_port, san_login and the '
                'credentials (san_private_key or san_password).')


class StorageHostConnectionLost(StorageHostUnreachable):
    """The connection dropped while an operation was running there."""

    message = _('Lost the connection to the ZFS storage host '
                '%(host)s:%(port)s in the middle of "%(cmd)s": %(reason)s. '
                'The operation may or may not have completed on the storage '
                'host. Retry it (a retried delete, or deleting the errored '
                'volume or snapshot, cleans up what a half-done operation '
                'left); if it keeps failing, check why the connection '
                'dropped (the storage host rebooted, sshd restarted, the '
                'network) and the state under the parent dataset (zfs list '
                '-t all -r).')


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


class HostOperationFailed(StorageHostError):
    """An operation on the storage host failed; carries the tool's words."""

    message = _('%(what)s%(stderr)s%(hint)s')

    def __init__(self, message=None, **kwargs):
        self.stderr = kwargs.get('stderr') or ''
        kwargs['stderr'] = ': ' + self.stderr if self.stderr else ''
        kwargs['hint'] = ' ' + kwargs['hint'] if kwargs.get('hint') else ''
        kwargs.setdefault('what', _('storage host operation failed'))
        super().__init__(message, **kwargs)


class ZfsError(HostOperationFailed):
    """A zfs command failed."""


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


class NotOwned(HostOperationFailed):
    """A dataset without cinder_zol:managed: never touched."""


class HostRefused(HostOperationFailed):
    """The storage host refused the request before running anything."""


class HostPermissionDenied(HostOperationFailed):
    """The storage host account lacks a permission (zfs allow, sudo)."""


class HostSetupError(HostOperationFailed):
    """A tool, file or service the storage host needs is missing."""


class HostTimeout(HostOperationFailed):
    """A lock or device on the storage host was not available in time."""


class TargetError(HostOperationFailed):
    """Exporting or unexporting a volume failed."""


class UnsafeName(exception.InvalidInput):
    """A dataset name that could escape the parent or be interpreted."""
