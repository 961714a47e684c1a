"""Long runs survive a kill: `fit` with BackupAndRestore, and HMC with a checkpoint folder."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfp_uq.inference import sample_posterior

SCRIPT = os.path.join(os.path.dirname(__file__), "_scripts", "resumable_fit.py")


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_fit_killed_mid_epoch_and_resumed_ends_as_an_uninterrupted_run(tmp_path):
    whole = _run(tmp_path / "backup_whole", tmp_path / "whole.npz")
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _run(tmp_path / "backup", tmp_path / "resumed.npz", 21)  # epoch 4 of 6, batch 3 of 6
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / "resumed.npz").exists()
    resumed = _run(tmp_path / "backup", tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with np.load(tmp_path / "whole.npz") as a, np.load(tmp_path / "resumed.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:  # weights, posterior scales, KL weights, seed states, Adam's moments
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _linear(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 2)).astype("float32")
    y = (x @ np.array([[1.0], [-0.5]]) + 0.3 * rng.normal(size=(40, 1))).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    return model, x, y


class _Killed(Exception):
    pass


@pytest.mark.slow  # two HMC runs and a resumed one (~30 s), like the other kill/resume tests
def test_sampling_resumed_from_a_checkpoint_folder_gives_the_uninterrupted_draws(tmp_path, monkeypatch):
    from tfp_uq.inference import hmc

    model, x, y = _linear()
    options = dict(noise_scale=0.3, num_chains=2, num_burnin=60, num_results=60, chunk_size=20, seed=3, progress=False)
    whole = sample_posterior(model, x, y, **options)
    # The process dies right after its fourth chunk is saved (a SIGKILL at any later point of
    # that chunk leaves the same folder: the state file is replaced atomically).
    save, saved = hmc._Checkpoint.save, []

    def save_then_die(self, *args):
        save(self, *args)
        saved.append(args[0])
        if len(saved) == 4:
            raise _Killed

    monkeypatch.setattr(hmc._Checkpoint, "save", save_then_die)
    with pytest.raises(_Killed):
        sample_posterior(model, x, y, checkpoint_dir=tmp_path, **options)
    monkeypatch.setattr(hmc._Checkpoint, "save", save)
    assert saved == [20, 40, 60, 80]
    resumed = sample_posterior(model, x, y, checkpoint_dir=tmp_path, **options)
    np.testing.assert_array_equal(resumed.samples[0], whole.samples[0])
    np.testing.assert_array_equal(resumed.samples[1], whole.samples[1])
    assert resumed.diagnostics["num_divergences"] == whole.diagnostics["num_divergences"]
    # A folder of another run is refused rather than mixed in.
    with pytest.raises(ValueError, match="checkpoint_dir"):
        sample_posterior(model, x, y, checkpoint_dir=tmp_path, **dict(options, seed=4))
