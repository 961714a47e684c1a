"""Trains a small Bayesian model with BackupAndRestore; can kill itself mid-run.

Usage: python resumable_fit.py BACKUP_DIR RESULT.npz [KILL_AT_STEP]
With KILL_AT_STEP the process sends itself SIGKILL after that many training
steps (mid-epoch); run it again without it to resume and finish. The final
variables (weights, optimizer, KL weights, seed states) go to RESULT.npz.
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_uq  # noqa: E402

backup, result = sys.argv[1], sys.argv[2]
kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else None

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 4)).astype("float32")
y = (x @ np.array([[1.0], [-1.0], [0.5], [0.0]]) + 0.1 * rng.normal(size=(96, 1))).astype("float32")
model = keras.Sequential(
    [
        keras.Input((4,)),
        tfp_uq.layers.DenseFlipout(8, activation="relu", seed=1),
        tfp_uq.layers.DenseReparameterization(2, seed=2),
        tfp_uq.layers.GaussianHead(),
    ]
)
model.compile(keras.optimizers.Adam(0.01), tfp_uq.losses.GaussianNLL())


class KillAt(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if kill_at is not None and self.steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


callbacks = [
    tfp_uq.callbacks.KLAnnealing("linear", warmup=20, num_examples=len(x)),
    keras.callbacks.BackupAndRestore(backup),
    KillAt(),
]
model.fit(x, y, epochs=6, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
state = {f"v{i}": np.asarray(v) for i, v in enumerate(model.variables)}
state.update({f"o{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
np.savez(result, **state)
