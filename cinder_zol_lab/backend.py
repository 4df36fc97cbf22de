"""The backend section a lab guest needs: shared by the demo and the tests.

It is exactly what the README tells operators to put in cinder.conf, with
the guest's forwarded ports and lab key in place of a real host's.
"""

from __future__ import annotations

from .shell import GuestShell

NAME = 'zol_lab'    # volume_backend_name (and the harnesses' section name)


def settings(shell: GuestShell) -> dict:
    """cinder.conf backend options for the guest ``shell`` describes."""
    settings = {
        'volume_backend_name': NAME,
        'san_ip': shell.host,
        'san_ssh_port': shell.ssh_port,
        'san_login': shell.login,
        'san_private_key': str(shell.key),
        'zol_ssh_known_hosts_file': str(shell.known_hosts),
        'zol_dataset': shell.parent,
        'zol_target_helper': shell.target or 'tgtadm',
        # Initiators on this machine reach the guest through a forward.
        'target_ip_address': '127.0.0.1',
        'target_port': shell.iscsi_port,
    }
    if shell.target == 'nvmet':
        settings.update(target_port=shell.nvme_port,
                        target_protocol='nvmet_tcp')
    return settings
