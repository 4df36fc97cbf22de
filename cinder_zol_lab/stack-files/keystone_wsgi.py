"""keystone's WSGI app for gunicorn (cinder_zol_lab/stack.py).

keystone 30 has no keystone-wsgi-public script, and its option parser reads
sys.argv: under gunicorn that is gunicorn's command line, which keystone
rejects and exits. Clear it before keystone loads its configuration (from
OS_KEYSTONE_CONFIG_FILES).
"""

import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402,F401
