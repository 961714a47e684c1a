"""How far variational layers get towards their posterior in the epochs a plain model needs.

Digits (scikit-learn's 8x8 images scaled to [0, 1] as in the README quickstart): classes
0-8, a stratified split of 75% for training (1,212 images) and 25% for testing; digit 9
and 500 images of uniform noise are the out-of-distribution sets. Each model trains with
Adam 1e-3, batch 64, for the quickstart's 30 epochs and for 10x that (`--budgets`):

- Bayesian MLPs 64-128-10 (ReLU, softmax) of DenseFlipout, DenseReparameterization and
  DenseLocalReparameterization, `set_kl_weight(model, num_examples=N)`, default arguments;
- a Conv2DFlipout CNN: two 3x3 convolutions (16 and 32 filters, ReLU, "same"), Flatten,
  DenseFlipout(10, softmax);
- beside them, the same MLP with `keras.layers.Dense` (plain), with MC dropout (rate 0.1
  after the hidden layer) and a deep ensemble of 5 plain MLPs, and the plain CNN.

Columns: the negative ELBO per training example (expected NLL over 20 posterior samples
plus KL / N, and the KL part), test accuracy, NLL and ECE (15 bins) of the 100-sample
predictive, AUROC of the mutual information separating noise images and digit 9 from test
digits, and the median and 90th percentile of the posterior standard deviation over all
Bayesian weights.

Then the conjugate case: Bayesian linear regression y = x w + b + e, 5 standard Normal
inputs, w = (1, -0.5, 0.25, 0.75, -1), b = 0.5, known noise e ~ N(0, 1), prior N(0, 1) on
w and b, one Bayesian Dense layer with the Gaussian negative log-likelihood, batch 32, 20
epochs, Adam 3e-2 cosine-decayed to 0, N = 300, 1,000 and 3,000 (`--sizes`), a few data
seeds (`--seeds`). It prints the range over weights and seeds of posterior std / its
mean-field optimum 1 / sqrt(diag(precision)) and the largest |mean - exact posterior mean|
in units of that optimum; a plain `keras.layers.Dense` row gives the optimizer's own
distance to the exact mean in the same units.

Run:  .venv/bin/python benchmarks/posterior_convergence.py            (about 25 minutes on 2 cores)
      .venv/bin/python benchmarks/posterior_convergence.py --short    (30 epochs only, no CNN: ~3 min)
Options: --models flipout,plain,...  --budgets 1,10  --sizes 300,1000,3000  --seeds 3
         --skip-digits  --skip-conjugate
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EPOCHS = 30
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
NUM_NOISE_IMAGES = 500
OOD_CLASS = 9
MODELS = (
    "flipout",
    "reparameterization",
    "local_reparameterization",
    "conv_flipout",
    "plain",
    "mc_dropout",
    "ensemble",
    "plain_cnn",
)
_DENSE = {
    "flipout": "DenseFlipout",
    "reparameterization": "DenseReparameterization",
    "local_reparameterization": "DenseLocalReparameterization",
}
CONJUGATE_WEIGHTS = (1.0, -0.5, 0.25, 0.75, -1.0)
CONJUGATE_BIAS = 0.5


def digits(seed=0):
    """(x_train, y_train, x_test, y_test, x_nine, x_noise): the quickstart's digits split."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    inside = y != OOD_CLASS
    x_train, x_test, y_train, y_test = train_test_split(
        x[inside], y[inside], test_size=0.25, random_state=seed, stratify=y[inside]
    )
    noise = np.random.default_rng(seed).uniform(size=(NUM_NOISE_IMAGES, x.shape[1])).astype("float32")
    return x_train, y_train, x_test, y_test, x[~inside], noise


def build(name, num_train, seed=0):
    """The compiled model `name` (one of MODELS) for 64-pixel digits, 9 classes."""
    import keras

    import tfp_uq
    from tfp_uq import layers
    from tfp_uq.ensembles import DeepEnsemble

    num_classes = OOD_CLASS
    if name == "ensemble":

        def member(member_seed):
            return build("plain", num_train, member_seed)

        model = DeepEnsemble(member, num_members=5, seed=seed)
    elif name in ("conv_flipout", "plain_cnn"):
        conv = layers.Conv2DFlipout if name == "conv_flipout" else keras.layers.Conv2D
        dense = layers.DenseFlipout if name == "conv_flipout" else keras.layers.Dense
        seeds = ({"seed": seed + i} for i in range(3)) if name == "conv_flipout" else ({} for _ in range(3))
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Reshape((8, 8, 1)),
                conv(16, 3, padding="same", activation="relu", **next(seeds)),
                conv(32, 3, padding="same", activation="relu", **next(seeds)),
                keras.layers.Flatten(),
                dense(num_classes, activation="softmax", **next(seeds)),
            ]
        )
    elif name in _DENSE:
        dense = getattr(layers, _DENSE[name])
        model = keras.Sequential(
            [
                keras.Input((64,)),
                dense(128, activation="relu", seed=seed),
                dense(num_classes, activation="softmax", seed=seed + 1),
            ]
        )
    else:
        stack = [keras.Input((64,)), keras.layers.Dense(128, activation="relu")]
        if name == "mc_dropout":
            stack.append(layers.MCDropout(0.1, seed=seed))
        stack.append(keras.layers.Dense(num_classes, activation="softmax"))
        model = keras.Sequential(stack)
    if tfp_uq.bayesian_layers(model):
        tfp_uq.set_kl_weight(model, num_examples=num_train)
    model.compile(keras.optimizers.Adam(LEARNING_RATE), "sparse_categorical_crossentropy", jit_compile=True)
    return model


def posterior_scales(model):
    """All posterior standard deviations of the model's Bayesian layers, flattened."""
    import numpy as np

    import tfp_uq

    return np.concatenate(
        [
            np.ravel(layer.posterior_scale(name))
            for layer in tfp_uq.bayesian_layers(model)
            if hasattr(layer, "posterior_scale")
            for name in layer._posteriors
        ]
    )


def negative_elbo(model, x, y, num_samples=20, seed=0):
    """(negative ELBO per example, its KL part) on (x, y) with `num_samples` posterior draws."""
    import numpy as np

    import tfp_uq

    result = tfp_uq.predict(model, x, num_samples=num_samples, seed=seed, return_samples=True)
    picked = np.take_along_axis(result.samples, y[None, :, None].astype(int), axis=-1)[..., 0]
    expected_nll = float(-np.mean(np.log(np.maximum(picked, 1e-12))))
    kl = sum(float(layer.kl_divergence()) for layer in tfp_uq.bayesian_layers(model)) / len(x)
    return expected_nll + kl, kl


def digits_row(name, epochs, data, seed=0):
    """Trains model `name` for `epochs` epochs on `data` (see `digits`); returns its metrics."""
    import keras
    import numpy as np

    import tfp_uq
    from tfp_uq import metrics

    x_train, y_train, x_test, y_test, x_nine, x_noise = data
    keras.utils.set_random_seed(seed)
    model = build(name, len(x_train), seed)
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    seconds = time.perf_counter() - start
    num_samples = 1 if name in ("plain", "plain_cnn") else 100
    test = tfp_uq.predict(model, x_test, num_samples=num_samples, seed=seed)
    row = {
        "model": name,
        "epochs": epochs,
        "accuracy": metrics.accuracy(test.probs, y_test),
        "nll": metrics.negative_log_likelihood(test.probs, y_test),
        "ece": metrics.expected_calibration_error(test.probs, y_test),
        "seconds": seconds,
    }
    for label, x_ood in (("noise", x_noise), ("nine", x_nine)):
        ood = tfp_uq.predict(model, x_ood, num_samples=num_samples, seed=seed)
        scores = np.concatenate([test.mutual_information, ood.mutual_information])
        row[f"auroc_{label}"] = metrics.auroc(scores, np.r_[np.zeros(len(x_test)), np.ones(len(x_ood))])
    if tfp_uq.bayesian_layers(model):
        row["elbo"], row["kl"] = negative_elbo(model, x_train, y_train, seed=seed)
        scales = posterior_scales(model)
        row["std_median"], row["std_p90"] = float(np.median(scales)), float(np.percentile(scales, 90))
    return row


def conjugate_data(num_examples, seed):
    """(x, y) of the conjugate linear regression: 5 standard Normal inputs, noise N(0, 1)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, len(CONJUGATE_WEIGHTS)))
    y = x @ np.asarray(CONJUGATE_WEIGHTS) + CONJUGATE_BIAS + rng.normal(size=num_examples)
    return x.astype("float32"), y[:, None].astype("float32")


def conjugate_posterior(x, y, prior_scale=1.0, noise_scale=1.0):
    """(exact posterior mean, mean-field optimal std) of (w, b) under N(0, prior_scale^2) priors."""
    import numpy as np

    design = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype("float64")
    precision = design.T @ design / noise_scale**2 + np.eye(design.shape[1]) / prior_scale**2
    mean = np.linalg.solve(precision, design.T @ y[:, 0].astype("float64") / noise_scale**2)
    return mean, 1.0 / np.sqrt(np.diag(precision))


def gaussian_nll(y_true, y_pred):
    """Negative log-likelihood of N(y_pred, 1) up to its constant."""
    from keras import ops

    return 0.5 * ops.mean(ops.square(y_true - y_pred), axis=-1)


def fit_conjugate(layer_class, num_examples, seed, epochs=20, batch_size=32, learning_rate=3e-2):
    """Fits one Dense-like layer to the conjugate data; returns (std / optimum, (mean - exact) / optimum).

    `layer_class` None fits a plain `keras.layers.Dense` (its std ratio is returned as ones).
    """
    import keras
    import numpy as np

    import tfp_uq

    x, y = conjugate_data(num_examples, seed)
    exact_mean, optimal_std = conjugate_posterior(x, y)
    keras.utils.set_random_seed(seed)
    layer = keras.layers.Dense(1) if layer_class is None else layer_class(1, seed=seed)
    model = keras.Sequential([keras.Input((x.shape[1],)), layer])
    if layer_class is not None:
        tfp_uq.set_kl_weight(model, num_examples=num_examples)
    steps = epochs * -(-num_examples // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(keras.optimizers.Adam(schedule), gaussian_nll, jit_compile=True)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    mean = np.concatenate([np.ravel(layer.kernel), np.ravel(layer.bias)])
    if layer_class is None:
        std = optimal_std
    else:
        std = np.concatenate([np.ravel(layer.posterior_scale("kernel")), np.ravel(layer.posterior_scale("bias"))])
    return std / optimal_std, (mean - exact_mean) / optimal_std


def _format(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def print_digits_table(rows):
    columns = (
        ("model", "model", 26),
        ("epochs", "epochs", 6),
        ("-ELBO/ex", "elbo", 9),
        ("(KL)", "kl", 8),
        ("accuracy", "accuracy", 8),
        ("NLL", "nll", 7),
        ("ECE", "ece", 7),
        ("AUROC noise", "auroc_noise", 11),
        ("AUROC 9", "auroc_nine", 8),
        ("std median", "std_median", 10),
        ("std p90", "std_p90", 8),
        ("fit s", "seconds", 6),
    )
    print("\n" + " ".join(f"{title:>{width}s}" for title, _, width in columns))
    for row in rows:
        cells = []
        for _, key, width in columns:
            value = row.get(key)
            if key in ("model", "epochs"):
                cells.append(f"{value!s:>{width}s}")
            else:
                cells.append(
                    f"{_format(value, 4 if key.startswith('std') else (0 if key == 'seconds' else 3)):>{width}s}"
                )
        print(" ".join(cells), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--budgets", default="1,10", help="multiples of the quickstart's 30 epochs")
    parser.add_argument("--sizes", default="300,1000,3000", help="N of the conjugate regression")
    parser.add_argument("--seeds", type=int, default=3, help="data seeds of the conjugate regression")
    parser.add_argument("--short", action="store_true", help="30 epochs, MLPs only")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-conjugate", action="store_true")
    args = parser.parse_args()
    import numpy as np

    from tfp_uq import layers

    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    budgets = [int(b) for b in args.budgets.split(",")]
    if args.short:
        budgets = [1]
        models = [m for m in models if m not in ("conv_flipout", "plain_cnn")]
    if not args.skip_digits:
        data = digits()
        rows = []
        for budget in budgets:
            for name in models:
                rows.append(digits_row(name, EPOCHS * budget, data))
                print_digits_table(rows[-1:])
        print("\nDigits, quickstart recipe (Adam 1e-3, batch 64):")
        print_digits_table(sorted(rows, key=lambda r: (MODELS.index(r["model"]), r["epochs"])))
    if not args.skip_conjugate:
        print("\nConjugate linear regression (20 epochs, batch 32, Adam 3e-2 cosine-decayed to 0):")
        print(f"{'layer':30s} {'N':>6s} {'std / optimum (min-max)':>24s} {'max |mean error| / optimum':>27s}")
        classes = [None, layers.DenseFlipout, layers.DenseReparameterization, layers.DenseLocalReparameterization]
        for layer_class in classes:
            for size in (int(s) for s in args.sizes.split(",")):
                ratios, errors = zip(*(fit_conjugate(layer_class, size, seed) for seed in range(args.seeds)))
                ratios, errors = np.concatenate(ratios), np.abs(np.concatenate(errors))
                name = "keras.layers.Dense" if layer_class is None else layer_class.__name__
                spread = "-" if layer_class is None else f"{ratios.min():.2f} - {ratios.max():.2f}"
                print(f"{name:30s} {size:6d} {spread:>24s} {errors.max():27.2f}", flush=True)


if __name__ == "__main__":
    main()
