"""The backend section a lab guest needs: shared by the demo and the tests.

It is exactly what the README tells operators to put in cinder.conf, with
the guest's forwarded ports and lab key in place of a real host's.
"""

from __future__ import annotations

ENV_PREFIX = 'CINDER_ZOL_LAB_'


def settings(env: dict[str, str]) -> dict:
    """cinder.conf backend options for the guest described by ``env``.

    ``env`` holds the CINDER_ZOL_LAB_* variables of LabGuest.env().
    """
    def get(key, default=None):
        return env.get(ENV_PREFIX + key) or default

    return {
        'volume_backend_name': 'zol_lab',
        'san_ip': get('HOST'),
        'san_ssh_port': int(get('SSH_PORT')),
        'san_login': get('LOGIN', 'root'),
        'san_private_key': get('KEY'),
        'zol_ssh_known_hosts_file': get('KNOWN_HOSTS'),
        'zol_dataset': get('PARENT'),
        'zol_target_helper': get('TARGET', 'tgtadm'),
        # Initiators on this machine reach the guest through a forward.
        'target_ip_address': '127.0.0.1',
        'target_port': int(get('ISCSI_PORT')),
    }
