"""e2e scenarios: concurrent operations, several attachments, faults, load.

Mixed into ``run.E2E``; ``SCENARIOS`` rows are appended to run.py's table
as (number, name, method, numbers it needs).
"""


class Scenarios:
    pass


SCENARIOS: list = []
