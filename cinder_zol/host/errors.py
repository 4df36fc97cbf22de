"""Failures of storage-host operations, as data that crosses SSH.

The host side raises these; the agent writes them as JSON
(``{"kind": ..., "message": ..., "stderr": ..., "hint": ...}``) and the
driver turns each kind into its Cinder exception
(:mod:`cinder_zol.storage`). Stdlib only.
"""


class HostError(Exception):
    """An operation on the storage host failed.

    ``message`` says what failed, ``stderr`` carries the tool's own words
    (zfs, tgtadm, rtslib), ``hint`` what the operator can do about it.
    """

    kind = 'Error'

    def __init__(self, message, stderr='', hint=''):
        super().__init__(message)
        self.message = message
        self.stderr = stderr or ''
        self.hint = hint or ''

    def __str__(self):
        text = self.message
        if self.stderr and self.stderr not in text:
            text += ': ' + self.stderr
        if self.hint:
            text += ' ' + self.hint
        return text

    def to_dict(self):
        return {'kind': self.kind, 'message': self.message,
                'stderr': self.stderr, 'hint': self.hint}


class NotFound(HostError):
    kind = 'NotFound'


class Exists(HostError):
    kind = 'Exists'


class Busy(HostError):
    kind = 'Busy'


class HasDependents(HostError):
    kind = 'HasDependents'


class OutOfSpace(HostError):
    kind = 'OutOfSpace'


class Invalid(HostError):
    """zfs or a target tool rejected a name, property or value."""

    kind = 'Invalid'


class Refused(HostError):
    """The request itself is not allowed (grammar, names, ownership).

    Nothing was run.
    """

    kind = 'Refused'


class NotOwned(HostError):
    """The dataset exists but does not carry cinder_zol:managed."""

    kind = 'NotOwned'


class PermissionDenied(HostError):
    kind = 'PermissionDenied'


class TargetError(HostError):
    kind = 'TargetError'


class Timeout(HostError):
    """A lock or a device did not become available in time."""

    kind = 'Timeout'


class Unavailable(HostError):
    """A tool, module or service the operation needs is missing."""

    kind = 'Unavailable'


KINDS = {cls.kind: cls for cls in (
    HostError, NotFound, Exists, Busy, HasDependents, OutOfSpace, Invalid,
    Refused, NotOwned, PermissionDenied, TargetError, Timeout, Unavailable)}


def from_dict(data):
    cls = KINDS.get(data.get('kind'), HostError)
    return cls(data.get('message') or 'storage host error',
               data.get('stderr', ''), data.get('hint', ''))
