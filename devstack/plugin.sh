#!/bin/bash
# devstack plugin: install cinder-zol and add a ZoL backend to cinder.conf.
#
# local.conf:
#   enable_plugin cinder-zol <git url of this repository>
#   CINDER_ZOL_SAN_IP=192.0.2.10   # the ZoL storage host (see README.rst)

function install_cinder_zol {
    setup_develop "$CINDER_ZOL_DIR"
}

function configure_cinder_zol {
    local b=$CINDER_ZOL_BACKEND
    iniset "$CINDER_CONF" "$b" volume_driver cinder_zol.ZFSonLinuxISCSIDriver
    iniset "$CINDER_CONF" "$b" volume_backend_name "$b"
    iniset "$CINDER_CONF" "$b" san_ip "$CINDER_ZOL_SAN_IP"
    iniset "$CINDER_CONF" "$b" san_login "$CINDER_ZOL_SAN_LOGIN"
    iniset "$CINDER_CONF" "$b" san_private_key "$CINDER_ZOL_PRIVATE_KEY"
    iniset "$CINDER_CONF" "$b" zol_dataset "$CINDER_ZOL_DATASET"
    iniset "$CINDER_CONF" "$b" zol_target_helper "$CINDER_ZOL_TARGET_HELPER"
    iniset "$CINDER_CONF" "$b" target_ip_address "$CINDER_ZOL_SAN_IP"
    local enabled
    enabled=$(iniget "$CINDER_CONF" DEFAULT enabled_backends)
    iniset "$CINDER_CONF" DEFAULT enabled_backends "${enabled:+$enabled,}$b"
}

if is_service_enabled cinder; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        install_cinder_zol
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        configure_cinder_zol
    fi
fi
