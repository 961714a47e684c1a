"""Digits classification with out-of-distribution detection (about 40 s on 2 CPU cores).

Trains a DenseFlipout MLP on scikit-learn's digits 0-8 and checks how well
its uncertainty separates the held-out digit 9 and random-noise images from
test digits, by predictive entropy and by mutual information (epistemic).
Writes a reliability diagram and OOD histograms.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parse(__doc__.split("\n")[0], argv)
    import keras
    import numpy as np

    import tfp_uq
    from tfp_uq._demo import load_digits_split

    x_train, y_train, x_test, y_test, x_nine = load_digits_split()
    noise = np.random.default_rng(0).normal(size=(200, x_train.shape[1])).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((x_train.shape[1],)),
            tfp_uq.DenseFlipout(128, activation="relu", seed=1),
            tfp_uq.DenseFlipout(9, activation="softmax", seed=2),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=len(x_train))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", jit_compile=True)
    model.fit(x_train, y_train, epochs=3 if args.quick else 60, batch_size=64, verbose=0)

    test = tfp_uq.predict(model, x_test, num_samples=100, seed=0)
    print(
        f"test accuracy {tfp_uq.metrics.accuracy(test.probs, y_test):.3f}, "
        f"ECE {tfp_uq.metrics.expected_calibration_error(test.probs, y_test):.3f}"
    )
    tfp_uq.plots.reliability_diagram(test.probs, y_test, path=os.path.join(args.output, "digits_reliability.png"))
    for name, x_ood in (("digit 9", x_nine), ("noise images", noise)):
        ood = tfp_uq.predict(model, x_ood, num_samples=100, seed=0)
        labels = np.r_[np.zeros(len(x_test)), np.ones(len(x_ood))]
        for score in ("total_entropy", "mutual_information"):
            auroc = tfp_uq.metrics.auroc(np.r_[getattr(test, score), getattr(ood, score)], labels)
            print(f"OOD {name:13s} AUROC by {score:18s} {auroc:.3f}")
        tfp_uq.plots.uncertainty_histogram(
            test.mutual_information,
            ood.mutual_information,
            score_name="mutual information",
            path=os.path.join(args.output, f"ood_{name.replace(' ', '_')}.png"),
        )
    return test


if __name__ == "__main__":
    main()
