# pytest set-up of the Python suite: the package and the golden model on the path, one seed per run (printed, replayable).
import os
import random
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))


def pytest_report_header(config):
    return f"moe_ep Python suite: seed {SEED} (replay with MOE_EP_TEST_SEED={SEED})"


def pytest_terminal_summary(terminalreporter):
    # Also under -q (as CTest runs the suite), where the header is not shown.
    terminalreporter.write_line(f"moe_ep Python suite: seed {SEED} (replay with MOE_EP_TEST_SEED={SEED})")


SEED = int(os.environ.get("MOE_EP_TEST_SEED") or random.SystemRandom().randrange(2**31))
print(f"[moe_ep test] seed {SEED}")


@pytest.fixture
def seed():
    return SEED
