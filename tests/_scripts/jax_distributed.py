"""Trains a small Bayesian model on the JAX backend, on one device or under keras.distribution; prints JSON.

Two virtual CPU devices (XLA_FLAGS, set before JAX starts) in every mode, so
the runs differ only in the distribution:

- "single": no distribution (one device);
- "data": `keras.distribution.DataParallel` over both devices (the batch is split, weights replicated);
- "model": `keras.distribution.ModelParallel` on a 1 x 2 mesh whose `LayoutMap` shards the posterior
  variables of the hidden layer (kernel and kernel_rho) over the "model" axis, by column.

Usage: python jax_distributed.py MODE:LAYER_CLASS ...   (e.g. single:DenseFlipout data:DenseFlipout)
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_uq  # noqa: E402


def _distribution(mode, devices):
    if mode == "single":
        return None
    if mode == "data":
        return keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), devices)
    layout_map = keras.distribution.LayoutMap(mesh)
    # Keys are regular expressions that must match a variable's whole path ("sequential/hidden/kernel_rho").
    layout_map[".*/hidden/kernel(_rho)?"] = (None, "model")
    layout_map[".*/hidden/bias(_rho)?"] = ("model",)
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def train(mode, layer_name, devices):
    """Fits the model under `mode`'s distribution; its history, KL, weights and predictions."""
    keras.distribution.set_distribution(_distribution(mode, devices))
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 5)).astype("float32")
    labels = (x[:, 0] - x[:, 1] > 0).astype("int64")
    layer_class = getattr(tfp_uq.layers, layer_name)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            layer_class(8, activation="tanh", seed=1, kernel_initializer=keras.initializers.GlorotUniform(seed=3),
                        posterior_scale_init=0.05, name="hidden"),
            layer_class(2, activation="softmax", seed=2, kernel_initializer=keras.initializers.GlorotUniform(seed=4),
                        posterior_scale_init=0.05, name="output"),
        ]
    )  # fmt: skip
    tfp_uq.set_kl_weight(model, num_examples=len(x))
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, labels, batch_size=32, epochs=3, shuffle=False, verbose=0).history
    weighted_kl = sum(
        float(np.asarray(layer.kl_weight_variable)) * float(layer.kl_divergence())
        for layer in tfp_uq.bayesian_layers(model)
    )
    hidden = model.get_layer("hidden")
    rho = hidden.posteriors["kernel"].rho
    result = tfp_uq.predict(model, x[:16], num_samples=8, seed=3)
    keras.distribution.set_distribution(None)
    return {
        "loss": [float(v) for v in history["loss"]],
        "accuracy": [float(v) for v in history["accuracy"]],
        "weighted_kl": weighted_kl,
        "kernel": np.asarray(hidden.kernel).tolist(),
        "kernel_devices": len(hidden.kernel.value.sharding.device_set),
        "kernel_shard_shape": list(hidden.kernel.value.sharding.shard_shape(tuple(hidden.kernel.shape))),
        "kernel_rho_shard_shape": list(rho.value.sharding.shard_shape(tuple(rho.shape))),
        "probs": result.probs.tolist(),
    }


def main():
    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == 2, devices
    runs = [argument.split(":") for argument in sys.argv[1:]]
    print(json.dumps({f"{mode}:{layer}": train(mode, layer, devices) for mode, layer in runs}))


if __name__ == "__main__":
    main()
