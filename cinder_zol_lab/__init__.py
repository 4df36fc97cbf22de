"""cinder-zol lab: a real ZFS-on-Linux storage host for functional tests.

A Debian guest (OpenZFS via zfs-dkms, tgt, LIO, open-iscsi) booted under
QEMU/TCG, built from Debian packages by build-image.sh and booted by
guest.LabGuest; every process talks to it through shell.GuestShell (the
system ssh client), which also reads and writes the CINDER_ZOL_LAB_*
variables a child gets. The e2e and tempest harnesses run their Cinder
services (and keystone, glance) with stack.CinderStack / KeystoneStack.
guest, shell, services and venvs are standard library only.

    python -m cinder_zol_lab build
    python -m cinder_zol_lab run [--target tgtadm|lioadm] -- CMD...
    python -m cinder_zol_lab shell
"""
