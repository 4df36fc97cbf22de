"""The driver's view of the storage host: one method per host operation.

Every request goes to ``cinder-zol-host`` on the storage host through the
runner (:mod:`cinder_zol.runner`); the host side (:mod:`cinder_zol.host`)
runs it under its own locks and answers with a result or an error kind,
which becomes the matching :mod:`cinder_zol.exception` here. Sizes are
bytes, names are ZFS names (``volume-<id>``), and nothing here knows about
Cinder objects.
"""

import contextlib

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import strutils

from cinder.i18n import _

from cinder_zol import exception
from cinder_zol.host import errors as host_errors
from cinder_zol.host import names
from cinder_zol.host import wire

LOG = logging.getLogger(__name__)

_EXCEPTIONS = {
    'NotFound': exception.ZfsNotFound,
    'Exists': exception.ZfsExists,
    'Busy': exception.ZfsBusy,
    'HasDependents': exception.ZfsHasDependents,
    'OutOfSpace': exception.ZfsOutOfSpace,
    'Invalid': exception.ZfsInvalid,
    'Refused': exception.HostRefused,
    'NotOwned': exception.NotOwned,
    'PermissionDenied': exception.HostPermissionDenied,
    'TargetError': exception.TargetError,
    'Timeout': exception.HostTimeout,
    'Unavailable': exception.HostSetupError,
}


def to_exception(error):
    """A host error dict (or HostError) as the driver's exception."""
    if isinstance(error, host_errors.HostError):
        error = error.to_dict()
    cls = _EXCEPTIONS.get(error.get('kind'), exception.HostOperationFailed)
    what = error.get('message') or _('storage host operation failed')
    return cls(what=what,
               stderr=strutils.mask_password(error.get('stderr') or ''),
               hint=error.get('hint') or '')


class StorageHost(object):
    """Requests to the agent on one storage host, for one parent dataset."""

    def __init__(self, runner, parent, program=wire.PROGRAM):
        self.runner = runner
        self.parent = self.check(names.parent, parent)
        self.program = program

    @staticmethod
    def check(validate, *args):
        """Run a names.* check here, before anything is sent."""
        try:
            return validate(*args)
        except host_errors.Refused as e:
            raise exception.UnsafeName(reason=e.message)

    def call(self, op, *args, payload=None):
        """Send one request; its result dict, or the mapped exception."""
        argv = [op] + [str(a) for a in args]
        line = self.runner.request(self.program, argv, payload or {})
        reply = wire.decode(line)
        if reply is None:
            raise exception.HostOperationFailed(
                what=_('unexpected reply from %(p)s on %(h)s') % {
                    'p': self.program, 'h': self.runner.host},
                stderr=strutils.mask_password(line[:300]))
        return wire.outcome(reply, to_exception, self._note)

    def _note(self, note):
        LOG.info('%(host)s: %(note)s', {'host': self.runner.host,
                                        'note': note})

    # -- information -----------------------------------------------------

    def version(self):
        return self.call('version')

    def check_parent(self):
        """The parent dataset's type and volmode."""
        return self.call('check', self.parent)

    def space(self):
        result = self.call('stats', self.parent)
        return result['used'], result['available']

    def sweep(self):
        return self.call('sweep', self.parent)['actions']

    # -- zvols -----------------------------------------------------------

    def create_volume(self, name, size, sparse, props):
        self.call('create', self.parent, name, size,
                  payload={'sparse': sparse, 'props': props})

    def delete_volume(self, name):
        """'gone', 'destroyed' or the name it is kept under for clones."""
        return self.call('delete', self.parent, name)['result']

    def snapshot(self, name, snapshot):
        self.call('snapshot', self.parent, snapshot, name)

    def delete_snapshot(self, name, snapshot):
        self.call('delete-snapshot', self.parent, name, snapshot)

    def clone_volume(self, source, name, size, wishes):
        """A clone of ``source`` grown to ``size``; wishes: props, sparse."""
        self.call('clone', self.parent, source, name, size, payload=wishes)

    def clone_snapshot(self, source, snapshot, name, size, wishes,
                       snapshot_size=None):
        """A clone of ``source@snapshot`` of ``size`` bytes.

        ``snapshot_size`` (bytes, as Cinder knows it) lets the host refuse
        a clone smaller than its snapshot without reading it first.
        """
        payload = dict(wishes)
        if snapshot_size is not None:
            payload['snapshot_size'] = snapshot_size
        self.call('clone-snapshot', self.parent, source, snapshot, name,
                  size, payload=payload)

    def extend(self, name, size):
        self.call('extend', self.parent, name, size)

    def revert(self, name, snapshot, size, wishes):
        self.call('revert', self.parent, name, snapshot, size,
                  payload=wishes)

    def rename(self, name, new_name):
        self.call('rename', self.parent, name, new_name)

    # -- manage, unmanage, retype ----------------------------------------

    def manageable(self):
        return self.call('manageable', self.parent)['volumes']

    def manage(self, existing, name):
        return self.call('manage', self.parent, existing, name)

    def unmanage(self, name):
        self.call('unmanage', self.parent, name)

    def manage_snapshot(self, name, existing, snapshot):
        return self.call('manage-snapshot', self.parent, name, existing,
                         snapshot)

    def set_props(self, name, props, sparse=None, inherit=()):
        payload = {'props': props, 'inherit': list(inherit)}
        if sparse is not None:
            payload['sparse'] = sparse
        return self.call('set-props', self.parent, name, payload=payload)

    # -- groups ----------------------------------------------------------

    def group_check(self, names_):
        self.call('group-check', self.parent, *names_)

    def group_snapshot(self, pairs):
        """Snapshot [(zvol, snapshot)] at one instant (one zfs command)."""
        self.call('group-snapshot', self.parent,
                  *['%s@%s' % pair for pair in pairs])

    def clone_group(self, clones):
        """Make every clone or none: {new: {source, snapshot, size, ...}}.

        ``snapshot`` None clones the sources as they are now, all at one
        instant.
        """
        self.call('clone-group', self.parent, *sorted(clones),
                  payload={'clones': clones})

    # -- image cache and zvol data ----------------------------------------

    def image_find(self, name):
        return self.call('image-find', self.parent, name)

    def image_begin(self, name, size, payload):
        return self.call('image-begin', self.parent, name, size,
                         payload=payload)['importing']

    def image_commit(self, importing, name, clone=None):
        """'committed' or 'exists'.

        ``clone`` (name, size, props, sparse) also makes that volume from
        the entry, in the same locked step.
        """
        return self.call('image-commit', self.parent, importing, name,
                         payload={'clone': clone} if clone else None)[
                             'result']

    def clone_image(self, name, new, size, wishes, digest):
        """Clone entry ``name`` into ``new`` if it holds ``digest``'s data.

        'cloned', or 'missing'/'stale' with nothing made.
        """
        return self.call('clone-image', self.parent, name, new, size,
                         payload=dict(wishes, hash=digest))['result']

    def image_upload(self, name):
        """A leased point-in-time clone of ``name`` to upload from."""
        return self.call('image-upload', self.parent, name)['temporary']

    def image_drop(self, name):
        """Remove an import or upload clone and end its lease."""
        return self.call('image-drop', self.parent, name)['result']

    def image_evict(self, max_count, max_bytes, keep=None):
        return self.call('image-evict', self.parent, payload={
            'max_count': max_count, 'max_bytes': max_bytes, 'keep': keep})

    def image_purge(self):
        return self.call('image-purge', self.parent)['evicted']

    def write(self, name, chunks):
        """Stream write records (cinder_zol.images) into a zvol."""
        result = self.runner.send_stream([self.program, 'write', self.parent,
                                          name], chunks)
        return self._reply(result.stdout.strip().splitlines()[-1:] or [''],
                           result)

    @contextlib.contextmanager
    def read(self, name):
        """A reader of the zvol's data records (cinder_zol.images)."""
        try:
            with self.runner.receive_stream([self.program, 'read',
                                             self.parent, name]) as reader:
                yield reader
        except processutils.ProcessExecutionError as e:
            raise exception.HostOperationFailed(
                what=_('reading %s from the storage host failed') % name,
                stderr=e.stderr)

    def _reply(self, lines, result):
        reply = wire.decode(lines[0])
        if reply is None:
            raise exception.HostOperationFailed(
                what=_('no reply from %(p)s on %(h)s (exit status %(rc)s)')
                % {'p': self.program, 'h': self.runner.host,
                   'rc': result.exit_code},
                stderr=strutils.mask_password(result.stderr.strip()))
        return wire.outcome(reply, to_exception)

    # -- targets ---------------------------------------------------------

    def target(self, op, name, helper, payload):
        return self.call('target-' + op, self.parent, name, helper,
                         payload=payload)

    def target_version(self, helper):
        return self.call('target-version', helper)
