"""An in-memory rtslib_fb (python3-rtslib-fb) for the LIO backend's tests.

Modelled on rtslib-fb 2.1.75 (Debian bookworm's python3-rtslib-fb) and
checked against 2.2.4 (rtslib/node.py, root.py, target.py, tcm.py,
fabric.py, utils.py); messages are 2.1.75's where the two differ.

As in rtslib, objects are handles on configfs paths: ``self.cfs`` maps
each existing path to its state, listings yield fresh handles looked up
by path, and a handle whose path is gone raises on use. What the LIO
backend relies on is kept:

* ``mode='create'`` on an existing object raises ``RTSLibError("This
  <Class> already exists in configFS")``; a block backstore that exists
  raises ``"Storage object block/<name> exists"``; ``mode='lookup'`` on a
  missing one raises ``RTSLibNotInCFS``.
* Target and initiator WWNs are normalized (lower case, validated).
* Deleting cascades as in rtslib: a Target deletes its TPGs, a TPG its
  ACLs, LUNs and portals, an ACL its mapped LUNs, a LUN the mapped LUNs
  pointing at it, and a storage object the LUNs using it (rtslib-fb does
  not refuse to delete a backstore in use: it tears the LUNs away). A
  block backstore cannot be created on a device another backstore (or
  ``busy_devices``) holds open: ``"Cannot configure StorageObject because
  device <dev> is already in use"``.
* ``RTSRoot().save_to_file()`` records a snapshot of ``dump()`` in
  ``saves`` instead of writing /etc/target/saveconfig.json.

Failures: ``fail(what, error, after=0)`` makes a call of ``what`` raise
before it changes anything (``what``: a class name for its constructor
when it creates, ``'<Class>.delete'``, ``'set_attribute'`` or
``'save_to_file'``); ``fail_root()`` makes ``RTSRoot()`` raise as it does
when the target modules cannot be loaded.
"""

import copy
import re
import types
import uuid

__version__ = '2.1.75'

CONFIGFS = '/sys/kernel/config/target'
DEFAULT_SAVE_FILE = '/etc/target/saveconfig.json'

# iSCSI TPG attributes and their kernel defaults (iscsi_target_core.h).
TPG_ATTRIBUTES = {
    'authentication': '1', 'cache_dynamic_acls': '0',
    'default_cmdsn_depth': '64', 'default_erl': '0',
    'demo_mode_discovery': '1', 'demo_mode_write_protect': '1',
    'generate_node_acls': '0', 'login_timeout': '15',
    'netif_timeout': '2', 'prod_mode_write_protect': '0',
    't10_pi': '0', 'tpg_enabled_sendtargets': '1',
}


class RTSLibError(Exception):
    pass


class RTSLibBrokenLink(RTSLibError):
    pass


class RTSLibNotInCFS(RTSLibError):
    pass


RTSLibNotInCFSError = RTSLibNotInCFS     # its name in rtslib-fb 2.2


_WWN_TESTS = {
    'iqn': lambda w: re.match(r'iqn\.[0-9]{4}-[0-1][0-9]\..*\..*', w)
    and ' ' not in w and '_' not in w,
    'naa': lambda w: re.match(r'naa\.[125c-fC-F][0-9a-fA-F]{15}$', w),
    'eui': lambda w: re.match(r'eui\.[0-9a-f]{16}$', w),
}


def normalize_wwn(wwn_types, wwn):
    """rtslib.utils.normalize_wwn for the iSCSI WWN types."""
    for wwn_type in wwn_types:
        clean = str(wwn.strip()).lower()
        if wwn_type in ('naa', 'eui'):
            if clean.startswith('0x'):
                clean = clean[2:]
            clean = clean.replace('-', '').replace(':', '')
            if not clean.startswith(('naa.', 'eui.')):
                clean = wwn_type + '.' + clean
        if _WWN_TESTS[wwn_type](clean):
            return clean, wwn_type
    raise RTSLibError('WWN not valid as: %s' % ', '.join(wwn_types))


class _Node(object):
    """rtslib.node.CFSNode over the fake's configfs (``lib.cfs``)."""

    _lib = None     # set on the classes a FakeRtslib binds

    def __eq__(self, other):
        return isinstance(other, _Node) and self._path == other._path

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self._path)

    @property
    def kind(self):
        return type(self).__name__

    @property
    def path(self):
        return self._path

    @property
    def exists(self):
        return self._path in self._lib.cfs

    def _check_self(self):
        if not self.exists:
            raise RTSLibNotInCFS('This %s does not exist in configFS'
                                 % self.kind)

    def _state(self):
        self._check_self()
        return self._lib.cfs[self._path]

    def _create_in_cfs_ine(self, mode, state, parent=None):
        if mode not in ('any', 'lookup', 'create'):
            raise RTSLibError('Invalid mode: %s' % mode)
        if self.exists and mode == 'create':
            raise RTSLibError('This %s already exists in configFS'
                              % self.kind)
        if not self.exists and mode == 'lookup':
            raise RTSLibNotInCFS('No such %s in configfs: %s'
                                 % (self.kind, self._path))
        if not self.exists:
            if parent is not None and not parent.exists:
                raise RTSLibError('Could not create %s in configFS'
                                  % self.kind)
            self._lib.cfs[self._path] = state
            self._lib.created.append((self.kind, self._path))

    def _rmdir(self):
        """configfs rmdir: the object's children must be gone already."""
        if not self.exists:
            return
        prefix = self._path + '/'
        left = [p for p in self._lib.cfs if p.startswith(prefix)]
        if left:
            raise OSError(39, 'Directory not empty: %s (%s)'
                          % (self._path, ', '.join(left)))
        del self._lib.cfs[self._path]
        self._lib.deleted.append((self.kind, self._path))

    def _children(self, subdir, pattern):
        """(match, path) of the existing entries below path/subdir."""
        base = self._path + ('/' + subdir if subdir else '')
        regex = re.compile('^' + re.escape(base) + '/' + pattern + '$')
        for path in list(self._lib.cfs):
            match = regex.match(path)
            if match and path in self._lib.cfs:
                yield match, path

    def delete(self):
        """CFSNode.delete: nothing to do when the object is gone."""
        self._lib._maybe_fail(self.kind + '.delete')
        self._rmdir()


class _Attributes(object):
    """set_attribute/get_attribute of a node with an attrib directory."""

    def set_attribute(self, attribute, value):
        self._check_self()
        self._lib._maybe_fail('set_attribute')
        attrib = self._state()['attrib']
        if attribute not in attrib:
            raise RTSLibError('Cannot find attribute: %s' % attribute)
        attrib[attribute] = str(value)

    def get_attribute(self, attribute):
        self._check_self()
        attrib = self._state()['attrib']
        if attribute not in attrib:
            raise RTSLibError('Cannot find attribute: %s' % attribute)
        return attrib[attribute]


def _auth_property(key):
    """NodeACL.chap_userid/chap_password: '' when unset."""

    def get(self):
        return self._state()['auth'][key]

    def put(self, value):
        state = self._state()
        value = value.strip()
        if value == 'NULL':
            raise RTSLibError("'NULL' is not a permitted value")
        if len(value) > 255:
            raise RTSLibError('Value longer than maximum length of 255')
        state['auth'][key] = value

    return property(get, put)


# -- the fabric ------------------------------------------------------------

class ISCSIFabricModule(_Node):

    name = 'iscsi'
    wwn_types = ('iqn', 'naa', 'eui')
    features = ('discovery_auth', 'acls', 'auth', 'nps', 'tpgts')

    def __init__(self):
        self._path = CONFIGFS + '/iscsi'

    def _check_self(self):
        # rtslib loads iscsi_target_mod (and creates the directory) here
        if not self.exists:
            self._lib.cfs[self._path] = {}

    def has_feature(self, feature):
        return feature in self.features

    def to_normalized_wwn(self, wwn):
        return normalize_wwn(self.wwn_types, wwn)

    @property
    def targets(self):
        if self.exists:
            for match, _path in self._children('', r'([^/]+)'):
                if match.group(1) != 'discovery_auth':
                    yield self._lib.Target(self, match.group(1), 'lookup')


class Target(_Node):

    def __init__(self, fabric_module, wwn=None, mode='any'):
        if mode != 'lookup':
            self._lib._maybe_fail(self.kind)
        self.fabric_module = fabric_module
        fabric_module._check_self()
        if wwn is None:
            wwn = 'iqn.2003-01.org.linux-iscsi.fake.x8664:sn.%s' \
                % uuid.uuid4().hex[:12]
        self.wwn, self.wwn_type = fabric_module.to_normalized_wwn(wwn)
        self._path = '%s/%s' % (fabric_module.path, self.wwn)
        self._create_in_cfs_ine(mode, {}, parent=fabric_module)

    def __repr__(self):
        return '<Target iscsi/%s>' % self.wwn

    def has_feature(self, feature):
        return self.fabric_module.has_feature(feature)

    @property
    def tpgs(self):
        self._check_self()
        for match, _path in self._children('', r'tpgt_(\d+)'):
            yield self._lib.TPG(self, int(match.group(1)), 'lookup')

    def delete(self):
        self._check_self()
        self._lib._maybe_fail('Target.delete')
        for tpg in list(self.tpgs):
            tpg.delete()
        self._rmdir()

    def dump(self):
        return {'wwn': self.wwn, 'fabric': 'iscsi',
                'tpgs': [tpg.dump() for tpg in self.tpgs]}


class TPG(_Attributes, _Node):

    def __init__(self, parent_target, tag=None, mode='any'):
        if mode != 'lookup':
            self._lib._maybe_fail(self.kind)
        if not isinstance(parent_target, Target):
            raise RTSLibError('Invalid parent Target')
        if tag is None:
            tags = [tpg.tag for tpg in parent_target.tpgs]
            tag = next(i for i in range(1, 1048576) if i not in tags)
        tag = int(tag)
        if tag < 0:
            raise RTSLibError('The TPG Tag must be >=0')
        self._tag = tag
        self.parent_target = parent_target
        self._path = '%s/tpgt_%d' % (parent_target.path, tag)
        self._create_in_cfs_ine(mode, {
            'enable': False, 'attrib': dict(TPG_ATTRIBUTES)},
            parent=parent_target)

    def __repr__(self):
        return '<TPG %d>' % self._tag

    @property
    def tag(self):
        return self._tag

    def has_feature(self, feature):
        return self.parent_target.has_feature(feature)

    @property
    def enable(self):
        return self._state()['enable']

    @enable.setter
    def enable(self, value):
        self._state()['enable'] = bool(value)

    @property
    def network_portals(self):
        self._check_self()
        for match, _path in self._children('np', r'([^/]+):(\d+)'):
            yield self._lib.NetworkPortal(self, match.group(1),
                                          int(match.group(2)), 'lookup')

    @property
    def luns(self):
        self._check_self()
        for match, _path in self._children('lun', r'lun_(\d+)'):
            yield self._lib.LUN(self, int(match.group(1)))

    @property
    def node_acls(self):
        self._check_self()
        for match, _path in self._children('acls', r'([^/]+)'):
            yield self._lib.NodeACL(self, match.group(1), 'lookup')

    def delete(self):
        self._check_self()
        self._lib._maybe_fail('TPG.delete')
        self.enable = False
        for acl in list(self.node_acls):
            acl.delete()
        for lun in list(self.luns):
            lun.delete()
        for portal in list(self.network_portals):
            portal.delete()
        self._rmdir()

    def dump(self):
        state = self._state()
        return {'tag': self.tag, 'enable': state['enable'],
                'attributes': dict(state['attrib']),
                'portals': [p.dump() for p in self.network_portals],
                'luns': [lun.dump() for lun in self.luns],
                'node_acls': [acl.dump() for acl in self.node_acls]}


class NetworkPortal(_Node):

    def __init__(self, parent_tpg, ip_address, port=3260, mode='any'):
        if mode != 'lookup':
            self._lib._maybe_fail(self.kind)
        self._ip_address = str(ip_address)
        try:
            self._port = int(port)
        except ValueError:
            raise RTSLibError('Invalid port')
        if not isinstance(parent_tpg, TPG):
            raise RTSLibError('Invalid parent TPG')
        self.parent_tpg = parent_tpg
        self._path = '%s/np/%s:%d' % (parent_tpg.path, self._ip_address,
                                      self._port)
        self._create_in_cfs_ine(mode, {}, parent=parent_tpg)

    @property
    def ip_address(self):
        return self._ip_address

    @property
    def port(self):
        return self._port

    def dump(self):
        return {'ip_address': self.ip_address, 'port': self.port,
                'iser': False, 'offload': False}


class LUN(_Node):

    MAX_TARGET_LUN = 65535

    def __init__(self, parent_tpg, lun=None, storage_object=None,
                 alias=None):
        if storage_object is not None:
            self._lib._maybe_fail(self.kind)
        if not isinstance(parent_tpg, TPG):
            raise RTSLibError('Invalid parent TPG')
        self.parent_tpg = parent_tpg
        if lun is None:
            used = [tpg_lun.lun for tpg_lun in parent_tpg.luns]
            lun = next((i for i in range(self.MAX_TARGET_LUN + 1)
                        if i not in used), None)
            if lun is None:
                raise RTSLibError('All LUNs 0-%d in use'
                                  % self.MAX_TARGET_LUN)
        else:
            lun = int(lun)
            if lun < 0 or lun > self.MAX_TARGET_LUN:
                raise RTSLibError('LUN must be 0 to %d'
                                  % self.MAX_TARGET_LUN)
        self._lun = lun
        self._path = '%s/lun/lun_%d' % (parent_tpg.path, lun)
        if storage_object is None:
            if alias is not None:
                raise RTSLibError('The alias parameter has no meaning '
                                  'without the storage_object parameter')
            self._create_in_cfs_ine('lookup', None)
            return
        self._create_in_cfs_ine('create', {
            'storage_object': None,
            'alias': alias or uuid.uuid4().hex[-10:]}, parent=parent_tpg)
        if not storage_object.exists:
            self.delete()
            raise RTSLibError('storage_object does not exist in configFS')
        self._lib.cfs[self._path]['storage_object'] = storage_object.path

    def __repr__(self):
        return '<LUN %d>' % self._lun

    @property
    def lun(self):
        return self._lun

    @property
    def storage_object(self):
        so_path = self._state()['storage_object']
        so = self._lib.cfs.get(so_path)
        if so is None:
            raise RTSLibBrokenLink('Broken LUN in configFS, no storage '
                                   'object')
        return self._lib.BlockStorageObject(so['name'])

    @property
    def mapped_luns(self):
        self._check_self()
        for acl in self.parent_tpg.node_acls:
            for mapped in acl.mapped_luns:
                if self._lib.cfs[mapped.path]['tpg_lun'] == self._path:
                    yield mapped

    def delete(self):
        self._check_self()
        self._lib._maybe_fail('LUN.delete')
        for mapped in list(self.mapped_luns):
            mapped.delete()
        self._rmdir()

    def dump(self):
        so = self.storage_object
        return {'index': self.lun, 'alias': self._state()['alias'],
                'storage_object': '/backstores/%s/%s' % (so.plugin,
                                                         so.name)}


class NodeACL(_Node):

    def __init__(self, parent_tpg, node_wwn, mode='any'):
        if mode != 'lookup':
            self._lib._maybe_fail(self.kind)
        if not isinstance(parent_tpg, TPG):
            raise RTSLibError('Invalid parent TPG')
        self.parent_tpg = parent_tpg
        fabric = parent_tpg.parent_target.fabric_module
        self._node_wwn, self.wwn_type = normalize_wwn(fabric.wwn_types,
                                                      node_wwn)
        self._path = '%s/acls/%s' % (parent_tpg.path, self._node_wwn)
        self._create_in_cfs_ine(mode, {
            'auth': {'userid': '', 'password': '', 'mutual_userid': '',
                     'mutual_password': ''}}, parent=parent_tpg)

    def __repr__(self):
        return '<NodeACL %s>' % self._node_wwn

    @property
    def node_wwn(self):
        return self._node_wwn

    chap_userid = _auth_property('userid')
    chap_password = _auth_property('password')
    chap_mutual_userid = _auth_property('mutual_userid')
    chap_mutual_password = _auth_property('mutual_password')

    @property
    def session(self):
        return None

    @property
    def mapped_luns(self):
        self._check_self()
        for match, _path in self._children('', r'lun_(\d+)'):
            yield self._lib.MappedLUN(self, int(match.group(1)))

    def delete(self):
        self._check_self()
        self._lib._maybe_fail('NodeACL.delete')
        for mapped in list(self.mapped_luns):
            mapped.delete()
        self._rmdir()

    def dump(self):
        d = {'node_wwn': self.node_wwn,
             'mapped_luns': [m.dump() for m in self.mapped_luns]}
        for key, value in sorted(self._state()['auth'].items()):
            if value:
                d['chap_' + key] = value
        return d


class MappedLUN(_Node):

    def __init__(self, parent_nodeacl, mapped_lun, tpg_lun=None,
                 write_protect=None, alias=None):
        if tpg_lun is not None:
            self._lib._maybe_fail(self.kind)
        if not isinstance(parent_nodeacl, NodeACL):
            raise RTSLibError('The parent_nodeacl parameter must be a '
                              'NodeACL object')
        if not parent_nodeacl.exists:
            raise RTSLibError('The parent_nodeacl does not exist')
        self.parent_nodeacl = parent_nodeacl
        try:
            self._mapped_lun = int(mapped_lun)
        except ValueError:
            raise RTSLibError('The mapped_lun parameter must be an integer '
                              'value')
        if self._mapped_lun < 0:
            raise RTSLibError('Mapped LUN must be >= 0')
        self._path = '%s/lun_%d' % (parent_nodeacl.path, self._mapped_lun)
        if tpg_lun is None:
            if write_protect is not None:
                raise RTSLibError('The write_protect parameter has no '
                                  'meaning without the tpg_lun parameter')
            self._create_in_cfs_ine('lookup', None)
            return
        self._create_in_cfs_ine('create', {
            'tpg_lun': None, 'write_protect': bool(write_protect)},
            parent=parent_nodeacl)
        index = tpg_lun.lun if isinstance(tpg_lun, LUN) else tpg_lun
        try:
            index = int(index)
        except ValueError:
            self.delete()
            raise RTSLibError('The tpg_lun must be either an integer or a '
                              'LUN object')
        for lun in parent_nodeacl.parent_tpg.luns:
            if lun.lun == index:
                self._lib.cfs[self._path]['tpg_lun'] = lun.path
                return
        self.delete()
        raise RTSLibError('LUN %s does not exist in this TPG' % index)

    def __repr__(self):
        return '<MappedLUN %s lun %d>' % (self.parent_nodeacl.node_wwn,
                                          self._mapped_lun)

    @property
    def mapped_lun(self):
        return self._mapped_lun

    @property
    def node_wwn(self):
        return self.parent_nodeacl.node_wwn

    @property
    def write_protect(self):
        return self._state()['write_protect']

    @property
    def tpg_lun(self):
        target = self._state()['tpg_lun']
        for lun in self.parent_nodeacl.parent_tpg.luns:
            if lun.path == target:
                return lun
        raise RTSLibBrokenLink('Broken MappedLUN, no TPG LUN found')

    def delete(self):
        self._check_self()
        self._lib._maybe_fail('MappedLUN.delete')
        self._rmdir()

    def dump(self):
        return {'index': self.mapped_lun, 'tpg_lun': self.tpg_lun.lun,
                'write_protect': self.write_protect}


class BlockStorageObject(_Node):

    plugin = 'block'

    def __init__(self, name, dev=None, wwn=None, readonly=False,
                 write_back=False, index=None, exclusive=True):
        if dev is not None:
            self._lib._maybe_fail(self.kind)
        if '/' in name or ' ' in name or '\t' in name or '\n' in name:
            raise RTSLibError("A storage object's name cannot contain "
                              ' /, newline or spaces/tabs')
        self._name = name
        self._path = '%s/core/iblock_0/%s' % (CONFIGFS, name)
        if dev is None:
            if not self.exists:
                raise RTSLibNotInCFS('Storage object block/%s not found'
                                     % name)
            return
        # rtslib-fb decides "exists" from its per-process tcm.bs_cache,
        # filled once from configfs and never reread
        if self.exists or 'block/%s' % name in self._lib.tcm.bs_cache:
            raise RTSLibError('Storage object block/%s exists' % name)
        if self._lib.utils.get_blockdev_type(str(dev)) != 0:
            raise RTSLibError('Device %s is not a TYPE_DISK block device'
                              % dev)
        if exclusive and self._lib.device_in_use(dev):
            raise RTSLibError('Cannot configure StorageObject because '
                              'device %s is already in use' % dev)
        self._create_in_cfs_ine('create', {
            'name': name, 'dev': str(dev), 'readonly': bool(readonly),
            'wwn': wwn or str(uuid.uuid4())})
        self._lib.tcm.bs_cache['block/%s' % name] = 0

    def __repr__(self):
        return '<BlockStorageObject block/%s>' % self._name

    def __eq__(self, other):
        return isinstance(other, BlockStorageObject) and \
            other.name == self.name

    def __hash__(self):
        return hash(self._path)

    @property
    def name(self):
        return self._name

    @property
    def udev_path(self):
        return self._state()['dev']

    @property
    def wwn(self):
        return self._state()['wwn']

    @wwn.setter
    def wwn(self, value):
        self._state()['wwn'] = value

    @property
    def attached_luns(self):
        self._check_self()
        for path, state in list(self._lib.cfs.items()):
            if isinstance(state, dict) and \
                    state.get('storage_object') == self._path:
                yield self._lib.lun_at(path)

    @property
    def status(self):
        return 'activated' if any(True for _ in self.attached_luns) \
            else 'deactivated'

    def delete(self, save=False):
        self._check_self()
        self._lib._maybe_fail('BlockStorageObject.delete')
        # rtslib-fb: "This will delete all attached LUNs currently using
        # the StorageObject object, and then the StorageObject itself."
        for lun in list(self.attached_luns):
            lun.delete()
        self._rmdir()
        self._lib.tcm.bs_cache.pop('block/%s' % self._name, None)

    def dump(self):
        state = self._state()
        return {'name': self.name, 'plugin': self.plugin,
                'dev': state['dev'], 'wwn': state['wwn'],
                'readonly': state['readonly'], 'write_back': False}


class RTSRoot(_Node):

    def __init__(self):
        if self._lib.root_error is not None:
            raise self._lib.root_error
        self._path = CONFIGFS
        self._lib.cfs.setdefault(CONFIGFS, {})

    @property
    def fabric_modules(self):
        yield self._lib.FabricModule('iscsi')

    @property
    def targets(self):
        for fabric in self.fabric_modules:
            for target in fabric.targets:
                yield target

    @property
    def tpgs(self):
        for target in self.targets:
            for tpg in target.tpgs:
                yield tpg

    @property
    def node_acls(self):
        for tpg in self.tpgs:
            for acl in tpg.node_acls:
                yield acl

    @property
    def luns(self):
        for tpg in self.tpgs:
            for lun in tpg.luns:
                yield lun

    @property
    def network_portals(self):
        for tpg in self.tpgs:
            for portal in tpg.network_portals:
                yield portal

    @property
    def storage_objects(self):
        prefix = CONFIGFS + '/core/'
        for path, state in list(self._lib.cfs.items()):
            if path.startswith(prefix) and path in self._lib.cfs:
                yield self._lib.BlockStorageObject(state['name'])

    def dump(self):
        return {'storage_objects': [so.dump() for so in
                                    self.storage_objects],
                'targets': [t.dump() for t in self.targets],
                'fabric_modules': []}

    def save_to_file(self, save_file=None, so_path=None):
        self._lib._maybe_fail('save_to_file')
        self._lib.saves.append((save_file or DEFAULT_SAVE_FILE,
                                copy.deepcopy(self.dump())))


_BASES = (Target, TPG, NetworkPortal, LUN, NodeACL, MappedLUN,
          BlockStorageObject, RTSRoot, ISCSIFabricModule)


class FakeRtslib(object):
    """One LIO configuration; use it where lio.py uses ``rtslib_fb``."""

    RTSLibError = RTSLibError
    RTSLibBrokenLink = RTSLibBrokenLink
    RTSLibNotInCFS = RTSLibNotInCFS
    RTSLibNotInCFSError = RTSLibNotInCFSError
    __version__ = __version__

    def __init__(self):
        self.cfs = {}           # configfs path -> state
        self.saves = []         # (file, dump()) per save_to_file()
        self.created = []       # (class name, path) in creation order
        self.deleted = []       # (class name, path) in deletion order
        self.busy_devices = set()   # devices held open elsewhere
        self.root_error = None
        self._failures = {}     # what -> [exception, ...]
        for base in _BASES:
            setattr(self, base.__name__,
                    type(base.__name__, (base,), {'_lib': self}))
        self._iscsi = self.ISCSIFabricModule
        # rtslib_fb.tcm: only its process-wide backstore cache
        self.tcm = types.SimpleNamespace(bs_cache={})
        # rtslib_fb.utils: the udev lookup of a device's SCSI type
        self.utils = types.SimpleNamespace(
            get_blockdev_type=self._blockdev_type)
        self.udev_late = {}     # device -> lookups that find no device yet

    def _blockdev_type(self, dev):
        """0 (TYPE_DISK) for /dev paths, None while udev is late or else."""
        if self.udev_late.get(dev):
            self.udev_late[dev] -= 1
            return None
        return 0 if dev.startswith('/dev/') else None

    def clear_elsewhere(self):
        """Empty configfs from another process (``targetcli clearconfig``).

        This process's rtslib keeps its stale backstore cache.
        """
        self.cfs.clear()

    # -- rtslib_fb.FabricModule -------------------------------------------

    def FabricModule(self, name):
        if name != 'iscsi':
            raise KeyError(name)    # the fake has only the iSCSI fabric
        return self._iscsi()

    # -- failure injection -------------------------------------------------

    def fail(self, what, error=None, times=1, after=0):
        """Make ``times`` calls of ``what`` raise, after ``after`` others.

        ``what``: a class name (its constructor), ``'<Class>.delete'``,
        ``'set_attribute'`` or ``'save_to_file'``; ``error``: an exception
        or a message for RTSLibError.
        """
        if error is None:
            error = 'injected failure of %s' % what
        if isinstance(error, str):
            error = RTSLibError(error)
        self._failures[what] = [None] * after + [error] * times

    def fail_root(self, error='Could not load module: target_core_mod'):
        """RTSRoot() raises (target modules missing), until cleared."""
        self.root_error = RTSLibError(error) if isinstance(error, str) \
            else error

    def _maybe_fail(self, what):
        pending = self._failures.get(what)
        if pending:
            error = pending.pop(0)
            if error is not None:
                raise error

    # -- inspection ------------------------------------------------------

    def device_in_use(self, dev):
        return dev in self.busy_devices or any(
            isinstance(s, dict) and s.get('dev') == dev
            for p, s in self.cfs.items() if '/core/' in p)

    def lun_at(self, path):
        tpg_path, _lun, name = path.rsplit('/', 2)
        target_path, tpg_name = tpg_path.rsplit('/', 1)
        target = self.Target(self.FabricModule('iscsi'),
                             target_path.rsplit('/', 1)[1], 'lookup')
        tpg = self.TPG(target, int(tpg_name.split('_')[1]), 'lookup')
        return self.LUN(tpg, int(name.split('_')[1]))

    def dump(self):
        """The whole configuration, as save_to_file() would write it."""
        root = self.RTSRoot.__new__(self.RTSRoot)
        root._path = CONFIGFS
        return copy.deepcopy(root.dump())

    @property
    def saved(self):
        """The configuration of the last save, or None."""
        return self.saves[-1][1] if self.saves else None

    def target(self, iqn):
        """The exported target as a dump() dict, or None."""
        for target in self.dump()['targets']:
            if target['wwn'] == iqn.lower():
                return target
        return None

    def storage_object(self, name):
        for so in self.dump()['storage_objects']:
            if so['name'] == name:
                return so
        return None
