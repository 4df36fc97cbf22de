#!/bin/bash
# Build the cinder-zol lab guest: a Debian ZFS-on-Linux storage host (OpenZFS
# via zfs-dkms from contrib, tgt, LIO/targetcli, open-iscsi, nvme-cli)
# bootable under QEMU.
#
# Debian packages only, no loop mounts (the root disk is made by mkfs.ext4 -d).
# Run as root on a Debian 12 host with the packages in host-packages.txt.
#
# Usage: build-image.sh [--suite trixie|bookworm] [--zfs suite|backports]
#                       OUT_DIR [CACHE_DIR]
#   --suite    Debian release of the guest (default trixie: Debian 13)
#   --zfs      where zfs-dkms/zfsutils-linux come from: the release's contrib
#              (default) or its backports (trixie-backports: OpenZFS 2.4);
#              the kernel always comes from the release itself
#   OUT_DIR    final image directory; must not exist. It is created atomically
#              (built in a temp dir under CACHE_DIR, renamed on success) and holds:
#                vmlinuz initrd.img root.img kernel-version
#                id_ed25519 id_ed25519.pub      (client key for the driver, 0600)
#                ssh_host_ed25519_key.pub        (guest host key, for known_hosts)
#                zfs-version build-info
#   CACHE_DIR  default: dirname OUT_DIR. Holds the .deb caches and the log.
# Environment:
#   CINDER_ZOL_LAB_LOG     log file (default CACHE_DIR/build-image.log)
#   CINDER_ZOL_LAB_MIRROR  Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail

SUITE=trixie
ZFS_FROM=suite
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) SUITE=$2; shift 2 ;;
        --zfs) ZFS_FROM=$2; shift 2 ;;
        *) break ;;
    esac
done
case "$SUITE" in bookworm|trixie) ;; *)
    echo "build-image.sh: --suite must be bookworm or trixie" >&2; exit 2 ;;
esac
case "$ZFS_FROM" in suite|backports) ;; *)
    echo "build-image.sh: --zfs must be suite or backports" >&2; exit 2 ;;
esac
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 [--suite S] [--zfs suite|backports] OUT_DIR [CACHE_DIR]" >&2
    exit 2
fi
OUT_DIR=$(realpath -m "$1")
CACHE_DIR=$(realpath -m "${2:-$(dirname "$OUT_DIR")}")
LOG=${CINDER_ZOL_LAB_LOG:-$CACHE_DIR/build-image.log}
MIRROR=${CINDER_ZOL_LAB_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${MIRROR%/debian}/debian-security
NSTEPS=8

if [ "$(id -u)" != 0 ]; then
    echo "build-image.sh: must run as root (debootstrap, chroot, mounts)" >&2
    exit 2
fi
if [ -e "$OUT_DIR" ]; then
    echo "build-image.sh: $OUT_DIR already exists" >&2
    exit 2
fi
missing=()
for tool in debootstrap mkfs.ext4 ssh-keygen chroot mount umount findmnt; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "build-image.sh: missing host tools: ${missing[*]}" >&2
    echo "  install the packages listed in $(dirname "$(realpath "$0")")/host-packages.txt" >&2
    exit 2
fi

DEBS=$CACHE_DIR/debootstrap-debs-$SUITE
mkdir -p "$CACHE_DIR" "$DEBS" "$CACHE_DIR/apt-archives/partial"
WORK=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
ROOT=$WORK/rootfs
OUT=$WORK/out
mkdir -p "$ROOT" "$OUT"
: >"$LOG"

T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }

# ---------------------------------------------------------------- mounts ---
MOUNTS=()   # mount points inside $ROOT, in mount order
do_mount() {  # do_mount TARGET mount-args...
    local target=$1; shift
    mkdir -p "$target"
    mount "$@" "$target"
    MOUNTS+=("$target")
}
mount_chroot() {
    do_mount "$ROOT/proc" -t proc proc
    do_mount "$ROOT/sys" -t sysfs sysfs
    do_mount "$ROOT/dev" --bind /dev
    do_mount "$ROOT/dev/pts" --bind /dev/pts
    do_mount "$ROOT/var/cache/apt/archives" --bind "$CACHE_DIR/apt-archives"
}
umount_chroot() {
    local i m
    for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
        m=${MOUNTS[$i]}
        if mountpoint -q "$m"; then
            umount "$m" 2>/dev/null || umount -l "$m" || true
        fi
    done
    MOUNTS=()
    # anything left below $ROOT (e.g. mounted by a maintainer script)?
    { findmnt -rn -o TARGET | grep -F "$ROOT/" || true; } | sort -r | while read -r m; do
        umount -l "$m" || true
    done
    return 0
}
still_mounted() { findmnt -rn -o TARGET | grep -qF "$WORK"; }

cleanup() {
    local rc=$?
    umount_chroot
    if still_mounted; then
        echo "build-image.sh: WARNING: mounts left under $WORK; not removing it" >&2
    else
        rm -rf --one-file-system "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_chroot() {
    chroot "$ROOT" /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
        "$@"
}
APT_OPTS=(-y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold
          -o APT::Keep-Downloaded-Packages=true)
guest_kver() {
    local d
    d=$(ls -1d "$ROOT"/lib/modules/*/ 2>/dev/null | sort -V | tail -n1)
    [ -n "$d" ] || { echo "no kernel under $ROOT/lib/modules" >&2; return 1; }
    basename "$d"
}

# ----------------------------------------------------------------- steps ---
step_debootstrap() {
    debootstrap --variant=minbase --components=main,contrib \
        --cache-dir="$DEBS" \
        --include=systemd-sysv,udev,dbus,kmod,iproute2,openssh-server,sudo,ca-certificates \
        "$SUITE" "$ROOT" "$MIRROR"
}

step_base() {
    cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main contrib
deb $MIRROR $SUITE-updates main contrib
deb $SECURITY_MIRROR $SUITE-security main contrib
EOF
    if [ "$ZFS_FROM" = backports ]; then
        echo "deb $MIRROR $SUITE-backports main contrib" >>"$ROOT/etc/apt/sources.list"
    fi
    printf '#!/bin/sh\n# cinder-zol lab build: no service starts in the chroot\nexit 101\n' \
        >"$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
    echo zol-lab >"$ROOT/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tzol-lab\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        >"$ROOT/etc/hosts"
    echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$ROOT/etc/fstab"
    # A fixed machine-id: an empty one makes systemd treat every boot of the
    # throw-away overlay as a first boot (and apply unit presets).
    tr -d '-' </proc/sys/kernel/random/uuid >"$ROOT/etc/machine-id"
    # initramfs: MODULES=dep would inspect the build host
    mkdir -p "$ROOT/etc/initramfs-tools/conf.d"
    echo 'MODULES=most' >"$ROOT/etc/initramfs-tools/conf.d/cinder-zol-lab.conf"
    mount_chroot
    in_chroot apt-get update
    # accept the zfs-dkms licence note without a prompt
    echo 'zfs-dkms zfs-dkms/note-incompatible-licenses note' | in_chroot debconf-set-selections || true
    echo 'zfs-dkms zfs-dkms/note-incompatible-licenses seen true' | in_chroot debconf-set-selections || true
}

step_kernel_tools() {
    mount_chroot
    # the kernel and headers from the release itself, never from backports
    # (trixie-backports' kernel is newer than OpenZFS supports)
    in_chroot apt-get install "${APT_OPTS[@]}" \
        linux-image-amd64 linux-headers-amd64 dkms \
        tgt targetcli-fb python3-rtslib-fb open-iscsi sg3-utils nvme-cli
    guest_kver >"$WORK/kver"
    echo "guest kernel: $(cat "$WORK/kver")"
}

step_zfs() {
    mount_chroot
    if [ "$ZFS_FROM" = backports ]; then
        # -t pulls the matching libzfs/libzpool from backports too
        in_chroot apt-get install "${APT_OPTS[@]}" -t "$SUITE-backports" \
            zfs-dkms zfsutils-linux zfs-zed
    else
        in_chroot apt-get install "${APT_OPTS[@]}" zfs-dkms zfsutils-linux
    fi
}

step_verify_dkms() {
    mount_chroot
    local kver zver
    kver=$(cat "$WORK/kver")
    zver=$(in_chroot dpkg-query -W -f='${Version}' zfs-dkms)
    zver=${zver#*:}; zver=${zver%%-*}
    echo "zfs-dkms version: $zver; guest kernel: $kver"
    in_chroot dkms status -k "$kver" || true
    if ! in_chroot dkms status -k "$kver" | grep -E "^zfs[/,].*: installed" >/dev/null; then
        echo "zfs not installed for $kver yet: running dkms install"
        in_chroot dkms install -m zfs -v "$zver" -k "$kver"
    fi
    in_chroot dkms status -k "$kver" | grep -E "^zfs[/,].*: installed"
    find "$ROOT/lib/modules/$kver" -name 'zfs.ko*' | grep . 
    echo "$zver" >"$OUT/zfs-version"
}

step_configure() {
    mount_chroot
    local kver
    kver=$(cat "$WORK/kver")
    # network: DHCP on every e* link via systemd-networkd
    cat >"$ROOT/etc/systemd/network/20-dhcp.network" <<'EOF'
[Match]
Name=e*

[Network]
DHCP=yes
EOF
    in_chroot systemctl enable systemd-networkd.service
    in_chroot systemctl mask systemd-networkd-wait-online.service
    # iSCSI targets: tgt and LIO both bind 3260; neither starts tgt at boot,
    # the lab (or the operator) chooses one.
    in_chroot systemctl disable tgt.service
    # ssh: key-only
    cat >"$ROOT/etc/ssh/sshd_config.d/cinder-zol-lab.conf" <<'EOF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
EOF
    # OpenSSH >= 9.8 (trixie) delays an address after failed logins; under
    # QEMU user networking every login comes from one address, so a test
    # that fails a login on purpose would lock the harness out.
    if in_chroot dpkg --compare-versions \
            "$(in_chroot dpkg-query -W -f='${Version}' openssh-server)" ge 1:9.8; then
        echo 'PerSourcePenalties no' >>"$ROOT/etc/ssh/sshd_config.d/cinder-zol-lab.conf"
    fi
    # host keys generated now, at build time (openssh-server's postinst made
    # them in the chroot; ssh-keygen -A fills in any missing type). Nothing in
    # this image regenerates them at boot (trixie's openssh enables
    # sshd-keygen.service for a first boot).
    in_chroot systemctl disable sshd-keygen.service >/dev/null 2>&1 || true
    in_chroot ssh-keygen -A
    test -s "$ROOT/etc/ssh/ssh_host_ed25519_key.pub"
    if ls "$ROOT"/etc/systemd/system/*.wants/*keygen* 2>/dev/null; then
        echo "a host key generation unit is enabled" >&2
        return 1
    fi
    cp "$ROOT/etc/ssh/ssh_host_ed25519_key.pub" "$OUT/ssh_host_ed25519_key.pub"
    # client key for the driver
    ssh-keygen -q -t ed25519 -N '' -C cinder-zol-lab -f "$OUT/id_ed25519"
    chmod 600 "$OUT/id_ed25519" "$OUT/id_ed25519.pub"
    install -d -m 700 "$ROOT/root/.ssh"
    install -m 600 "$OUT/id_ed25519.pub" "$ROOT/root/.ssh/authorized_keys"
    # root has no password (locked); login only with the key above
    in_chroot passwd -l root
    # initramfs modules for booting under QEMU with -kernel/-initrd
    printf '%s\n' virtio_pci virtio_blk virtio_net ext4 >>"$ROOT/etc/initramfs-tools/modules"
    echo "$kver" >"$OUT/kernel-version"
}

step_initramfs() {
    mount_chroot
    local kver
    kver=$(cat "$WORK/kver")
    in_chroot update-initramfs -u -k "$kver"
    umount_chroot
    cp "$ROOT/boot/vmlinuz-$kver" "$OUT/vmlinuz"
    cp "$ROOT/boot/initrd.img-$kver" "$OUT/initrd.img"
    # clean up the chroot-only bits
    rm -f "$ROOT/usr/sbin/policy-rc.d"
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/tmp/* "$ROOT"/var/tmp/*
    find "$ROOT/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -delete
}

step_mkfs() {
    still_mounted && { echo "mounts left under $WORK" >&2; return 1; }
    mkfs.ext4 -q -F -L zol-lab-root -d "$ROOT" "$OUT/root.img" 4G
    {
        echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "suite: $SUITE"
        echo "zfs from: $ZFS_FROM"
        echo "kernel: $(cat "$OUT/kernel-version")"
        echo "zfs: $(cat "$OUT/zfs-version")"
        echo "recipe-sha256: $(sha256sum "$(realpath "$0")" | cut -d' ' -f1)"
    } >"$OUT/build-info"
    ls -ls "$OUT"
}

STEP=0
run_step() {  # run_step "title" function
    local title=$1 fn=$2 t rc
    STEP=$((STEP + 1))
    t=$(date +%s)
    echo "[$STEP/$NSTEPS] $title ... (t=$(elapsed)s)"
    echo "===== [$STEP/$NSTEPS] $title =====" >>"$LOG"
    set +e
    # a subshell with errexit, run outside any conditional so -e stays active;
    # it unmounts what it mounted when it ends
    ( set -euo pipefail; trap 'umount_chroot' EXIT; "$fn" ) </dev/null >>"$LOG" 2>&1
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        echo "FAILED at step [$STEP/$NSTEPS] $title (exit $rc, after $(( $(date +%s) - t ))s)" >&2
        echo "log: $LOG (last 30 lines below)" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    echo "      done in $(( $(date +%s) - t ))s"
}

echo "build-image.sh: building $OUT_DIR"
echo "  cache: $CACHE_DIR   log: $LOG"
run_step "debootstrap $SUITE minbase (~1 min)" step_debootstrap
run_step "apt sources (main contrib), base config" step_base
run_step "kernel, headers, dkms, tgt, targetcli, open-iscsi (~1-2 min)" step_kernel_tools
run_step "zfs-dkms + zfsutils-linux from $ZFS_FROM (DKMS compile, ~4-8 min)" step_zfs
run_step "verify zfs DKMS module for the guest kernel" step_verify_dkms
run_step "configure network, ssh keys, services" step_configure
run_step "initramfs, copy out kernel + initrd" step_initramfs
run_step "mkfs.ext4 -d root.img 4G" step_mkfs

still_mounted && { echo "mounts left under $WORK" >&2; exit 1; }
mv -T "$OUT" "$OUT_DIR"
echo "build-image.sh: done in $(elapsed)s: $OUT_DIR"
