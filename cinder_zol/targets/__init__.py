"""Exports of zvols from the storage host, one module per protocol.

The target helpers are the table of :mod:`cinder_zol.host.helpers`: each
names its protocol (the module here) and the class in it, and
:func:`get_target` builds the target for ``zol_target_helper``.
"""

import importlib

from cinder import exception as cinder_exception
from cinder.i18n import _

from cinder_zol.host import helpers


def get_target(configuration, storage):
    """The target for ``zol_target_helper``."""
    helper = configuration.safe_get('zol_target_helper') or 'tgtadm'
    if helper not in helpers.HELPERS:
        raise cinder_exception.InvalidConfigurationValue(
            _('zol_target_helper must be one of %(h)s, not %(v)r')
            % {'h': ', '.join(sorted(helpers.HELPERS)), 'v': helper})
    entry = helpers.HELPERS[helper]
    module = importlib.import_module('.' + entry.protocol, __name__)
    return getattr(module, entry.target_class)(configuration, storage,
                                               helper)
