"""Per-test results of a subunit v2 stream, as JSON (run in tempest's venv).

    stestr last --subunit | python tempest/results.py > results.json

{test_id: {"status": "success|skip|fail|...", "reason": "...",
           "seconds": 1.2}}; setUpClass/tearDownClass failures appear under
their own ids (e.g. "setUpClass (tempest.api.volume.X)").
"""

import json
import sys

import subunit
import testtools


def main() -> int:
    stream = subunit.ByteStreamToStreamResult(
        sys.stdin.buffer, non_subunit_name='stdout')
    out = {}

    def on_test(test):
        tid = test['id']
        if test['status'] in (None, 'exists'):
            return
        reason = ''
        details = test.get('details') or {}
        if 'reason' in details:
            reason = details['reason'].as_text()
        elif test['status'] in ('fail', 'uxsuccess'):
            tb = details.get('traceback')
            if tb is not None:
                lines = tb.as_text().strip().splitlines()
                reason = '\n'.join(lines[-6:])
        ts = test.get('timestamps') or [None, None]
        secs = None
        if ts[0] and ts[1]:
            secs = round((ts[1] - ts[0]).total_seconds(), 1)
        out[tid] = {'status': test['status'], 'reason': reason,
                    'seconds': secs}

    result = testtools.StreamToDict(on_test)
    result.startTestRun()
    try:
        stream.run(result)
    finally:
        result.stopTestRun()
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
