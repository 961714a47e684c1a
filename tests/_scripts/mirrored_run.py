"""Trains a small Bayesian model on one or two logical CPUs; prints JSON.

Run as a separate process: logical devices must be set before TF starts.
Usage: python mirrored_run.py NUM_REPLICAS LAYER_CLASS
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

num_replicas, layer_name = int(sys.argv[1]), sys.argv[2]
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_uq  # noqa: E402

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(128, 5)).astype("float32")
labels = (x[:, 0] - x[:, 1] > 0).astype("int64")
layer_class = getattr(tfp_uq.layers, layer_name)
# Reparameterization draws one weight sample per call from a mirrored seed,
# so each replica draws the single-device sample; per-example noise
# (Flipout, local reparameterization) depends on the batch split, so those
# layers run deterministic (the KL term is still added and counted).
kwargs = {} if layer_name == "DenseReparameterization" else {"deterministic": True}

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"][:num_replicas])
with strategy.scope():
    model = keras.Sequential(
        [
            keras.Input((5,)),
            layer_class(
                8,
                activation="tanh",
                seed=1,
                kernel_initializer=keras.initializers.GlorotUniform(seed=3),
                posterior_scale_init=0.05,
                **kwargs,
            ),
            layer_class(
                2,
                activation="softmax",
                seed=2,
                kernel_initializer=keras.initializers.GlorotUniform(seed=4),
                posterior_scale_init=0.05,
                **kwargs,
            ),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=len(x))
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
logger = tfp_uq.callbacks.CalibrationLogger((x, labels), num_samples=4, jit_compile=False)
history = model.fit(x, labels, batch_size=32, epochs=3, shuffle=False, verbose=0, callbacks=[logger]).history
kl = float(sum(float(l.kl_weight_variable.numpy()) * float(l.kl_divergence()) for l in tfp_uq.bayesian_layers(model)))
print(
    json.dumps(
        {
            "history": {k: [float(v) for v in vals] for k, vals in history.items()},
            "kl_after": kl,
            "kernel": model.layers[0].kernel.numpy().tolist(),
        }
    )
)
