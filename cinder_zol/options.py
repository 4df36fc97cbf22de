"""Every configuration option the driver adds, in one place.

Cinder's own options are reused where they exist (``san_*``, ``ssh_*``,
``target_*``, ``use_chap_auth``, ``max_over_subscription_ratio``...); the
``zol_*`` options below cover only what Cinder has no option for.
"""

from oslo_config import cfg

from cinder.volume import configuration

from cinder_zol.host import helpers

zfs_opts = [
    cfg.StrOpt('zol_dataset',
               default='tank/cinder',
               help='Parent ZFS dataset on the storage host under which all '
                    'volumes of this backend are created, e.g. tank/cinder. '
                    'It must exist (zfs create tank/cinder) and should be '
                    'dedicated to this backend: the driver only ever '
                    'touches datasets below it that carry its own '
                    'cinder_zol:managed property.'),
    cfg.StrOpt('zol_volblocksize',
               help='volblocksize for new zvols, e.g. 16K. Unset means the '
                    'ZFS default of the storage host. Fixed at creation.'),
    cfg.DictOpt('zol_zvol_properties',
                default={},
                help='Extra ZFS properties set on every new zvol, e.g. '
                     'compression:lz4,logbias:throughput. zol_volblocksize '
                     'overrides a volblocksize here, and a volume type '
                     'overrides both with extra specs named zfs:<property>. '
                     'volsize, refreservation (use provisioning:type) and '
                     'cinder_zol:* cannot be set.'),
]

ssh_opts = [
    cfg.StrOpt('zol_ssh_known_hosts_file',
               help='known_hosts file holding the storage host key. Unset '
                    'means Cinder\'s ssh_hosts_key_file '
                    '($state_path/ssh_known_hosts). An unknown or changed '
                    'host key is refused unless zol_ssh_trust_on_first_use '
                    'is set.'),
    cfg.BoolOpt('zol_ssh_trust_on_first_use',
                default=False,
                help='Accept and record the storage host key on the very '
                     'first connection when it is not yet in the known_hosts '
                     'file. A changed key is always refused.'),
    cfg.IntOpt('zol_ssh_command_timeout',
               default=300,
               min=1,
               help='Seconds one command on the storage host may run before '
                    'it is abandoned and reported as timed out; also how '
                    'long an operation waits for a free SSH connection.'),
    cfg.IntOpt('zol_max_image_transfers',
               default=5,
               min=1,
               help='Image transfers (volumes from images, uploads to '
                    'images) that may run at once, each on an SSH '
                    'connection of its own besides the ssh_max_pool_conn '
                    'ones that every other operation uses, so long '
                    'transfers never hold up attaches, detaches or '
                    'deletes. A transfer beyond it waits up to '
                    'zol_ssh_command_timeout for one to end.'),
    cfg.StrOpt('zol_host_command',
               default='/usr/libexec/cinder-zol/cinder-zol-host',
               help='Path of the cinder-zol agent on the storage host '
                    '(installed by setup-storage-host.sh). Every request of '
                    'the driver runs it; with the least-privilege setup, '
                    'sshd forces it for the san_login account whatever '
                    'the client asks.'),
]

target_opts = [
    cfg.StrOpt('zol_target_helper',
               default='tgtadm',
               choices=[(h.name, h.what) for h
                        in sorted(helpers.HELPERS.values())],
               help='Target implementation on the storage host that '
                    'exports the zvols.'),
    cfg.IntOpt('zol_device_wait_timeout',
               default=30,
               min=1,
               help='Seconds to wait for /dev/zvol/<dataset> to appear (udev) '
                    'before exporting a volume.'),
]

image_opts = [
    cfg.BoolOpt('zol_image_cache',
                default=True,
                help='Keep one golden zvol per Glance image on the storage '
                     'host and make every volume created from that image a '
                     'ZFS clone of it (constant time whatever the image '
                     'size). The first volume from an image fills the '
                     'entry; the image data travels over the driver\'s SSH '
                     'connection, no iSCSI attach is needed.'),
    cfg.IntOpt('zol_image_cache_max_count',
               default=0,
               min=0,
               help='Most golden-image entries to keep; the least recently '
                    'used beyond it are evicted after a new entry is made. '
                    '0 means no limit. Volumes cloned from an evicted entry '
                    'keep working.'),
    cfg.IntOpt('zol_image_cache_max_size_gb',
               default=0,
               min=0,
               help='Most space (GiB, as zfs "used") the golden-image '
                    'entries may take; least recently used entries beyond '
                    'it are evicted. 0 means no limit.'),
]

ALL_OPTS = zfs_opts + ssh_opts + target_opts + image_opts

CONF = cfg.CONF
CONF.register_opts(ALL_OPTS, group=configuration.SHARED_CONF_GROUP)


def list_opts():
    """Entry point for oslo-config-generator (namespace cinder_zol)."""
    return [(configuration.SHARED_CONF_GROUP, ALL_OPTS)]


def explicit_option(conf, name):
    """The option's value if an operator set it, else None.

    Cinder's BackendGroupConfiguration registers backend-section options with
    a None default, so None there means "not in the backend section"; for
    ``[backend_defaults]`` (and the DEFAULT-group style) oslo.config says
    where a value came from.
    """
    backend_conf = getattr(conf, 'backend_conf', None)
    if backend_conf is not None:
        value = getattr(backend_conf, name, None)
        if value is not None:
            return value
        group = configuration.SHARED_CONF_GROUP
    else:
        group = None
    try:
        location = CONF.get_location(name, group).location
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, AttributeError):
        return None
    if location in (cfg.Locations.opt_default, cfg.Locations.set_default):
        return None
    return getattr(CONF[group], name) if group else CONF[name]


def chap_enabled(conf):
    """CHAP is on unless use_chap_auth = False was set explicitly."""
    value = explicit_option(conf, 'use_chap_auth')
    return True if value is None else bool(value)
