"""What the storage host side says: to syslog, and back to the driver.

Notes made while an operation runs travel back in its reply, so the
cinder-volume log tells the same story as the storage host's syslog
(facility authpriv, ident cinder-zol). The syslog module is imported only
when a message is written, to keep each call's start-up short.

Every request leaves one audit line (:func:`audit`): who asked, what, and
how it ended, with secrets masked.
"""

import json
import re

IDENT = 'cinder-zol'
MASK = '***'
# payload keys whose values are never logged (a CHAP pair keeps its user)
_SECRET_KEY = re.compile(r'chap|secret|passw|token|key|auth|cred', re.I)
_notes = []
_syslog_enabled = [False]
_origin = ['request']


def enable_syslog():
    _syslog_enabled[0] = True


def syslog(message, warning=False):
    if not _syslog_enabled[0]:
        return
    import syslog as _syslog
    _syslog.openlog(IDENT, _syslog.LOG_PID, _syslog.LOG_AUTHPRIV)
    _syslog.syslog(_syslog.LOG_WARNING if warning else _syslog.LOG_INFO,
                   message[:2000])


def set_origin(origin):
    """Who sends this process's requests, as every audit line says it."""
    _origin[0] = origin


def audit(argv, payload, outcome, warning=False):
    """The one syslog line of a request: what it asked and how it ended.

    ``outcome`` is 'ok' or what went wrong; ``argv`` and the payload are
    JSON-quoted, so control characters cannot forge a line.
    """
    shown, secrets = masked(payload)
    for secret in secrets:
        outcome = outcome.replace(secret, MASK)
    syslog('%s: %s -> %s; payload %s'
           % (_origin[0], 'unreadable' if argv is None else json.dumps(argv),
              outcome, json.dumps(shown, sort_keys=True)), warning)


def masked(payload):
    """(``payload`` with every secret replaced by MASK, the secrets)."""
    secrets = []

    def mask(key, value):
        if key and _SECRET_KEY.search(key):
            if key == 'chap' and isinstance(value, list) and \
                    len(value) == 2:
                secrets.append(value[1])
                return [value[0], MASK]
            secrets.append(value)
            return MASK
        if isinstance(value, dict):
            return {k: mask(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(None, v) for v in value]
        return value

    return mask(None, payload), [s for s in secrets
                                 if isinstance(s, str) and s]


def note(message):
    """An event worth an INFO line on both sides (not for secrets)."""
    _notes.append(message)
    syslog(message)


def take_notes():
    notes = list(_notes)
    del _notes[:]
    return notes
