"""The storage host's half of cinder-zol (Python standard library only).

Installed on the ZFS storage host by ``setup-storage-host.sh`` (as
``/usr/lib/cinder-zol/cinder_zol_host`` with the launchers
``/usr/libexec/cinder-zol/cinder-zol-host`` and ``cinder-zol-target``),
and imported in-process by the unit tests. The driver sends requests
(:mod:`.wire` is the vocabulary both ends import) to :mod:`.agent`, which
runs them with the ZFS model (:mod:`.zfs`) and the dependency bookkeeping
(:mod:`.dependents`), and hands target changes and zvol data to the root
helper (:mod:`.root`), a program of its own.
Intra-package imports are relative, so the package works under either name.
"""
