#!/bin/bash
# Make a Debian ZFS-on-Linux server a cinder-zol storage host.
#
# The operator recipe; the lab runs exactly this script in its guest. Run it
# as root on the storage host from a copy of the cinder_zol/host directory
# (python3 -m cinder_zol.host.bundle writes a self-contained installer that
# does that), e.g. from a cinder-volume host:
#
#   python3 -m cinder_zol.host.bundle | ssh root@storage bash -s -- \
#       --dataset tank/cinder --authorized-key "$(cat cinder-volume.pub)"
#
# Prerequisites (Debian 12 or 13, apt sources with "main contrib"):
#   apt-get install linux-headers-amd64 zfs-dkms zfsutils-linux python3 sudo \
#       tgt targetcli-fb python3-rtslib-fb libpam-systemd
#
# Least privilege (default): the driver logs in as an unprivileged account
# (--user, default cinder-zol) whose key sshd forces to run
# /usr/libexec/cinder-zol/cinder-zol-host --ssh-wrapper (a fixed grammar of
# requests, no shell, no forwarding, no pty). zfs runs as that account with
# `zfs allow` on the parent dataset only; target changes and zvol data go
# through one root helper, the only command sudo allows it.
# --root instead keeps the driver logging in as root (labs).
#
# The pool is shared: the driver's key cannot take it all nor change it.
# - The parent dataset gets a zfs quota (the account cannot change it): all
#   volumes, snapshots and image cache entries below it together take at
#   most that much. By default (on a parent without a quota yet) it is the
#   pool's usable size less --pool-reserve percent, which stays free for
#   the pool's other datasets and for ZFS itself; --quota sets it outright
#   (e.g. 500G, or none). An existing quota is kept unless one is given.
# - Property values that change pool-wide state are refused unless
#   --pool-feature enables them (host.conf pool_features): dedup (any value
#   but off), checksum sha512/skein/edonr/blake3, compression zstd*
#   (zstd_compress) and volblocksize above 128K (large_blocks). Once used,
#   such a feature stays active and older OpenZFS cannot import the pool.
# - Every zvol is made volmode=dev (no partition devices), a udev rule
#   keeps blkid and the persistent-storage links off zvols (zd*), and LVM
#   ignores /dev/zd*: nothing on the host probes, mounts or activates what
#   tenants write. The /dev/zvol/... links of OpenZFS stay. The parent is
#   volmode=dev too (unless zvols without a volmode of their own already
#   live there): OpenZFS makes the device of a zvol whose volmode differs
#   from what it inherits, removes it and makes it again, and its
#   /dev/zvol link vanishes for a moment after it first appeared.
# - Memory and tasks of the account's processes (user-UID.slice, the root
#   helper's data streams included) are bounded.
#
# Options:
#   --pool NAME            zpool to use or create                (tank)
#   --dataset DATASET      parent dataset for the volumes        (POOL/cinder)
#   --device DEV           vdev for a new pool (repeat)          (/dev/vdb)
#   --user NAME            the driver's account                  (cinder-zol)
#   --authorized-key KEY   public key line of the cinder-volume hosts
#   --key-from PATTERNS    restrict that key to these client addresses
#   --root                 no account: the driver logs in as root
#   --target-helper H      target started at boot: tgtadm or lioadm (tgtadm)
#   --properties LIST      extra zfs properties volume types may set
#   --quota SIZE           quota of the parent dataset, or none
#                          (default: the pool less --pool-reserve)
#   --pool-reserve PCT     percent of the pool kept out of the default
#                          quota                                  (20)
#   --pool-feature F       allow properties that activate F: dedup, zstd,
#                          large_blocks, sha512, skein, edonr, blake3
#                          (repeat; default none)
#   --target-port PORT     a TCP port targets may listen on (repeat;
#                          default 3260 for tgt/LIO, and 4420 with nvmet)
#   --max-streams N        zvol data streams the root helper runs at once (4)
#   --memory-max SIZE      MemoryMax of the account's user slice   (2G)
#   --tasks-max N          TasksMax of the account's user slice    (512)
# Every step is idempotent; an existing pool is used as is.
set -euo pipefail

SOURCE=$(cd "$(dirname "$0")" && pwd)
POOL=tank
PARENT=
DEVICES=()
USER_NAME=cinder-zol
AUTH_KEY=
KEY_FROM=
ROOT_MODE=0
HELPER=tgtadm
EXTRA_PROPS=
QUOTA=
POOL_RESERVE=20
FEATURES=()
PORTS=()
MAX_STREAMS=4
MEMORY_MAX=2G
TASKS_MAX=512

while [ $# -gt 0 ]; do
    case "$1" in
        --pool) POOL=$2; shift 2 ;;
        --dataset) PARENT=$2; shift 2 ;;
        --device) DEVICES+=("$2"); shift 2 ;;
        --user) USER_NAME=$2; shift 2 ;;
        --authorized-key) AUTH_KEY=$2; shift 2 ;;
        --key-from) KEY_FROM=$2; shift 2 ;;
        --root) ROOT_MODE=1; shift ;;
        --target-helper) HELPER=$2; shift 2 ;;
        --properties) EXTRA_PROPS=$2; shift 2 ;;
        --quota) QUOTA=$2; shift 2 ;;
        --pool-reserve) POOL_RESERVE=$2; shift 2 ;;
        --pool-feature) FEATURES+=("$2"); shift 2 ;;
        --target-port) PORTS+=("$2"); shift 2 ;;
        --max-streams) MAX_STREAMS=$2; shift 2 ;;
        --memory-max) MEMORY_MAX=$2; shift 2 ;;
        --tasks-max) TASKS_MAX=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup-storage-host: unknown option $1" >&2; exit 2 ;;
    esac
done
PARENT=${PARENT:-$POOL/cinder}
[ ${#DEVICES[@]} -gt 0 ] || DEVICES=(/dev/vdb)
case "$HELPER" in tgtadm|lioadm) ;; *)
    echo "setup-storage-host: --target-helper must be tgtadm or lioadm" >&2; exit 2 ;;
esac
[[ "$USER_NAME" =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || {
    echo "setup-storage-host: bad --user $USER_NAME" >&2; exit 2; }
[[ "$PARENT" =~ ^[A-Za-z0-9][A-Za-z0-9_.:-]*(/[A-Za-z0-9][A-Za-z0-9_.:-]*)+$ ]] || {
    echo "setup-storage-host: bad --dataset $PARENT" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "setup-storage-host: run as root" >&2; exit 2; }
bad() { echo "setup-storage-host: bad $1" >&2; exit 2; }
[[ -z "$QUOTA" || "$QUOTA" = none || "$QUOTA" =~ ^[0-9]+[KMGTP]?$ ]] || bad "--quota $QUOTA"
[[ "$POOL_RESERVE" =~ ^[0-9]{1,2}$ ]] || bad "--pool-reserve $POOL_RESERVE (0-99)"
for f in ${FEATURES[@]+"${FEATURES[@]}"}; do
    case "$f" in dedup|zstd|large_blocks|sha512|skein|edonr|blake3) ;;
        *) bad "--pool-feature $f" ;; esac
done
for p in ${PORTS[@]+"${PORTS[@]}"}; do
    [[ "$p" =~ ^[1-9][0-9]{0,4}$ && "$p" -le 65535 ]] || bad "--target-port $p"
done
[[ "$MAX_STREAMS" =~ ^[1-9][0-9]{0,2}$ ]] || bad "--max-streams $MAX_STREAMS"
[[ "$MEMORY_MAX" =~ ^[1-9][0-9]*[KMGT]?$ ]] || bad "--memory-max $MEMORY_MAX"
[[ "$TASKS_MAX" =~ ^[1-9][0-9]*$ ]] || bad "--tasks-max $TASKS_MAX"

say() { echo "setup-storage-host: $*"; }
LIB=/usr/lib/cinder-zol
LIBEXEC=/usr/libexec/cinder-zol
# zfs permissions of the driver's account: on the parent itself only what
# creating children needs; on everything below it what the driver does.
LOCAL_PERMS=create,mount
DESCENDANT_PERMS=destroy,mount,snapshot,clone,promote,rename,rollback,userprop,volsize,refreservation
# properties a volume type may set (zfs:<prop> extra specs); must match
# cinder_zol/host/props.py REQUESTABLE, FIXED (tests/unit/test_setup_allow_list.py)
PROPS=volblocksize,compression,sync,logbias,primarycache,secondarycache,copies,checksum,dedup,redundant_metadata,snapdev,volmode
[ -z "$EXTRA_PROPS" ] || PROPS=$PROPS,$EXTRA_PROPS

# 1. ZFS, the pool and the parent dataset ---------------------------------
modprobe zfs
say "zfs $(cat /sys/module/zfs/version)"
if zpool list -H -o name "$POOL" >/dev/null 2>&1; then
    say "pool $POOL exists"
else
    say "creating pool $POOL on ${DEVICES[*]}"
    zpool create -f -o ashift=12 "$POOL" "${DEVICES[@]}"
fi
if zfs list -H -o name "$PARENT" >/dev/null 2>&1; then
    say "dataset $PARENT exists"
else
    say "creating dataset $PARENT"
    zfs create -p "$PARENT"
fi
# the parent's share of the pool (the model above)
if [ -z "$QUOTA" ] && [ "$(zfs get -H -p -o value quota "$PARENT")" = 0 ]; then
    pool_size=$(( $(zfs get -H -p -o value used "$POOL") +
                  $(zfs get -H -p -o value available "$POOL") ))
    QUOTA=$(( pool_size / 100 * (100 - POOL_RESERVE) ))
fi
if [ -n "$QUOTA" ] && ! zfs set quota="$QUOTA" "$PARENT"; then
    echo "setup-storage-host: cannot set quota=$QUOTA on $PARENT (below what it uses?); give --quota" >&2
    exit 1
fi
say "quota of $PARENT: $(zfs get -H -o value quota "$PARENT") (pool $POOL: $(zfs get -H -o value available "$POOL") free)"
# one device event per new zvol (the model above); not when zvols below
# take their volmode from above: that would change theirs
if [ "$(zfs get -H -o value volmode "$PARENT")" = dev ]; then
    :
elif zfs get -H -r -t volume -o source volmode "$PARENT" | grep -Eqv '^(local|received)$'; then
    say "WARNING: zvols below $PARENT take their volmode from above; its volmode left as it is (every new zvol's device appears twice)"
else
    zfs set volmode=dev "$PARENT"
fi

# 2. the host component ------------------------------------------------------
for f in "$SOURCE"/*.py "$SOURCE"/root/*.py; do [ -e "$f" ] || { say "no *.py and root/*.py next to $0"; exit 1; }; done
install -d -m 0755 -o root -g root "$LIB" "$LIB/cinder_zol_host" "$LIBEXEC"
rm -rf "$LIB/cinder_zol_host"/*
install -d -m 0755 -o root -g root "$LIB/cinder_zol_host/root"
install -m 0644 -o root -g root "$SOURCE"/*.py "$LIB/cinder_zol_host/"
install -m 0644 -o root -g root "$SOURCE"/root/*.py "$LIB/cinder_zol_host/root/"
python3 -m compileall -q "$LIB/cinder_zol_host"
launcher() {  # launcher NAME MODULE
    cat >"$LIBEXEC/$1.new" <<EOF
#!/usr/bin/python3 -I
# cinder-zol storage host component (installed by setup-storage-host.sh)
import sys
sys.path.insert(0, '$LIB')
from cinder_zol_host.$2 import main
sys.exit(main())
EOF
    chmod 0755 "$LIBEXEC/$1.new"
    mv -f "$LIBEXEC/$1.new" "$LIBEXEC/$1"
}
launcher cinder-zol-host agent
launcher cinder-zol-target root.main
say "installed $LIBEXEC/cinder-zol-host and cinder-zol-target"

# 3. what this host lets the driver use -------------------------------------
helpers_table() {  # helpers_table installed | ports HELPER...: helpers.py
    python3 -I -c 'import sys; sys.path.insert(0, sys.argv[1])
from cinder_zol_host import helpers
sys.exit(helpers.main(sys.argv[2:]))' "$LIB" "$@"
}
# the target helpers installed here, and (without --target-port) their ports
found=$(helpers_table installed)
read -r -a helpers <<<"$found"
if [ ${#PORTS[@]} = 0 ]; then
    found=$(helpers_table ports "${helpers[@]}")
    read -r -a PORTS <<<"$found"
fi
agent_user=$USER_NAME
[ "$ROOT_MODE" = 1 ] && agent_user=root
if [ "$ROOT_MODE" = 0 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "/var/lib/$USER_NAME" \
        --shell /bin/sh --comment "cinder-zol driver" "$USER_NAME"
fi
install -d -m 0755 /etc/cinder-zol
cat >/etc/cinder-zol/host.conf.new <<EOF
# cinder-zol storage host configuration (setup-storage-host.sh)
# parent datasets the driver may manage
datasets = $PARENT
# target helpers the root helper may drive
target_helpers = ${helpers[*]}
# account the driver logs in as
user = $agent_user
# TCP ports targets may listen on (--target-port)
target_ports = ${PORTS[*]}
# zvol data streams the root helper runs at once (--max-streams)
max_streams = $MAX_STREAMS
# pool features that zfs properties may activate (--pool-feature)
pool_features = ${FEATURES[*]}
EOF
mv -f /etc/cinder-zol/host.conf.new /etc/cinder-zol/host.conf
cat >/etc/tmpfiles.d/cinder-zol.conf <<EOF
# cinder-zol: the agent's dependency locks, and the root helper's own
d /run/cinder-zol 0700 $agent_user $agent_user -
d /run/cinder-zol-target 0700 root root -
EOF
systemd-tmpfiles --create /etc/tmpfiles.d/cinder-zol.conf

# 3b. what tenants write stays opaque to the host ---------------------------
# zvols are volmode=dev (no partition devices). No blkid either: no
# /dev/disk/by-label|by-uuid links from tenant data, so no LVM, md or
# btrfs rule sees a signature to act on. 60-zvol.rules of OpenZFS (the
# /dev/zvol/... links, zvol_id) does not look at this flag.
cat >/etc/udev/rules.d/59-cinder-zol-zvol.rules <<'EOF'
# cinder-zol (setup-storage-host.sh): never probe what tenants write into zvols
KERNEL=="zd*", SUBSYSTEM=="block", ENV{UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG}="1"
EOF
command -v udevadm >/dev/null && udevadm control --reload || true
# LVM's own scans (boot-time activation, pvscan) skip zvols as well
ZD_FILTER='"r|^/dev/zd.*|"'
if command -v lvmconfig >/dev/null; then
    filter=$(lvmconfig devices/global_filter 2>/dev/null || true)
    if [ -z "$filter" ]; then
        cat >>/etc/lvm/lvmlocal.conf <<EOF
# cinder-zol (setup-storage-host.sh): LVM never scans zvols
devices {
    global_filter = [ $ZD_FILTER ]
}
EOF
        say "LVM: global_filter = [ $ZD_FILTER ] (/etc/lvm/lvmlocal.conf)"
    elif [[ "$filter" != *'/dev/zd'* ]]; then
        say "WARNING: LVM has its own $filter: add $ZD_FILTER to it first"
    fi
else
    say "no LVM here; if it is installed later, set devices/global_filter = [ $ZD_FILTER ]"
fi

# 4. the driver's account (least privilege) ---------------------------------
if [ "$ROOT_MODE" = 0 ]; then
    # '*' (no password) rather than '!' (locked): sshd refuses locked
    # accounts even for key logins
    usermod -p '*' "$USER_NAME"
    zfs allow -l -u "$USER_NAME" "$LOCAL_PERMS" "$PARENT"
    zfs allow -d -u "$USER_NAME" "$DESCENDANT_PERMS,$PROPS" "$PARENT"
    say "zfs allow on $PARENT for $USER_NAME: $LOCAL_PERMS (the parent), $DESCENDANT_PERMS,$PROPS (below it)"
    cat >/etc/sudoers.d/cinder-zol.new <<EOF
# cinder-zol: the driver's account may run the root helper, nothing else.
# The helper re-checks every argument (sudo cannot see argv boundaries).
Defaults:$USER_NAME !requiretty, env_reset
$USER_NAME ALL=(root) NOPASSWD: $LIBEXEC/cinder-zol-target ^(session|(write|read) [A-Za-z0-9][A-Za-z0-9_.\:/-]* [A-Za-z0-9][A-Za-z0-9_.\:-]*)\$
EOF
    chmod 0440 /etc/sudoers.d/cinder-zol.new
    visudo -cq -f /etc/sudoers.d/cinder-zol.new
    mv -f /etc/sudoers.d/cinder-zol.new /etc/sudoers.d/cinder-zol
    install -d -m 0755 -o root -g root /etc/ssh/authorized_keys
    if [ -n "$AUTH_KEY" ]; then
        opts=restrict
        [ -z "$KEY_FROM" ] || opts="restrict,from=\"$KEY_FROM\""
        printf '%s %s\n' "$opts" "$AUTH_KEY" >"/etc/ssh/authorized_keys/$USER_NAME"
        chmod 0644 "/etc/ssh/authorized_keys/$USER_NAME"
    fi
    [ -s "/etc/ssh/authorized_keys/$USER_NAME" ] ||
        say "WARNING: no key in /etc/ssh/authorized_keys/$USER_NAME yet (--authorized-key)"
    if [ -n "$AUTH_KEY" ] && [ -z "$KEY_FROM" ]; then
        cat >&2 <<EOF
setup-storage-host: WARNING: --key-from was not given: the driver's key
setup-storage-host: WARNING: works from ANY address. Restrict it to the
setup-storage-host: WARNING: cinder-volume hosts, e.g. --key-from 192.0.2.10,192.0.2.11
EOF
    fi
    # what the account's processes may hold (the root helper's zvol data
    # streams run in its session too): a bound, not a budget
    uid=$(id -u "$USER_NAME")
    mkdir -p "/etc/systemd/system/user-$uid.slice.d"
    cat >"/etc/systemd/system/user-$uid.slice.d/cinder-zol.conf" <<EOF
# cinder-zol (setup-storage-host.sh --memory-max, --tasks-max)
[Slice]
MemoryMax=$MEMORY_MAX
TasksMax=$TASKS_MAX
EOF
    systemctl daemon-reload
    systemctl set-property --runtime "user-$uid.slice" MemoryMax="$MEMORY_MAX" TasksMax="$TASKS_MAX" 2>/dev/null || true
    say "user-$uid.slice of $USER_NAME: MemoryMax=$MEMORY_MAX TasksMax=$TASKS_MAX"
    # only logind puts an SSH login into its user slice
    grep -qs pam_systemd /etc/pam.d/common-session ||
        say "WARNING: no pam_systemd (libpam-systemd): SSH logins of $USER_NAME stay in ssh.service and these bounds do not apply"
    cat >/etc/ssh/sshd_config.d/cinder-zol.conf <<EOF
# cinder-zol: the driver's key may only talk to the agent.
Match User $USER_NAME
    AuthorizedKeysFile /etc/ssh/authorized_keys/%u
    ForceCommand $LIBEXEC/cinder-zol-host --ssh-wrapper
    DisableForwarding yes
    PermitTTY no
    PermitUserRC no
Match all
EOF
    sshd -t
    systemctl reload ssh 2>/dev/null || systemctl reload sshd
    say "account $USER_NAME: forced command, sudo for the root helper only"
else
    rm -f /etc/ssh/sshd_config.d/cinder-zol.conf /etc/sudoers.d/cinder-zol
    say "root mode: the driver logs in as root"
fi

# 5. targets come back after a reboot: after the zvol links, from config ----
# tgtd listens on 3260 only: the ports of other portals (multipath with a
# port per portal) are recorded in the exports' configs by the root helper
# and reopened after tgtd starts.
cat >"$LIBEXEC/cinder-zol-tgt-portals.new" <<'EOF'
#!/bin/sh
# cinder-zol: make tgtd listen on the ports its exports' portals use
# (recorded in /etc/tgt/conf.d/cinder-zol-*.conf); run by tgt.service.
for port in $(sed -n 's/^# cinder-zol listens on port \([0-9]*\)$/\1/p' \
        /etc/tgt/conf.d/cinder-zol-*.conf 2>/dev/null | sort -un); do
    tgtadm --lld iscsi --mode portal --op show | grep -q ":$port," ||
        tgtadm --lld iscsi --mode portal --op new \
            --params "portal=0.0.0.0:$port" ||
        echo "cinder-zol: tgtd cannot listen on port $port" >&2
done
exit 0
EOF
chmod 0755 "$LIBEXEC/cinder-zol-tgt-portals.new"
mv -f "$LIBEXEC/cinder-zol-tgt-portals.new" "$LIBEXEC/cinder-zol-tgt-portals"
for unit in tgt.service rtslib-fb-targetctl.service; do
    if systemctl cat "$unit" >/dev/null 2>&1; then
        mkdir -p "/etc/systemd/system/$unit.d"
        cat >"/etc/systemd/system/$unit.d/cinder-zol.conf" <<EOF
[Unit]
# exports need their /dev/zvol links
After=zfs-volumes.target
Wants=zfs-volumes.target
EOF
        [ "$unit" != tgt.service ] ||
            cat >>"/etc/systemd/system/$unit.d/cinder-zol.conf" <<EOF
[Service]
# the ports of the exports' portals (multipath)
ExecStartPost=$LIBEXEC/cinder-zol-tgt-portals
EOF
    fi
done
# nvmet keeps no configuration: the root helper records each export in
# /var/lib/cinder-zol-target and re-creates them at boot, with or without a
# cinder-volume running (tgt and LIO load their own configuration)
cat >/etc/systemd/system/cinder-zol-target-restore.service <<EOF
[Unit]
Description=cinder-zol: re-create the recorded nvmet exports
After=zfs-volumes.target sys-kernel-config.mount network-online.target
Wants=zfs-volumes.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$LIBEXEC/cinder-zol-target restore

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable cinder-zol-target-restore.service >/dev/null 2>&1
systemctl enable zfs-volume-wait.service zfs-volumes.target >/dev/null 2>&1 || true
# tgt and LIO both listen on port 3260: only one starts at boot
if [ "$HELPER" = tgtadm ]; then
    systemctl enable tgt.service >/dev/null 2>&1
else
    systemctl disable tgt.service >/dev/null 2>&1 || true
    systemctl enable rtslib-fb-targetctl.service >/dev/null 2>&1 || true
fi
command -v udevadm >/dev/null && udevadm settle || true

"$LIBEXEC/cinder-zol-host" version >/dev/null
say "ready: pool $POOL, parent $PARENT, target helpers: ${helpers[*]} ($HELPER at boot)"
