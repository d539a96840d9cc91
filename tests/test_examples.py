"""Every example script runs top to bottom in quick mode (so the examples never rot)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_in_quick_mode(script, tmp_path):
    env = dict(os.environ, N2V_TF_QUICK="1", TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
