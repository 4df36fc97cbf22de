"""Pinned virtualenvs for services that cannot share the tox env.

keystone, glance and tempest each get their own venv, installed from a
requirements file with ``-c`` a constraints file (a pip freeze measured on
this machine) and cached in ``CACHE_DIR/venvs/venv-<name>-<hash>``; the hash
covers both files and the Python version, so a change to either makes a
new venv. Stdlib only.
"""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path
import shutil
import subprocess
import sys
import time

from .guest import CACHE_DIR
from .services import ServiceError

FILES = Path(__file__).resolve().parent / 'stack-files'


def ensure(name: str, requirements: Path, constraints: Path,
           log=print) -> Path:
    """The venv for ``requirements``, made once (about 15-110 s)."""
    digest = hashlib.sha256(
        requirements.read_bytes() + constraints.read_bytes() +
        sys.version.encode()).hexdigest()[:12]
    cache = CACHE_DIR / 'venvs'
    venv = cache / f'venv-{name}-{digest}'
    if (venv / '.complete').exists():
        return venv
    cache.mkdir(parents=True, exist_ok=True)
    # one builder at a time; a second caller waits, then reuses
    with open(cache / f'{name}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / '.complete').exists():
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        t0 = time.monotonic()
        log(f'venv: creating the {name} venv {venv}')
        base = getattr(sys, '_base_executable', None) or sys.executable
        subprocess.run([base, '-m', 'venv', str(venv)], check=True)
        plog = venv / 'pip.log'
        with open(plog, 'wb') as out:
            r = subprocess.run([str(venv / 'bin' / 'pip'), 'install', '-q',
                                '-r', str(requirements), '-c',
                                str(constraints)],
                               stdout=out, stderr=subprocess.STDOUT)
        if r.returncode:
            raise ServiceError(
                f'pip install for the {name} venv failed ({plog}):\n'
                + '\n'.join(plog.read_text().splitlines()[-30:]))
        (venv / '.complete').write_text('')
        log(f'venv: {name} venv ready ({time.monotonic() - t0:.0f}s)')
        return venv


def glance(log=print) -> Path:
    """glance-api 33 + gunicorn (stack-files/requirements-glance.txt)."""
    return ensure('glance', FILES / 'requirements-glance.txt',
                  FILES / 'constraints-glance.txt', log)
