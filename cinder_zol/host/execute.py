"""Running programs on the storage host: argv lists only, never a shell.

A non-root SSH session on Debian has no /usr/sbin in PATH, so every child
gets a fixed PATH; stdin is passed through as bytes; the exit status, stdout
and stderr come back together.
"""

import collections
import os
import subprocess

PATH = '/usr/sbin:/usr/bin:/sbin:/bin'
ENV = {'PATH': PATH, 'LC_ALL': 'C', 'LANG': 'C'}

Completed = collections.namedtuple('Completed', 'argv returncode stdout '
                                                'stderr')


class Executor(object):
    """Runs local commands; tests substitute an object with ``run()``."""

    def __init__(self, timeout=600):
        self.timeout = timeout

    def run(self, argv, input=None, timeout=None):
        """Run argv; Completed with text stdout/stderr (never raises on rc).

        A missing program is exit status 127, a timeout 124, like a shell.
        """
        argv = [str(a) for a in argv]
        if isinstance(input, str):
            input = input.encode()
        try:
            proc = subprocess.run(
                argv, input=input, capture_output=True, env=ENV,
                stdin=None if input is not None else subprocess.DEVNULL,
                timeout=timeout or self.timeout, close_fds=True)
        except FileNotFoundError as e:
            return Completed(argv, 127, '', '%s: %s' % (argv[0], e.strerror))
        except subprocess.TimeoutExpired:
            return Completed(argv, 124, '', '%s: timed out after %s s'
                             % (argv[0], timeout or self.timeout))
        return Completed(argv, proc.returncode,
                         proc.stdout.decode('utf-8', 'replace'),
                         proc.stderr.decode('utf-8', 'replace'))


def euid():
    return os.geteuid()
