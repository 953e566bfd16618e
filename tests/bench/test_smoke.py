"""Every bench runs at its --smoke size, so one that stops working is noticed.

Each bench runs as users run it (`python -m bench.<name> --smoke`, in a
subprocess from the repository root) and must write its results file; a
bench that needs what is not installed here (apache_beam, torch) or data
that is absent says so in one line, and its test is skipped with that
reason. The benches are found in bench/, so a new one is covered unless it
is one of the shared modules.
"""

import json
import os
import pathlib
import re
import sys

import pytest

import bench
from tests.fixtures import processes

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCHES = sorted(
    path.stem
    for path in (REPO / "bench").glob("*.py")
    if path.stem not in bench.SHARED_MODULES
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", BENCHES)
def test_smoke_run_writes_results(name, tmp_path):
    result = processes.run_whole_group(
        [
            sys.executable,
            "-m",
            f"bench.{name}",
            "--smoke",
            f"--results_dir={tmp_path}",
        ],
        cwd=REPO,
        timeout=900,
        # OpenBLAS's threads spin while they wait: on a busy 2-core machine
        # one 1280-d eigh (the adaptation's) took 11 s with them, 0.8 s
        # without.
        env=dict(
            os.environ, TF_CPP_MIN_LOG_LEVEL="2", OPENBLAS_NUM_THREADS="1"
        ),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    skipped = re.search(rf"^bench\.{name} skipped: (.*)$", result.stdout, re.M)
    if skipped:
        pytest.skip(skipped.group(1))
    written = sorted(tmp_path.glob(f"{name}*.json"))
    assert written, f"no results file in {tmp_path}:\n{result.stdout[-2000:]}"
    for path in written:
        record = json.loads(path.read_text())
        assert record["bench"] == name
        assert record["command"].startswith(f"python -m bench.{name} --smoke")
        assert record["smoke"] is True
        assert record["machine"]["cores"] >= 1
        assert record["date"] and "commit" in record and "flags" in record
        assert record["rows"], f"{path.name} has no rows"
