"""Trains a small MLP with IVON on one or two logical CPUs; prints JSON.

Run as a separate process: logical devices must be set before TF starts.
Usage: python ivon_mirrored.py NUM_REPLICAS
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

num_replicas = int(sys.argv[1])
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_uq  # noqa: E402

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(128, 5)).astype("float32")
labels = (x[:, 0] - x[:, 1] > 0).astype("int64")

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"][:num_replicas])
with strategy.scope():
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(seed=3)),
            keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=4)),
        ]
    )
    optimizer = tfp_uq.optimizers.IVON(learning_rate=0.1, ess=len(x), beta2=0.99, seed=7)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x, labels, batch_size=32, epochs=3, shuffle=False, verbose=0).history
kernel = model.layers[0].kernel
replicas = [np.asarray(v) for v in strategy.experimental_local_results(kernel.value)]
print(
    json.dumps(
        {
            "history": {k: [float(v) for v in vals] for k, vals in history.items()},
            "kernel": kernel.numpy().tolist(),
            "replicas_agree": all(np.array_equal(r, replicas[0]) for r in replicas),
            "hessian": optimizer.slots(kernel)["hessian"].numpy().tolist(),
            "std": optimizer.posterior_std(kernel).numpy().tolist(),
        }
    )
)
