"""`tfp-uq demo`: why Bayesian layers, shown on scikit-learn's bundled digits.

Trains several models on digits 0-8 (8x8 images), holds digit 9 out as
out-of-distribution inputs, and prints one table of accuracy, NLL, ECE,
Brier score and OOD AUROC (predictive entropy as the score) per model. The
Laplace row trains nothing: it fits a last-layer Laplace posterior (with
`tfp_uq.laplace.fit`'s defaults) to the plain MLP of the row above it.
"""

import os
import time

import numpy as np

OOD_CLASS = 9


def load_digits_split(seed=0):
    """Standardised digits: (x_train, y_train, x_test, y_test, x_ood)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_ood = x[y == OOD_CLASS]
    x_in, y_in = x[y != OOD_CLASS], y[y != OOD_CLASS]
    x_train, x_test, y_train, y_test = train_test_split(x_in, y_in, test_size=0.3, random_state=seed, stratify=y_in)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-3
    scale = lambda a: ((a - mean) / std).astype("float32")  # noqa: E731
    return scale(x_train), y_train, scale(x_test), y_test, scale(x_ood)


MODELS = (
    ("plain MLP", "plain"),
    ("Laplace (LL)", "laplace"),
    ("MC dropout", "mc_dropout"),
    ("Flipout BNN", "flipout"),
    ("deep ensemble", "ensemble"),
)


def run(output_dir="demo_output", epochs=60, seed=0, export=True, quiet=False, models=MODELS):
    """Runs the demo for `models` (`(name, method)` pairs of `MODELS`); returns the table rows as a list of dicts."""
    import keras

    import tfp_uq
    from tfp_uq import _recipes, metrics

    say = (lambda *a: None) if quiet else print
    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test, x_ood = load_digits_split(seed)
    num_classes = int(y_train.max()) + 1
    os.makedirs(output_dir, exist_ok=True)
    say(
        f"digits: {len(x_train)} training and {len(x_test)} test images of 0-{num_classes - 1}; "
        f"{len(x_ood)} images of {OOD_CLASS} held out as out-of-distribution"
    )
    rows, plain = [], None
    for name, method in models:
        start = time.perf_counter()
        if method == "laplace" and plain is not None:
            model = plain  # the posterior of the plain MLP already trained, not of another one
        else:
            model = _recipes.build(
                method,
                x_train.shape[1],
                "classification",
                num_classes,
                len(x_train),
                hidden=(128, 128),
                dropout_rate=0.2,
                seed=seed,
            )
            model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
            if method == "plain":
                plain = model
        model = _recipes.after_training(method, model, x_train, y_train)
        num_samples = _recipes.num_predict_samples(method, 100)
        test = tfp_uq.predict(model, x_test, num_samples=num_samples, seed=seed)
        ood = tfp_uq.predict(model, x_ood, num_samples=num_samples, seed=seed)
        row = {
            "model": name,
            "accuracy": metrics.accuracy(test.probs, y_test),
            "nll": metrics.negative_log_likelihood(test.probs, y_test),
            "ece": metrics.expected_calibration_error(test.probs, y_test),
            "brier": metrics.brier_score(test.probs, y_test),
            "ood_auroc": metrics.auroc(
                np.concatenate([test.total_entropy, ood.total_entropy]),
                np.concatenate([np.zeros(len(x_test)), np.ones(len(x_ood))]),
            ),
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        say(f"  {'fitted' if method == 'laplace' else 'trained'} and evaluated {name} in {row['seconds']:.0f} s")
        _plots(output_dir, method, test, y_test, ood, say)
        if export and method == "flipout":
            path = os.path.join(output_dir, "flipout_savedmodel")
            tfp_uq.export(model, path, num_samples=num_samples, task="classification", overwrite=True)
            say(f"  exported the Flipout BNN as a SavedModel serving uncertainty: {path}")
    say("")
    say(format_table(rows))
    say(f"\nPlots in {os.path.abspath(output_dir)}")
    return rows


def _plots(output_dir, tag, test, y_test, ood, say):
    try:
        from tfp_uq import plots
    except ImportError:
        return
    plots.reliability_diagram(
        test.probs, y_test, title=f"{tag}: reliability", path=os.path.join(output_dir, f"{tag}_reliability.png")
    )
    errors = (test.predicted_class != y_test).astype(float)
    plots.risk_coverage(
        test.total_entropy,
        errors,
        title=f"{tag}: risk-coverage",
        path=os.path.join(output_dir, f"{tag}_risk_coverage.png"),
    )
    plots.uncertainty_histogram(
        test.total_entropy,
        ood.total_entropy,
        score_name="predictive entropy",
        path=os.path.join(output_dir, f"{tag}_ood_entropy.png"),
    )


def format_table(rows):
    header = f"{'model':14s} {'accuracy':>9s} {'NLL':>7s} {'ECE':>7s} {'Brier':>7s} {'OOD AUROC':>10s}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['model']:14s} {row['accuracy']:9.3f} {row['nll']:7.3f} {row['ece']:7.3f} "
            f"{row['brier']:7.3f} {row['ood_auroc']:10.3f}"
        )
    lines.append("(NLL, ECE, Brier: lower is better; OOD AUROC: digit 9 vs test set by predictive entropy)")
    return "\n".join(lines)
