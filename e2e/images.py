"""e2e scenarios: volumes from Glance images and images from volumes.

Mixed into ``run.E2E``; ``SCENARIOS`` rows are appended to run.py's table
as (number, name, method, numbers it needs).
"""


class Scenarios:
    pass


SCENARIOS: list = []
