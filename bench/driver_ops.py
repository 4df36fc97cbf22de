"""Time driver operations on the lab guest; print numbers, assert nothing.

Run with ``tox -e bench`` (boots the lab guest). Shows that a clone costs
the same for a 1 GiB and a 1 TiB source (ZFS clones are O(1)), and what
each operation costs in remote commands and seconds under emulation.
"""

import resource
import statistics
import sys
import time

from cinder_zol_lab import demo
from cinder_zol_lab.shell import GuestShell

REPEAT = 3


def timed(fn, *args):
    t0 = time.monotonic()
    fn(*args)
    return time.monotonic() - t0


def main():
    drv, ctxt = demo.make_driver(GuestShell.from_env())
    calls = []
    real_run = drv.runner.run

    def counting_run(argv, **kwargs):
        calls.append(argv)
        return real_run(argv, **kwargs)
    drv.runner.run = counting_run

    rows = []

    def measure(label, make_args, fn, cleanup):
        times, ncalls = [], []
        for _ in range(REPEAT):
            args = make_args()
            del calls[:]
            times.append(timed(fn, *args))
            ncalls.append(len(calls))
            cleanup(*args)
        rows.append((label, statistics.median(times), max(ncalls)))

    for size in (1, 1024):
        src = demo.make_volume(ctxt, size)
        drv.create_volume(src)
        measure('create_cloned_volume from %d GiB source' % size,
                lambda: (demo.make_volume(ctxt, size), src),
                drv.create_cloned_volume,
                lambda vol, s: drv.delete_volume(vol))
        drv.delete_volume(src)

    measure('create_volume 1 GiB sparse',
            lambda: (demo.make_volume(ctxt, 1),),
            drv.create_volume, drv.delete_volume)
    measure('delete_volume 1 GiB', lambda: _created(drv, ctxt),
            drv.delete_volume, lambda vol: None)
    measure('get_volume_stats', lambda: (True,), drv.get_volume_stats,
            lambda refresh: None)
    print('%-45s %9s %8s' % ('operation', 'median s', 'commands'))
    for label, t, n in rows:
        print('%-45s %9.2f %8d' % (label, t, n))
    print('peak RSS of this process: %.1f MiB' %
          (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return 0


def _created(drv, ctxt):
    vol = demo.make_volume(ctxt, 1)
    drv.create_volume(vol)
    return (vol,)


if __name__ == '__main__':
    sys.exit(main())
