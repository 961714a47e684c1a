"""Trains small tfp_uq models on the JAX backend; prints a JSON summary.

Run as a subprocess (the Keras backend is fixed when keras is imported).
"""

import json
import os
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import tfp_uq  # noqa: E402


@keras.saving.register_keras_serializable(package="jax_run")
class PixelIndices(keras.layers.Layer):
    """Digits' pixels (0..1 in steps of 1/16) as integer indices, for an embedding."""

    def call(self, x):
        return keras.ops.cast(keras.ops.round(x * 16.0), "int32")


def _body(name, cls):
    """The layers under test between the 64 pixels and the softmax head."""
    image = [keras.layers.Reshape((8, 8, 1))]
    if name in ("Conv2DFlipout", "SeparableConv2DFlipout"):
        return image + [cls(8, 3, activation="relu", seed=1), keras.layers.Flatten()]
    if name == "Conv2DTransposeFlipout":
        return image + [cls(4, 3, strides=2, activation="relu", seed=1), keras.layers.Flatten()]
    if name == "DepthwiseConv2DFlipout":
        return image + [cls(3, depth_multiplier=8, activation="relu", seed=1), keras.layers.Flatten()]
    if name.startswith(("LSTM", "GRU")):
        return [keras.layers.Reshape((8, 8)), cls(32, return_sequences=True, seed=1), keras.layers.Flatten()]
    if name == "EinsumDenseFlipout":
        return [cls("ab,bc->ac", 32, bias_axes="c", activation="relu", seed=1)]
    if name == "EmbeddingReparameterization":
        return [PixelIndices(), cls(17, 2, seed=1), keras.layers.Flatten()]
    return [cls(32, activation="relu", seed=1)]


def main():
    assert keras.backend.backend() == "jax"
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    summary = {}
    for name in sys.argv[1:]:
        cls = getattr(tfp_uq.layers, name)
        keras.utils.set_random_seed(0)
        body = _body(name, cls)
        model = keras.Sequential([keras.Input((64,)), *body, tfp_uq.DenseFlipout(10, activation="softmax", seed=2)])
        tfp_uq.set_kl_weight(model, num_examples=len(x_train))
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", jit_compile=True)
        callbacks = [
            tfp_uq.callbacks.KLAnnealing(warmup=50, num_examples=len(x_train)),
            tfp_uq.callbacks.CalibrationLogger((x_test, y_test), num_samples=5),
        ]
        history = model.fit(x_train, y_train, epochs=8, batch_size=64, verbose=0, callbacks=callbacks)
        result = tfp_uq.predict(model, x_test, num_samples=20, seed=3)
        again = tfp_uq.predict(model, x_test, num_samples=20, seed=3)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        reloaded = tfp_uq.predict(loaded, x_test, num_samples=20, seed=3)
        layer = tfp_uq.bayesian_layers(model)[0]
        closed_form = sum(
            float(np.sum(0.5 * (s**2 + m**2) - np.log(s) - 0.5))
            for m, s in (
                (np.asarray(layer.posterior_loc(weight)), np.asarray(layer.posterior_scale(weight)))
                for weight in layer.posteriors
            )
        )
        summary[name] = {
            "val_ece": history.history["val_ece"],
            "kl_weight": float(np.asarray(layer.kl_weight_variable)),
            "accuracy": float(np.mean(np.argmax(result.probs, -1) == y_test)),
            "same_seed_max_diff": float(np.max(np.abs(np.asarray(result.probs) - np.asarray(again.probs)))),
            "reloaded_max_diff": float(np.max(np.abs(np.asarray(result.probs) - np.asarray(reloaded.probs)))),
            "kl": float(layer.kl_divergence()),
            "kl_closed_form": closed_form,
            "mutual_information": float(np.mean(result.mutual_information)),
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
