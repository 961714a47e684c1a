"""Trains an MLP with IVON on the JAX backend and samples its posterior; prints JSON.

Run as a subprocess (the Keras backend is fixed when keras is imported).
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_uq  # noqa: E402

assert keras.backend.backend() == "jax"
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(128, 5)).astype("float32")
labels = (x[:, 0] - x[:, 1] > 0).astype("int64")
model = keras.Sequential(
    [keras.Input((5,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2, activation="softmax")]
)
optimizer = tfp_uq.optimizers.IVON(learning_rate=0.1, ess=len(x), beta2=0.99, seed=7)
model.compile(optimizer, "sparse_categorical_crossentropy")
losses = model.fit(x, labels, batch_size=32, epochs=8, shuffle=False, verbose=0).history["loss"]
posterior = optimizer.posterior(model)
sample = jax.jit(lambda inputs, seed: posterior.sample_outputs(inputs, 16, seed))
samples = np.asarray(sample(x[:10], np.array([1, 2], "int32")))
kernel = model.trainable_variables[0]
print(
    json.dumps(
        {
            "losses": losses,
            "mean_is_model": bool(np.array_equal(np.asarray(optimizer.posterior_mean(kernel)), kernel.numpy())),
            "samples_shape": list(samples.shape),
            "samples_spread": float(samples.std(0).max()),
            "again_equal": bool(np.array_equal(samples, np.asarray(sample(x[:10], np.array([1, 2], "int32"))))),
        }
    )
)
