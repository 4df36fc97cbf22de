"""cinder-zol lab: a real ZFS-on-Linux storage host for functional tests.

A Debian bookworm guest (OpenZFS via zfs-dkms, tgt, LIO, open-iscsi) booted
under QEMU/TCG, built from Debian packages by build-image.sh and driven over
ssh by guest.LabGuest. Standard library only: nothing here imports cinder.

    python -m cinder_zol_lab build
    python -m cinder_zol_lab run [--target tgtadm|lioadm] -- CMD...
    python -m cinder_zol_lab shell
"""
