#!/bin/bash
# Prepare a Debian 12 ZFS-on-Linux host as a cinder-zol storage host.
#
# This is the operator recipe, and the lab runs exactly this script in its
# guest (piped over ssh: `ssh root@host bash -s -- POOL PARENT DEVICE < setup-storage-host.sh`).
#
# Prerequisites on the storage host (Debian 12, apt sources with "main contrib"):
#   apt-get install linux-headers-amd64 zfs-dkms zfsutils-linux \
#       tgt targetcli-fb python3-rtslib-fb open-iscsi sg3-utils
#   and an ssh key for the cinder-volume service in ~root/.ssh/authorized_keys.
#
# Usage: setup-storage-host.sh [POOL [PARENT_DATASET [DEVICE...]]]
#   POOL            zpool to use/create            (default: tank)
#   PARENT_DATASET  dataset that holds the volumes (default: POOL/cinder)
#   DEVICE...       vdevs for a new pool           (default: /dev/vdb)
# An existing pool is used as is (never re-created); every step is idempotent.
#
# The two iSCSI target stacks, tgt (target_helper=tgtadm) and LIO
# (target_helper=lioadm), both listen on port 3260: run only one. This script
# checks both can be used and starts neither; to choose:
#   tgt:  targetcli clearconfig confirm=True; systemctl enable --now tgt
#   LIO:  systemctl disable --now tgt
#         modprobe -a target_core_mod iscsi_target_mod target_core_iblock
set -euo pipefail

POOL=${1:-tank}
PARENT=${2:-$POOL/cinder}
shift $(( $# > 2 ? 2 : $# ))
DEVICES=("$@")
[ ${#DEVICES[@]} -gt 0 ] || DEVICES=(/dev/vdb)

say() { echo "setup-storage-host: $*"; }

# 1. ZFS kernel module (built by zfs-dkms for the running kernel)
modprobe zfs
say "zfs $(cat /sys/module/zfs/version)"

# 2. the pool
if zpool list -H -o name "$POOL" >/dev/null 2>&1; then
    say "pool $POOL exists"
else
    say "creating pool $POOL on ${DEVICES[*]}"
    zpool create -f -o ashift=12 "$POOL" "${DEVICES[@]}"
fi

# 3. the parent dataset for cinder volumes
if zfs list -H -o name "$PARENT" >/dev/null 2>&1; then
    say "dataset $PARENT exists"
else
    say "creating dataset $PARENT"
    zfs create -p "$PARENT"
fi

# 4. iSCSI target stacks: both present and startable, neither forced on
command -v tgtadm >/dev/null || { say "tgt is not installed"; exit 1; }
if [ "$(systemctl is-enabled tgt.service 2>/dev/null || true)" = masked ]; then
    systemctl unmask tgt.service
fi
systemctl cat tgt.service >/dev/null
command -v targetcli >/dev/null || { say "targetcli-fb is not installed"; exit 1; }
for m in target_core_mod iscsi_target_mod target_core_iblock; do
    modinfo "$m" >/dev/null || { say "kernel module $m missing"; exit 1; }
done
# zvol device nodes come from udev
command -v udevadm >/dev/null && udevadm settle || true

say "ready: pool $POOL, parent $PARENT"
zpool list "$POOL"
