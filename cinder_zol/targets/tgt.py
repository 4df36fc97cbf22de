"""tgt (tgtd) exports: one persistent config file per volume.

Each export is ``/etc/tgt/conf.d/cinder-zol-<volume name>.conf`` (0600,
written from stdin), applied with ``tgt-admin --update <iqn>`` so it comes
back after a tgtd or host restart (Debian's tgt includes
``/etc/tgt/conf.d/*.conf``). Every operation is ONE remote ``sh -c`` under
the storage host lock; the scripts take their parameters as positional
arguments (no secrets) and config text on stdin.

Access control: tgtd (1.0.83, measured on the lab host) admits an
initiator when its address matches an address ACL OR its name is in the
name ACL, and tgt-admin binds the address ``ALL`` to every target whose
config has no ``initiator-address``. So each config names one address no
initiator can connect from (``255.255.255.255``), a placeholder
``initiator-name`` and the real initiators, which are also added and
removed at runtime (``tgtadm --op bind/unbind --initiator-name``, no
session disruption). After every change the live ACL is read back: ``ALL``
or any other address there is an error, since it admits every initiator.

Resize: tgtd caches the LUN size, so ``refresh_size`` deletes and re-adds
LUN 1 of the live target (same backing store, same scsi_id/scsi_sn) instead
of Cinder's ``tgt-admin --update -f``, which drops every session.
"""

import re

from oslo_log import log as logging

from cinder.i18n import _

from cinder_zol import exception
from cinder_zol.targets import base

LOG = logging.getLogger(__name__)

CONF_DIR = '/etc/tgt/conf.d'
LUN = 1
# Never a real initiator: keeps tgt's name ACL list non-empty.
PLACEHOLDER_INITIATOR = 'iqn.2010-10.org.openstack:cinder-zol.nobody'
# Never a TCP peer: its presence stops tgt-admin from binding ALL.
PLACEHOLDER_ADDRESS = '255.255.255.255'
SHOW_MARK = '@@cinder-zol-tgtadm-show@@'

_TID_AWK = ('awk -v iqn="$iqn" \'$1 == "Target" && $3 == iqn '
            '{sub(":", "", $2); print $2}\'')
_MASK = "sed 's/--password=[^ ]*/--password=***/g'"

_COMMON = r'''
set -u
umask 077
show() { tgtadm --lld iscsi --op show --mode target; }
tid_of() { printf '%%s\n' "$1" | %(tid)s; }
fail() { printf '%%s\n' "$1" | %(mask)s >&2; exit "${2:-1}"; }
''' % {'tid': _TID_AWK, 'mask': _MASK}

# $1 conf file
STATE_SCRIPT = r'''
cat -- "$1" 2>/dev/null
echo '%s'
exec tgtadm --lld iscsi --op show --mode target
''' % SHOW_MARK

# $1 conf  $2 iqn  $3 device  $4 seconds to wait for it; stdin: config text
APPLY_SCRIPT = _COMMON + r'''
conf=$1 iqn=$2 dev=$3 wait=$4
n=0
while [ ! -b "$dev" ]; do
    if [ "$n" -ge $((wait * 10)) ]; then
        echo "device $dev did not appear within $wait s (udev)" >&2
        exit %(missing)d
    fi
    sleep 0.1
    n=$((n + 1))
done
mkdir -p "$(dirname "$conf")" || exit 1
cat > "$conf.new" || exit 1
rm -f "$conf.old"
if [ -e "$conf" ]; then cp -p "$conf" "$conf.old" || exit 1; fi
mv -f "$conf.new" "$conf" || exit 1
if ! out=$(tgt-admin --update "$iqn" 2>&1); then
    if [ -e "$conf.old" ]; then mv -f "$conf.old" "$conf"
    else rm -f "$conf"; fi
    fail "$out"
fi
rm -f "$conf.old"
show
''' % {'missing': base.DEVICE_MISSING_EXIT}

# $1 conf  $2 iqn  $3 CHAP user whose tgtd account to drop, or ""
REMOVE_SCRIPT = _COMMON + r'''
conf=$1 iqn=$2 user=$3
s=$(show) || exit 1
tid=$(tid_of "$s")
if [ -n "$tid" ]; then
    if ! out=$(tgt-admin --delete "$iqn" --force 2>&1); then
        case "$out" in *"can't find the target"*) ;; *) fail "$out" ;; esac
    fi
    s=$(show) || exit 1
    tid=$(tid_of "$s")
    if [ -n "$tid" ]; then
        # tgt-admin --force sometimes fails silently (Cinder bug 1305343)
        tgtadm --lld iscsi --op delete --mode target --tid "$tid" --force \
            || exit 1
    fi
fi
if [ -n "$user" ]; then
    tgtadm --lld iscsi --mode account --op delete --user "$user" \
        >/dev/null 2>&1 || true
fi
rm -f "$conf" "$conf.new" "$conf.old"
'''

# $1 conf  $2 iqn  $3 initiator
ALLOW_SCRIPT = _COMMON + r'''
conf=$1 iqn=$2 ini=$3
[ -e "$conf" ] || fail "$conf does not exist: the volume is not exported" 4
line="    initiator-name $ini"
changed=0
if ! grep -qxF -- "$line" "$conf"; then
    cp -p "$conf" "$conf.old" || exit 1
    awk -v line="$line" '$0 == "</target>" {print line} {print}' "$conf" \
        > "$conf.new" && mv -f "$conf.new" "$conf" || exit 1
    changed=1
fi
undo() {
    if [ "$changed" = 1 ]; then mv -f "$conf.old" "$conf"; fi
    fail "$1"
}
s=$(show) || undo "tgtadm --op show failed"
tid=$(tid_of "$s")
if [ -z "$tid" ]; then
    # tgtd lost the target (restarted): load it from the file
    out=$(tgt-admin --update "$iqn" 2>&1) || undo "$out"
elif ! out=$(tgtadm --lld iscsi --op bind --mode target --tid "$tid" \
        --initiator-name "$ini" 2>&1); then
    case "$out" in *"already exists"*) ;; *) undo "$out" ;; esac
fi
rm -f "$conf.old"
show
'''

# $1 conf  $2 iqn  $3 placeholder  [$4... initiators; none = all]
DENY_SCRIPT = _COMMON + r'''
conf=$1 iqn=$2 keep=$3
shift 3
[ -e "$conf" ] || exit 0
if [ "$#" -eq 0 ]; then
    set -- $(awk -v keep="$keep" \
        '$1 == "initiator-name" && $2 != keep {print $2}' "$conf")
fi
s=$(show) || exit 1
tid=$(tid_of "$s")
for ini in "$@"; do
    [ "$ini" = "$keep" ] && continue
    if [ -n "$tid" ] && ! out=$(tgtadm --lld iscsi --op unbind \
            --mode target --tid "$tid" --initiator-name "$ini" 2>&1); then
        case "$out" in *"does not exist"*) ;; *) fail "$out" ;; esac
    fi
    awk -v line="    initiator-name $ini" '$0 != line' "$conf" \
        > "$conf.new" && mv -f "$conf.new" "$conf" || exit 1
done
show
'''

# $1 iqn  $2 device  $3 scsi id
REFRESH_SCRIPT = _COMMON + r'''
iqn=$1 dev=$2 id=$3
s=$(show) || exit 1
tid=$(tid_of "$s")
[ -n "$tid" ] || exit 0
n=0
until out=$(tgtadm --lld iscsi --op delete --mode logicalunit --tid "$tid" \
        --lun 1 2>&1); do
    case "$out" in *"still active"*) ;; *) fail "$out" ;; esac
    n=$((n + 1))
    [ "$n" -lt 100 ] || fail "$out"
    sleep 0.1
done
if ! out=$(tgtadm --lld iscsi --op new --mode logicalunit --tid "$tid" \
        --lun 1 --backing-store "$dev" 2>&1) ||
   ! out=$(tgtadm --lld iscsi --op update --mode logicalunit --tid "$tid" \
        --lun 1 --params "scsi_id=$id,scsi_sn=$id" 2>&1); then
    # put the LUN back the heavy way (drops sessions) rather than leave
    # the target without it
    tgt-admin --update "$iqn" --force >/dev/null 2>&1
    fail "re-adding LUN 1 failed: $out"
fi
show
'''

CONF_TEMPLATE = """\
# Managed by cinder-zol for volume %(volume_id)s; do not edit.
<target %(iqn)s>
    driver iscsi
    backing-store %(device)s
    scsi_id %(volume_id)s
    scsi_sn %(volume_id)s
%(chap)s    initiator-address %(no_address)s
%(initiators)s</target>
"""

_NAME_PREFIXES = ('iqn.', 'eui.', 'naa.')


def is_initiator_name(acl_entry):
    """An initiator-name ACL entry (as opposed to an address or ALL)."""
    return acl_entry.startswith(_NAME_PREFIXES)


_CONF_INITIATOR_RE = re.compile(r'^\s*initiator-name\s+(\S+)\s*$', re.M)
_CONF_TARGET_RE = re.compile(r'^<target\s+(\S+)>\s*$', re.M)


def parse_show(text):
    """Parse ``tgtadm --op show --mode target`` into {iqn: info}."""
    targets = {}
    current = section = lun = None
    for line in text.splitlines():
        match = re.match(r'^Target (\d+): (\S+)\s*$', line)
        if match:
            current = {'tid': int(match.group(1)), 'luns': {}, 'acls': [],
                       'accounts': [], 'sessions': False}
            targets[match.group(2)] = current
            section = None
            continue
        if current is None:
            continue
        item = line.strip()
        if item.endswith(' information:'):
            section = item[:-len(' information:')]
            continue
        if section == 'I_T nexus' and item.startswith('I_T nexus:'):
            current['sessions'] = True
        elif section == 'LUN':
            match = re.match(r'^LUN: (\d+)$', item)
            if match:
                lun = int(match.group(1))
                current['luns'][lun] = None
            elif item.startswith('Backing store path:') and lun is not None:
                current['luns'][lun] = item.split(':', 1)[1].strip()
        elif section == 'ACL' and item:
            current['acls'].append(item)
        elif section == 'Account' and item:
            current['accounts'].append(item)
    return targets


def render_conf(volume_id, iqn, device, chap, initiators):
    chap_line = '    incominguser %s %s\n' % chap if chap else ''
    names = [PLACEHOLDER_INITIATOR] + [i for i in initiators
                                       if i != PLACEHOLDER_INITIATOR]
    return CONF_TEMPLATE % {
        'volume_id': volume_id, 'iqn': iqn, 'device': device,
        'chap': chap_line, 'no_address': PLACEHOLDER_ADDRESS,
        'initiators': ''.join('    initiator-name %s\n' % base.
                              validate_iscsi_name(i, 'initiator')
                              for i in names)}


def conf_initiators(text, iqn):
    """Initiators listed in our config text for this IQN ([] otherwise)."""
    if not text or _CONF_TARGET_RE.findall(text) != [iqn]:
        return []
    return [name for name in _CONF_INITIATOR_RE.findall(text)
            if name != PLACEHOLDER_INITIATOR]


class TgtTarget(base.ISCSITarget):
    """iSCSI exports through tgtd on the storage host."""

    lun = LUN
    tools = 'tgt (tgtadm, tgt-admin) and util-linux flock'

    def conf_path(self, volume):
        return '%s/cinder-zol-%s.conf' % (CONF_DIR, volume.name)

    def _hint(self, stderr, exit_code):
        if 'tgt daemon' in stderr or "can't connect" in stderr or \
                'Transport endpoint' in stderr:
            return _('is tgtd running? systemctl start tgt')
        return None

    def _sh(self, volume, script, args, input=None):
        return self._run(volume, ['sh', '-c', script, 'sh'] + list(args),
                         input=input)

    def _state(self, volume):
        out = self._sh(volume, STATE_SCRIPT, [self.conf_path(volume)])
        conf, _sep, show = out.stdout.partition(SHOW_MARK + '\n')
        return conf, parse_show(show)

    @staticmethod
    def _problem(live, device, initiators):
        """Why the live target is not what we want, or None."""
        if live is None:
            return _('tgtd does not list the target after tgt-admin '
                     '--update (is /etc/tgt/conf.d included by '
                     '/etc/tgt/targets.conf?)')
        if live['luns'].get(LUN) != device:
            return _('LUN %(lun)d of tid %(tid)s is %(got)s, not %(dev)s') % {
                'lun': LUN, 'tid': live['tid'],
                'got': live['luns'].get(LUN), 'dev': device}
        open_to_all = [a for a in live['acls'] if not is_initiator_name(a)
                       and a != PLACEHOLDER_ADDRESS]
        if open_to_all:
            return _('the target admits initiators by address (%s), which '
                     'tgtd lets in regardless of their name; remove '
                     'initiator-address from its config') % ', '.join(
                         open_to_all)
        missing = [i for i in [PLACEHOLDER_ADDRESS, PLACEHOLDER_INITIATOR] +
                   list(initiators) if i not in live['acls']]
        if missing:
            return _('initiator-name ACL entries %(missing)s are not active '
                     '(ACL: %(acl)s); this tgt-admin may not support '
                     'initiator-name') % {'missing': ', '.join(missing),
                                          'acl': ', '.join(live['acls'])}
        return None

    def _export(self, volume, iqn, device, chap, initiators, state=None):
        conf_text, targets = state or self._state(volume)
        wanted = conf_initiators(conf_text, iqn)
        wanted += [i for i in initiators if i not in wanted]
        text = render_conf(volume.id, iqn, device, chap, wanted)
        live = targets.get(iqn)
        if live and conf_text == text and not self._problem(live, device,
                                                            wanted):
            LOG.debug('Export %s is already in place.', iqn)
            return live['tid']
        try:
            out = self._sh(volume, APPLY_SCRIPT,
                           [self.conf_path(volume), iqn, device,
                            str(self.device_wait_timeout)], input=text)
            live = parse_show(out.stdout).get(iqn)
            problem = self._problem(live, device, wanted)
            if problem:
                raise exception.TargetError(volume=volume.name,
                                            reason=problem)
        except exception.TargetError:
            if iqn not in targets:
                self._rollback(volume, iqn, chap)
            raise
        return live['tid']

    def _rollback(self, volume, iqn, chap):
        LOG.warning('Rolling back the half-made export %s.', iqn)
        try:
            self._remove(volume, iqn, chap)
        except exception.TargetError as e:
            LOG.error('Rollback of export %(iqn)s failed, remove it by '
                      'hand: %(err)s', {'iqn': iqn, 'err': e})

    def _ensure(self, volume, iqn, device, chap, initiators):
        conf_text, targets = state = self._state(volume)
        live = targets.get(iqn)
        if (live and conf_text and
                not self._problem(live, device, [])):
            LOG.debug('ensure_export: %s is in place.', iqn)
            return
        LOG.info('ensure_export: recreating export %s.', iqn)
        self._export(volume, iqn, device, chap, initiators, state=state)

    def _account_to_drop(self, chap):
        """Per-volume CHAP user whose tgtd account can go with the target."""
        if not chap or chap[0] == self._conf('chap_username'):
            return ''
        return chap[0]

    def _remove(self, volume, iqn, chap=None):
        if chap is None:
            try:
                chap = base.parse_provider_auth(volume.provider_auth)
            except Exception:
                chap = None
        self._sh(volume, REMOVE_SCRIPT,
                 [self.conf_path(volume), iqn, self._account_to_drop(chap)])

    def _allow(self, volume, iqn, initiator, chap):
        out = self._sh(volume, ALLOW_SCRIPT,
                       [self.conf_path(volume), iqn, initiator])
        live = parse_show(out.stdout).get(iqn)
        if live is None or initiator not in live['acls']:
            raise exception.TargetError(
                volume=volume.name,
                reason=_('initiator %(ini)s is not in the ACL of %(iqn)s '
                         'after binding it') % {'ini': initiator,
                                                'iqn': iqn})

    def _deny(self, volume, iqn, initiators):
        args = [self.conf_path(volume), iqn, PLACEHOLDER_INITIATOR]
        self._sh(volume, DENY_SCRIPT, args + list(initiators or []))

    def _refresh_size(self, volume, iqn, device):
        self._sh(volume, REFRESH_SCRIPT, [iqn, device, volume.id])
