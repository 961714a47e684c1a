"""Serving an export in a fresh process that cannot import tfp_uq (shared by the export tests)."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "_scripts", "serve_export.py")
NO_TFP_UQ = {**os.environ, "PYTHONPATH": ""}  # the served process cannot import tfp_uq


def serve_in_fresh_process(path, x, folder):
    """What tests/_scripts/serve_export.py prints for export `path` on inputs `x` (a dict)."""
    np.save(folder / "x.npy", x)
    completed = subprocess.run(
        [sys.executable, SCRIPT, str(path), str(folder / "x.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(folder),
        env=NO_TFP_UQ,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
