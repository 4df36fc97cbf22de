"""What the storage host side says: to syslog, and back to the driver.

Notes made while an operation runs travel back in its reply, so the
cinder-volume log tells the same story as the storage host's syslog
(facility authpriv, ident cinder-zol). The syslog module is imported only
when a message is written, to keep each call's start-up short.
"""

IDENT = 'cinder-zol'
_notes = []
_syslog_enabled = [False]


def enable_syslog():
    _syslog_enabled[0] = True


def syslog(message, warning=False):
    if not _syslog_enabled[0]:
        return
    import syslog as _syslog
    _syslog.openlog(IDENT, _syslog.LOG_PID, _syslog.LOG_AUTHPRIV)
    _syslog.syslog(_syslog.LOG_WARNING if warning else _syslog.LOG_INFO,
                   message[:2000])


def note(message):
    """An event worth an INFO line on both sides (not for secrets)."""
    _notes.append(message)
    syslog(message)


def take_notes():
    notes = list(_notes)
    del _notes[:]
    return notes
