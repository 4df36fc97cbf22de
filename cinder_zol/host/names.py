"""The only definition of what a name or value may look like.

Dataset names, snapshot names, ZFS properties, iSCSI/NVMe names and CHAP
credentials pass through here on both sides of SSH: the driver checks what
it sends, the storage host checks what it receives. Anything that a shell,
zfs option parsing, tgt-admin or configfs could misread is refused.
"""

import re

from . import errors

# Every pattern is matched against the WHOLE string (re.fullmatch: '$'
# would accept a trailing newline) and uses ASCII classes only ('\\d' would
# accept any Unicode digit): no control character reaches a configuration
# file, a command line or a dataset property.
# One component of a dataset or snapshot name (no '/', '@', spaces).
_COMPONENT = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}')
_PROPERTY = re.compile(r'[a-z][a-z0-9_.:-]{0,254}')
_VALUE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:,+=-]{0,1023}')
_SIZE = re.compile(r'[1-9][0-9]{0,19}')
_IQN = re.compile(r'iqn\.[0-9]{4}-[0-9]{2}\.[A-Za-z0-9][A-Za-z0-9.-]*'
                  r'(:[A-Za-z0-9.:_-]+)?')
_EUI = re.compile(r'eui\.[0-9A-Fa-f]{16}')
_NAA = re.compile(r'naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?')
_NQN = re.compile(r'nqn\.[0-9]{4}-[0-9]{2}\.[A-Za-z0-9][A-Za-z0-9.-]*'
                  r':[A-Za-z0-9.:_-]+')
_MAX_ISCSI_NAME = 223   # RFC 3720
_MAX_NQN = 223          # NVMe base specification
# CHAP credentials end up in tgt config files and LIO configfs: keep them
# to characters no layer interprets.
_CHAP = re.compile(r'[A-Za-z0-9._@+=-]{1,255}')
CHAP_SECRET_MIN_LENGTH = 12   # RFC 3720: at least 96 bits
_SERIAL = re.compile(r'[0-9A-Fa-f][0-9A-Fa-f-]{0,63}')
# Glance's checksum of an image's data, as the image cache records it.
_IMAGE_HASH = re.compile(r'(md5|sha256|sha512):[0-9a-f]{32,128}')


def _fits(pattern, value):
    """``value`` is a str that ``pattern`` matches from end to end."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _refuse(what, value):
    return errors.Refused('%s %r is not allowed' % (what, value))


def component(name, what='name'):
    """A dataset or snapshot name component under the parent."""
    if not _fits(_COMPONENT, name) or '..' in name:
        raise errors.Refused(
            '%s %r is not a safe ZFS name component (letters, digits and '
            '_.:-, not starting with - or ., no "..")' % (what, name))
    return name


def parent(dataset):
    """A parent dataset such as tank/cinder (never a whole pool)."""
    parts = dataset.split('/') if isinstance(dataset, str) else ['']
    if len(parts) < 2 or not all(_fits(_COMPONENT, p) and '..' not in p
                                 for p in parts):
        raise errors.Refused(
            'parent dataset %r is not a plain ZFS dataset name (pool/child, '
            'letters, digits and _.:-)' % (dataset,))
    return dataset


def size(value):
    """A size in bytes, as a decimal string or int; returns the int."""
    text = str(value)
    if not _fits(_SIZE, text):
        raise _refuse('size', value)
    return int(text)


def properties(props):
    """ZFS properties to set; refuses what a parser could misread."""
    if not isinstance(props, dict):
        raise _refuse('properties', props)
    for key, value in props.items():
        if not _fits(_PROPERTY, key) or not _fits(_VALUE, value):
            raise errors.Refused(
                'ZFS property %s=%s is not allowed: names are lower case '
                'letters, digits and _.:-, values letters, digits and '
                '_.:,+=-' % (key, value))
    return props


def iscsi_name(name, what='iSCSI name'):
    if not isinstance(name, str) or len(name) > _MAX_ISCSI_NAME or \
            not any(_fits(p, name) for p in (_IQN, _EUI, _NAA)):
        raise errors.Refused(
            '%s %r is not a valid iSCSI name (iqn.yyyy-mm.reversed.domain'
            '[:id], eui.<16 hex> or naa.<16|32 hex>; no spaces or quotes)'
            % (what, name))
    return name


def nqn(name, what='NQN'):
    if not isinstance(name, str) or len(name) > _MAX_NQN or \
            not _fits(_NQN, name):
        raise errors.Refused(
            '%s %r is not a valid NVMe qualified name '
            '(nqn.yyyy-mm.reversed.domain:id)' % (what, name))
    return name


def chap(credentials):
    """(user, secret) or None; the secret is never echoed."""
    if credentials is None:
        return None
    if not isinstance(credentials, (list, tuple)) or len(credentials) != 2:
        raise errors.Refused('CHAP credentials must be [user, secret]')
    user, secret = credentials
    for what, value in (('CHAP user name', user), ('CHAP secret', secret)):
        if not _fits(_CHAP, value):
            raise errors.Refused('%s may only contain letters, digits and '
                                 '._@+=- (1-255 characters)' % what)
    if len(secret) < CHAP_SECRET_MIN_LENGTH:
        raise errors.Refused('CHAP secret must have at least %d characters '
                             '(RFC 3720)' % CHAP_SECRET_MIN_LENGTH)
    return user, secret


def serial(value):
    """A LUN/namespace serial (hex digits and dashes, e.g. a UUID)."""
    if not _fits(_SERIAL, value):
        raise _refuse('device serial', value)
    return value


def image_hash(value):
    """An image's checksum, 'md5|sha256|sha512:<lower-case hex>'."""
    if not _fits(_IMAGE_HASH, value):
        raise errors.Refused(
            'image hash %r is not algorithm:hex digest (md5, sha256 or '
            'sha512, 32 to 128 lower-case hex digits)' % (value,))
    return value
