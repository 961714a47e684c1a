"""Converting a trained Keras CNN into a Bayesian one with bayesianize (about 40 s).

Trains a small CNN on 8x8 digits, converts it with MOPED initialisation
(posterior means at the trained weights, scales at delta * |w|), fine-tunes
the Bayesian model briefly, and compares accuracy, NLL, ECE and the
uncertainty on noise images before and after.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parse(__doc__.split("\n")[0], argv)
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    import tfp_uq

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    noise = np.random.default_rng(0).uniform(size=(200, 8, 8, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    cnn.compile("adam", "sparse_categorical_crossentropy")
    cnn.fit(x_train, y_train, epochs=2 if args.quick else 30, batch_size=64, verbose=0)

    bnn = tfp_uq.bayesianize(cnn, method="flipout", moped_delta=0.1, num_examples=len(x_train), seed=0)
    bnn.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", jit_compile=True)
    bnn.fit(x_train, y_train, epochs=1 if args.quick else 10, batch_size=64, verbose=0)

    print(f"{'model':10s} {'accuracy':>9s} {'NLL':>7s} {'ECE':>7s} {'noise entropy':>14s}")
    for name, model, samples in (("CNN", cnn, 1), ("Bayesian", bnn, 100)):
        test = tfp_uq.predict(model, x_test, num_samples=samples, seed=0)
        ood = tfp_uq.predict(model, noise, num_samples=samples, seed=0)
        print(
            f"{name:10s} {tfp_uq.metrics.accuracy(test.probs, y_test):9.3f} "
            f"{tfp_uq.metrics.negative_log_likelihood(test.probs, y_test):7.3f} "
            f"{tfp_uq.metrics.expected_calibration_error(test.probs, y_test):7.3f} {ood.total_entropy.mean():14.3f}"
        )
    return bnn


if __name__ == "__main__":
    main()
