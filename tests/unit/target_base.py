"""A target of cinder_zol.targets over a mocked storage host: the set-up
every protocol's driver-side tests share."""

from unittest import mock

from cinder import context
from cinder.tests.unit import test
from cinder.volume import configuration as conf
from cinder.volume import driver as volume_driver
from cinder.volume.drivers.san import san

from cinder_zol import options
from cinder_zol import targets
from tests import scenarios


class TargetTestBase(test.TestCase):
    """``self.target`` for CONF; the storage host answers ANSWER."""

    EXTRA_OPTS = ()       # Cinder's option lists of the protocol
    CONF = {}             # backend options besides san_ip
    ANSWER = {}           # what storage.target() returns

    def setUp(self):
        super().setUp()
        self.ctxt = context.get_admin_context()
        self.configuration = conf.Configuration(options.ALL_OPTS,
                                                config_group='zol')
        for opts in (san.san_opts, volume_driver.volume_opts,
                     *self.EXTRA_OPTS):
            self.configuration.append_config_values(opts)
        self.set_conf(san_ip='192.0.2.10', **self.CONF)
        self.storage = mock.Mock()
        self.storage.target.return_value = dict(self.ANSWER)
        self.target = targets.get_target(self.configuration, self.storage)

    def set_conf(self, **kwargs):
        for key, value in kwargs.items():
            self.override_config(key, value, 'zol')

    def volume(self, **kwargs):
        return scenarios.make_volume(self.ctxt, 1, **kwargs)
