"""Serving an export in a fresh process that cannot import tfp_uq (shared by the export tests)."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "_scripts", "serve_export.py")
SCRIPT_MANY = os.path.join(os.path.dirname(__file__), "_scripts", "serve_exports.py")
NO_TFP_UQ = {**os.environ, "PYTHONPATH": ""}  # the served process cannot import tfp_uq


def _run(arguments, folder):
    completed = subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=300, cwd=str(folder), env=NO_TFP_UQ
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def serve_in_fresh_process(path, x, folder):
    """What tests/_scripts/serve_export.py prints for export `path` on inputs `x` (a dict)."""
    np.save(folder / "x.npy", x)
    return _run([SCRIPT, str(path), str(folder / "x.npy")], folder)


def serve_many_in_fresh_process(requests, folder):
    """What tests/_scripts/serve_exports.py prints for `requests`, (export path, inputs) pairs, served in order.

    One process (one TensorFlow import) serves them all; the dict's "outputs" is a list, one entry per request.
    """
    arguments = [SCRIPT_MANY]
    for index, (path, x) in enumerate(requests):
        np.save(folder / f"x{index}.npy", x)
        arguments += [str(path), str(folder / f"x{index}.npy")]
    return _run(arguments, folder)
