"""The root helper: target changes and zvol data, with a fixed vocabulary.

Root-only code, apart from the agent: :mod:`.main` (entry point and
dispatch), :mod:`.exports` (the target operations and the binding
check), :mod:`.streams` (zvol data), :mod:`.backend` (what a target
backend provides) with :mod:`.tgt`, :mod:`.lio` and :mod:`.nvmet`, and
:mod:`.records`. It imports nothing of the agent, and the agent nothing
of it: the agent runs it as a program.

tgtd accepts management only from root, LIO and nvmet live in root-only
configfs, and zvol device nodes are root:disk: these operations need root.
The agent runs ``/usr/libexec/cinder-zol/cinder-zol-target`` for them,
through ``sudo -n`` (one sudoers line allows exactly that program) unless
it is root itself. Whoever calls, the helper itself:

* re-validates every argument (sudo cannot see argv boundaries),
* derives the device from PARENT/NAME, checks in zfs that it is a volume
  carrying ``cinder_zol:managed=yes`` below a parent listed in host.conf,
  and that the /dev/zvol link resolves to a zvol device node,
* takes its own lock in a root-only directory,
* never logs a CHAP secret; secrets and initiator lists arrive as JSON.

It also owns the binding between a zvol and its target (:func:`bound`):
the driver names the target (``target_prefix`` + the zvol's name), but a
name alone proves nothing, since the key that sends it may be stolen. The
helper acts on an existing target, TPG, backstore, LUN, ACL or subsystem
only when everything it serves is the named zvol of an allowed parent (or,
for a target left without storage by a crash, when its own record says the
target is that zvol's); anything else is somebody else's and refused.
"""
