"""The dependency scenario table of the unit tier, on real OpenZFS."""

import ddt

from tests.functional import base
from tests import scenarios


@ddt.ddt
class RealDependencyTestCase(base.LabTestCase):

    @ddt.data(*sorted(scenarios.SCENARIOS))
    def test_scenario(self, name):
        runner = scenarios.ScenarioRunner(self.driver, self.assert_usable)
        runner.play(scenarios.SCENARIOS[name])
        # assert_host_clean runs at cleanup: nothing may be left behind.
