# The scripts of examples/python run as a user would run them, and say they passed.
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python")


@pytest.mark.parametrize("script, says", [
    ("torch_npu_dispatch_combine.py", "bit for bit"),
    ("native_threads.py", "bit for bit"),
])
def test_example_runs_and_checks_itself(script, says):
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, script)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, MOE_EP_TIMEOUT_MS="60000"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert says in done.stdout
