"""e2e with two storage hosts: one backend per lab guest, one scheduler.

Mixed into ``run.E2E``; it runs in the two-guest pass (``e2e/all.py``:
``python -m cinder_zol_lab run --hosts 2``), where the other scenarios do
not, and it is not run when only one guest is up.

* 25: the scheduler reports a pool for each storage host; a type pinned
  to the second host (``volume_backend_name``) puts its volume there, and
  ``zfs list`` on that host has it while the other does not; volumes of a
  type that names no backend are spread over both hosts by the capacity
  weigher (on hosts that start alike, the second volume goes to the other
  host); a snapshot and a volume from it stay on their source's host;
  deleting everything leaves only each host's parent dataset.
"""

import sys

GiB = 2 ** 30
PINNED = 'e2e-host2'
ANY = 'e2e-any-host'
SPREAD = 6

SCENARIOS = [
    # (number, name, method, numbers it needs)
    (25, 'two storage hosts behind one scheduler', 's25_two_hosts', ()),
]
NUMBERS = {num for num, *_ in SCENARIOS}


class Scenarios:
    """Scenario 25; it uses run.E2E's CLI, wait and check helpers."""

    @property
    def _e2e(self):
        """run.py's module (``__main__`` when run as a script)."""
        return sys.modules[type(self).__module__]

    def _guest_of(self, host: str):
        """The lab guest behind a volume's ``os-vol-host-attr:host``."""
        backend = host.split('@', 1)[1].split('#', 1)[0]
        names = self.stack.backend_names()
        self._e2e.check(backend in names, f'unknown backend in {host}')
        return ([self.guest] + list(self.more_guests))[names.index(backend)]

    def _zvols(self, guest) -> set[str]:
        return {n for n in guest.zfs_names() if n != guest.parent}

    def s25_two_hosts(self):
        check = self._e2e.check
        check(self.more_guests, 'needs two storage hosts: run it under '
              '"python -m cinder_zol_lab run --hosts 2"')
        first, second = self.guest, self.more_guests[0]
        names = self.stack.backend_names()
        r = self.api('GET', '/scheduler-stats/get_pools',
                     params={'detail': 'True'})
        r.raise_for_status()
        pools = {p['name'] for p in r.json()['pools']}
        want = {f'{self.stack.host}@{n}#{n}' for n in names}
        check(want <= pools, f'scheduler pools {sorted(pools)}, '
                             f'expected {sorted(want)}')

        # no backend named: the capacity weigher spreads them. Both hosts
        # start alike, so the second volume goes to the other host, unless
        # a stats report in between says otherwise: up to SPREAD volumes
        self.cinder('type-create', ANY)
        placed = {}
        for i in range(SPREAD):
            name = f'e2e-any-{i}'
            self.create(name, 1, '--volume-type', ANY)
            vol = self.wait('volumes', name, 'available')
            g = self._guest_of(vol['os-vol-host-attr:host'])
            check(f'{g.parent}/volume-{self.ids[name]}' in self._zvols(g),
                  f'{name} not on the host Cinder says '
                  f'({vol["os-vol-host-attr:host"]})')
            placed[name] = vol['os-vol-host-attr:host']
            if len(set(placed.values())) == 2:
                break
        per_host = {h: sum(1 for p in placed.values() if p == h)
                    for h in set(placed.values())}
        self._e2e.say(f'    placement of {len(placed)} volumes: {per_host}')
        check(len(per_host) == 2, f'all on one host: {per_host}')

        # pinned: the second host's backend only
        self.cinder('type-create', PINNED)
        self.cinder('type-key', PINNED, 'set',
                    f'volume_backend_name={names[1]}')
        self.create('e2e-h2', 1, '--volume-type', PINNED)
        vol = self.wait('volumes', 'e2e-h2', 'available')
        host = vol['os-vol-host-attr:host']
        check(host == f'{self.stack.host}@{names[1]}#{names[1]}',
              f'pinned volume on {host}')
        zvol = f'volume-{self.ids["e2e-h2"]}'
        check(f'{second.parent}/{zvol}' in self._zvols(second),
              f'{zvol} not on the second storage host')
        check(not any(zvol in n for n in self._zvols(first)),
              f'{zvol} also on the first storage host')

        # a snapshot and a volume from it stay with their source
        self.snapshot('e2e-h2-s', 'e2e-h2')
        self.wait('snapshots', 'e2e-h2-s', 'available')
        self.create('e2e-h2-c', 1, '--snapshot-id', self.ids['e2e-h2-s'])
        clone = self.wait('volumes', 'e2e-h2-c', 'available')
        check(clone['os-vol-host-attr:host'] == host,
              f'clone on {clone["os-vol-host-attr:host"]}, source on {host}')
        rows = second.zfs()
        cz = f'{second.parent}/volume-{self.ids["e2e-h2-c"]}'
        check(cz in rows and (rows[cz]['origin'] or '').startswith(
            f'{second.parent}/{zvol}@'),
            f'{cz} is not a clone of {zvol} on the second host')

        for name in list(placed) + ['e2e-h2-c']:
            self.delete_volume(name)
        self.delete_snapshot('e2e-h2-s')
        self.delete_volume('e2e-h2')
        for g in (first, second):
            left = self._zvols(g)
            check(not left, f'left on {g.link_address or g.host}: {left}')
        for t in (PINNED, ANY):
            self.cinder('type-delete', t)
