"""tf.distribute.MirroredStrategy on two logical CPUs matches one device."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "_scripts", "mirrored_run.py")


def _run(num_replicas, layer):
    completed = subprocess.run(
        [sys.executable, SCRIPT, str(num_replicas), layer], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["DenseReparameterization", "DenseFlipout", "DenseLocalReparameterization"])
def test_two_replicas_match_one_device(layer):
    one, two = _run(1, layer), _run(2, layer)
    assert set(one["history"]) == set(two["history"])
    for key in ("loss", "kl_loss", "data_loss", "accuracy", "val_ece", "val_nll", "val_brier"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(two["kl_after"], one["kl_after"], rtol=1e-5)
    np.testing.assert_allclose(two["kernel"], one["kernel"], rtol=1e-5, atol=1e-6)


def _free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_localhost_agree():
    script = os.path.join(os.path.dirname(__file__), "_scripts", "multi_worker.py")
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config)}
        processes.append(
            subprocess.Popen(
                [sys.executable, script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    first, second = results
    np.testing.assert_allclose(first["losses"], second["losses"], rtol=1e-6)
    np.testing.assert_allclose(first["kernel"], second["kernel"], rtol=1e-6)
    np.testing.assert_allclose(first["scale"], second["scale"], rtol=1e-6)
    assert np.mean(first["losses"][-5:]) < np.mean(first["losses"][:5])
