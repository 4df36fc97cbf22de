"""Write a self-contained installer for the storage host.

``python3 -m cinder_zol.host.bundle > install.sh`` (or piped straight into
``ssh root@storage bash -s -- OPTIONS``): a bash script carrying this
package and setup-storage-host.sh, which it unpacks into a temporary
directory and runs with the options given. The storage host needs no pip
and no copy of the driver.
"""

import base64
import io
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
SETUP = 'setup-storage-host.sh'

HEAD = '''#!/bin/bash
# cinder-zol storage host installer (python3 -m cinder_zol.host.bundle).
# Runs setup-storage-host.sh with the options given; see its --help.
set -euo pipefail
d=$(mktemp -d /tmp/cinder-zol-host.XXXXXX)
trap 'rm -rf "$d"' EXIT
base64 -d <<'CINDER_ZOL_PAYLOAD' | tar -xz -C "$d"
'''
TAIL = '''CINDER_ZOL_PAYLOAD
bash "$d/%s" "$@" </dev/null
''' % SETUP


PACKAGES = ('', 'root')     # the package and its subpackages


def files():
    """The files the storage host gets: the package and the recipe.

    Paths relative to this directory (``root/main.py``).
    """
    names = []
    for package in PACKAGES:
        names += sorted(os.path.join(package, n)
                        for n in os.listdir(os.path.join(HERE, package))
                        if n.endswith('.py'))
    return names + [SETUP]


def payload():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name in files():
            info = tar.gettarinfo(os.path.join(HERE, name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = 'root'
            info.mtime = 0
            with open(os.path.join(HERE, name), 'rb') as f:
                tar.addfile(info, f)
    return base64.encodebytes(buf.getvalue()).decode()


def script():
    return HEAD + payload() + TAIL


def main():
    sys.stdout.write(script())
    return 0


if __name__ == '__main__':
    sys.exit(main())
