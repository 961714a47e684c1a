"""A binary diagnosis model that knows when to refer (about 30 s).

Breast cancer diagnosis (scikit-learn's bundled Wisconsin data): a Keras MLP
ending in one sigmoid unit, with DenseFlipout in place of Dense, KL annealing
and calibration logging as the two callbacks of `fit`. tfp_uq reads the one
sigmoid unit as the two classes [1 - p, p]: it prints test accuracy, NLL and
ECE, then refers the 10% most uncertain patients (highest predictive
entropy) to a person and shows the accuracy on the rest, writes a
reliability diagram and exports a SavedModel that serves the referral flag.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parse(__doc__.split("\n")[0], argv)
    import keras
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    import tfp_uq

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mean, std = x_train.mean(0), x_train.std(0)
    x_train, x_test = ((x_train - mean) / std).astype("float32"), ((x_test - mean) / std).astype("float32")

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            tfp_uq.DenseFlipout(32, activation="relu", seed=1),  # was keras.layers.Dense
            tfp_uq.DenseFlipout(1, activation="sigmoid", seed=2),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy", metrics=["accuracy"])
    epochs = 3 if args.quick else 60
    callbacks = [
        tfp_uq.callbacks.KLAnnealing("linear", warmup=200, num_examples=len(x_train)),
        tfp_uq.callbacks.CalibrationLogger((x_test, y_test), num_samples=20, every=min(10, epochs)),
    ]
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)

    result = tfp_uq.predict(model, x_test, num_samples=200, seed=0)
    print(
        f"test accuracy {tfp_uq.metrics.accuracy(result.probs, y_test):.3f}, "
        f"NLL {tfp_uq.metrics.negative_log_likelihood(result.probs, y_test):.3f}, "
        f"ECE {tfp_uq.metrics.expected_calibration_error(result.probs, y_test, num_bins=10):.3f} "
        f"(last logged val_ece {history.history['val_ece'][-1]:.3f})"
    )
    threshold = float(np.quantile(result.total_entropy, 0.9))
    refer = tfp_uq.selective.should_refer(result.total_entropy, threshold)
    kept = ~refer
    print(
        f"referring {refer.mean():.0%} of patients (entropy > {threshold:.3f}): accuracy on the rest "
        f"{tfp_uq.metrics.accuracy(result.probs[kept], y_test[kept]):.3f}"
    )
    tfp_uq.plots.reliability_diagram(
        result.probs,
        y_test,
        num_bins=10,
        title="Breast cancer, DenseFlipout",
        path=os.path.join(args.output, "diagnosis_reliability.png"),
    )
    path = tfp_uq.export(
        model, os.path.join(args.output, "diagnosis_savedmodel"), num_samples=100, threshold=threshold, overwrite=True
    )
    print(f"exported to {path}: serve(x) returns probs, entropy, mutual_information, refer, ...")
    return result


if __name__ == "__main__":
    main()
