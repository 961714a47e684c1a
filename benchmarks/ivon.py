"""IVON beside Adam, MC dropout, Flipout layers and a deep ensemble: digits, UCI regression, step time.

Sections (`--only digits|uci|speed`, all by default):

- digits: scikit-learn's 8x8 digits 0-8 (`tfp_uq._demo.load_digits_split`,
  digit 9 held out as out-of-distribution inputs), an MLP 64-128-128-9 and a
  CNN (3x3 convolutions of 16 and 32 filters, 2x2 max-pooling, Dense 64) on
  the 8x8 images, each trained `--epochs` epochs at batch 64 by every method;
  accuracy, NLL, ECE (15 bins), Brier score and the AUROC of telling digit 9
  from the test set by predictive entropy, from 100 Monte Carlo samples (one
  pass for Adam). The deep ensemble has 5 members; MC dropout drops 0.2 of
  each hidden layer's outputs (channels in the CNN).
- uci: the UCI sets with the standard splits (the loader, epochs and batch
  size of benchmarks/uci.py: n_epochs x `--epochs-multiplier` epochs at batch
  32, one hidden layer of n_hidden units, a GaussianHead, inputs and targets
  standardised on the training part), RMSE and test log-likelihood of the
  Monte Carlo predictive (a mixture over 100 samples), mean +- standard error
  over the first `--splits` splits, next to the published MC dropout values
  (Gal & Ghahramani 2016). The other methods run as benchmarks/uci.py runs
  them (Adam 1e-2 cosine-decayed to 0; see tfp_uq._recipes).
- speed: milliseconds per training step of IVON (mc_samples=1) and of Adam
  on the digits MLP and CNN at batch 64, XLA off and on: best of `--repeats`
  timings of `--steps` steps per model, IVON and Adam alternating, and their
  ratio in the same run.

IVON's arguments per task (`ivon_optimizer`), ess the number of training
examples in both:

- classification: learning_rate 0.2, hess_init 0.5, weight_decay 2e-4 (the
  published CIFAR-10 ResNet settings of Shen et al. 2024), the other
  arguments their defaults;
- regression: learning_rate 0.05 cosine-decayed to 0, hess_init 1, beta2
  0.9995, weight_decay 5e-3, clip_radius 0.1.

IVON predicts from its posterior (`IVONPosterior.sample_outputs`), the others
with `tfp_uq.predict`.

Run:  .venv/bin/python benchmarks/ivon.py --uci-dir ../shared/data/uci
Options: --epochs 60  --digits-methods plain,ivon,mc_dropout,flipout,ensemble
         --splits 3  --epochs-multiplier 10  --uci-methods ivon,plain,mc_dropout
         --steps 200 --repeats 5
Took, on the 2-core host shared with other jobs (load 5-10): digits 11 minutes, UCI
(3 splits, IVON and Adam) 52 minutes, speed 2-5 minutes.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import uci  # noqa: E402

BATCH_SIZE = 64
NUM_SAMPLES = 100
CLASSIFICATION_METHODS = ("plain", "ivon", "mc_dropout", "flipout", "ensemble")
NAMES = {
    "plain": "Adam",
    "ivon": "IVON",
    "mc_dropout": "MC dropout",
    "flipout": "Flipout",
    "ensemble": "deep ensemble",
}
DROPOUT_RATE = 0.2


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("digits", "uci", "speed"))
    parser.add_argument("--epochs", type=int, default=60, help="digits epochs")
    parser.add_argument("--digits-methods", default=",".join(CLASSIFICATION_METHODS))
    parser.add_argument("--uci-dir", default=os.environ.get("TFP_UQ_UCI_DIR"), help="folder of UCI set folders")
    parser.add_argument("--splits", type=int, default=3, help="first N UCI splits")
    parser.add_argument("--epochs-multiplier", type=int, default=10, help="UCI epochs = n_epochs.txt x this")
    parser.add_argument("--uci-methods", default="ivon,plain,mc_dropout")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per model")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many timings")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


# ---------------------------------------------------------------- IVON's settings per task
def ivon_optimizer(task, num_train, total_steps):
    """IVON with the task's documented settings (`tfp_uq._recipes.ivon_optimizer`)."""
    from tfp_uq import _recipes

    return _recipes.ivon_optimizer(task, num_train, None if task == "classification" else total_steps)


def posterior_samples(posterior, x, num_samples, seed, batch_size=512):
    """`(num_samples, n, ...)` outputs of an IVON posterior, one compiled call per batch."""
    import tensorflow as tf

    draw = tf.function(
        lambda inputs, key: posterior.sample_outputs(inputs, num_samples, key), jit_compile=True, autograph=False
    )
    key = tf.constant([seed, 0], "int64")
    chunks = [np.asarray(draw(tf.constant(x[i : i + batch_size]), key)) for i in range(0, len(x), batch_size)]
    return np.concatenate(chunks, axis=1)


# ------------------------------------------------------------------------------- digits
def cnn(method, num_classes, num_train, seed):
    """The digits CNN with `method`'s layers (Flipout twins, or dropout after each hidden layer)."""
    import keras

    import tfp_uq
    from tfp_uq import layers

    flipout = method == "flipout"
    conv = (
        (lambda f, **k: layers.Conv2DFlipout(f, 3, **k)) if flipout else (lambda f, **k: keras.layers.Conv2D(f, 3, **k))
    )
    dense = layers.DenseFlipout if flipout else keras.layers.Dense
    stack = [keras.Input((8, 8, 1))]
    for i, filters in enumerate((16, 32)):
        stack.append(conv(filters, padding="same", activation="relu", **({"seed": seed + i} if flipout else {})))
        if method == "mc_dropout":
            stack.append(layers.SpatialMCDropout2D(DROPOUT_RATE, seed=seed + i))
    stack += [keras.layers.MaxPooling2D(), keras.layers.Flatten()]
    stack.append(dense(64, activation="relu", **({"seed": seed + 2} if flipout else {})))
    if method == "mc_dropout":
        stack.append(layers.MCDropout(DROPOUT_RATE, seed=seed + 2))
    stack.append(dense(num_classes, activation="softmax", **({"seed": seed + 3} if flipout else {})))
    model = keras.Sequential(stack)
    if flipout:
        tfp_uq.set_kl_weight(model, num_examples=num_train)
    return model


def build_classifier(kind, method, num_classes, num_train, epochs, seed, jit_compile=True):
    """A compiled digits model (or DeepEnsemble) for `method`; IVON gets its posterior after fit."""
    import keras

    from tfp_uq import _recipes
    from tfp_uq.ensembles import DeepEnsemble

    if kind == "mlp" and method != "ivon":
        model = _recipes.build(
            method,
            64,
            "classification",
            num_classes,
            num_train,
            hidden=(128, 128),
            dropout_rate=DROPOUT_RATE,
            seed=seed,
        )
        if not jit_compile:  # the recipes compile with XLA
            model.compile(model.optimizer, _recipes.loss("classification"), jit_compile=False)
        return model
    loss = _recipes.loss("classification")
    if method == "ensemble":
        ensemble = DeepEnsemble(lambda s: cnn("plain", num_classes, num_train, s), num_members=5, seed=seed)
        ensemble.compile(_recipes.optimizer("classification"), loss, jit_compile=jit_compile)
        return ensemble
    keras.utils.set_random_seed(seed)
    if kind == "mlp":
        model = _recipes.mlp("plain", 64, "classification", num_classes, num_train, hidden=(128, 128), seed=seed)
    else:
        model = cnn(method, num_classes, num_train, seed)
    if method == "ivon":
        steps = _recipes.decay_steps(num_train, epochs, BATCH_SIZE)
        optimizer = ivon_optimizer("classification", num_train, steps)
    else:
        optimizer = _recipes.optimizer("classification")
    model.compile(optimizer, loss, jit_compile=jit_compile)
    return model


def classification_summary(model, method, x, seed):
    """(probs, total entropy) of the method's Monte Carlo predictive on `x`."""
    import tfp_uq
    from tfp_uq import _recipes, _summaries

    if method == "ivon":
        samples = posterior_samples(model.optimizer.posterior(model), x, NUM_SAMPLES, seed)
        fields = _summaries.classification(samples)
        return np.asarray(fields["probs"]), np.asarray(fields["total_entropy"])
    result = tfp_uq.predict(model, x, num_samples=_recipes.num_predict_samples(method, NUM_SAMPLES), seed=seed)
    return result.probs, result.total_entropy


def digits_rows(args):
    import keras

    from tfp_uq import _demo, metrics

    x_train, y_train, x_test, y_test, x_ood = _demo.load_digits_split(args.seed)
    num_classes = int(y_train.max()) + 1
    rows = []
    for kind in ("mlp", "cnn"):
        shape = (-1, 64) if kind == "mlp" else (-1, 8, 8, 1)
        train, test, ood = (a.reshape(shape) for a in (x_train, x_test, x_ood))
        for method in args.digits_methods.split(","):
            keras.utils.set_random_seed(args.seed)
            start = time.perf_counter()
            model = build_classifier(kind, method, num_classes, len(train), args.epochs, args.seed)
            model.fit(train, y_train, epochs=args.epochs, batch_size=BATCH_SIZE, verbose=0)
            probs, entropy = classification_summary(model, method, test, args.seed)
            _, ood_entropy = classification_summary(model, method, ood, args.seed)
            rows.append(
                {
                    "model": kind.upper(),
                    "method": NAMES[method],
                    "accuracy": metrics.accuracy(probs, y_test),
                    "nll": metrics.negative_log_likelihood(probs, y_test),
                    "ece": metrics.expected_calibration_error(probs, y_test),
                    "brier": metrics.brier_score(probs, y_test),
                    "ood_auroc": metrics.auroc(
                        np.concatenate([entropy, ood_entropy]),
                        np.concatenate([np.zeros(len(test)), np.ones(len(ood))]),
                    ),
                    "seconds": time.perf_counter() - start,
                }
            )
            print(f"  digits {kind} {NAMES[method]}: {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    return rows


def print_digits(rows, args):
    print(f"\n## digits ({args.epochs} epochs, batch {BATCH_SIZE}, {NUM_SAMPLES} samples, seed {args.seed})")
    header = (
        f"{'model':5s} {'method':14s} {'accuracy':>9s} {'NLL':>7s} {'ECE':>7s} {'Brier':>7s} {'OOD AUROC':>10s} "
        f"{'seconds':>8s}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['model']:5s} {row['method']:14s} {row['accuracy']:9.4f} {row['nll']:7.4f} {row['ece']:7.4f} "
            f"{row['brier']:7.4f} {row['ood_auroc']:10.4f} {row['seconds']:8.0f}"
        )


# ---------------------------------------------------------------------------------- UCI
def ivon_split(folder, split, epochs, hidden, seed):
    """RMSE and test LL of IVON on one UCI split, with benchmarks/uci.py's protocol."""
    import keras

    from tfp_uq import _recipes, losses, metrics

    x_train, y_train, x_test, y_test = uci.load_split(folder, split)
    x_mean, x_std = x_train.mean(0), x_train.std(0)
    x_std[x_std == 0] = 1.0
    y_mean, y_std = y_train.mean(0), y_train.std(0)
    standardise = lambda a: ((a - x_mean) / x_std).astype("float32")  # noqa: E731
    keras.utils.set_random_seed(seed + split)
    model = _recipes.mlp("plain", x_train.shape[1], "regression", 1, len(x_train), hidden=(hidden,), seed=seed + split)
    steps = _recipes.decay_steps(len(x_train), epochs, uci.BATCH_SIZE)
    model.compile(ivon_optimizer("regression", len(x_train), steps), losses.GaussianNLL(), jit_compile=True)
    model.fit(
        standardise(x_train),
        ((y_train - y_mean) / y_std).astype("float32"),
        epochs=epochs,
        batch_size=uci.BATCH_SIZE,
        verbose=0,
    )
    samples = posterior_samples(model.optimizer.posterior(model), standardise(x_test), NUM_SAMPLES, seed)
    locs = samples[..., :1] * y_std + y_mean
    scales = samples[..., 1:] * y_std
    return metrics.rmse(y_test, locs.mean(0)), metrics.mixture_log_likelihood(y_test, locs, scales)


def uci_rows(args):
    if not args.uci_dir:
        raise SystemExit("the uci section needs --uci-dir (or TFP_UQ_UCI_DIR)")
    root = args.uci_dir
    folders = sorted(os.path.join(root, d) for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    rows = []
    for folder in folders:
        name = os.path.basename(folder)
        splits = min(uci._read_int(folder, "n_splits.txt", 20), args.splits)
        epochs = uci._read_int(folder, "n_epochs.txt", 40) * args.epochs_multiplier
        hidden = uci._read_int(folder, "n_hidden.txt", 50)
        for method in args.uci_methods.split(","):
            start = time.perf_counter()
            if method == "ivon":
                scores = [ivon_split(folder, k, epochs, hidden, args.seed) for k in range(splits)]
            else:
                scores = [
                    uci.run_split(folder, k, method, epochs, hidden, NUM_SAMPLES, args.seed) for k in range(splits)
                ]
            scores = np.array(scores)
            error = scores.std(0, ddof=1) / np.sqrt(len(scores)) if len(scores) > 1 else np.zeros(2)
            rows.append((name, NAMES.get(method, method), splits, epochs, scores.mean(0), error))
            print(f"  uci {name} {method}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def print_uci(rows, args):
    print(f"\n## UCI (first {args.splits} standard splits, n_epochs x {args.epochs_multiplier} epochs, batch 32)")
    header = (
        f"{'dataset':18s} {'method':14s} {'splits':>6s} {'epochs':>6s} {'RMSE':>15s} {'test LL':>15s} "
        f"{'published MC dropout':>22s}"
    )
    print(header)
    print("-" * len(header))
    for name, method, splits, epochs, mean, error in rows:
        published = uci.PUBLISHED_MC_DROPOUT.get(name)
        reference = f"{published[0][0]:.2f} / {published[1][0]:.2f}" if published else "-"
        print(
            f"{name:18s} {method:14s} {splits:6d} {epochs:6d} {mean[0]:7.3f} +- {error[0]:.3f} "
            f"{mean[1]:7.3f} +- {error[1]:.3f} {reference:>22s}"
        )


# -------------------------------------------------------------------------------- speed
def _timed_model(kind, method, jit):
    import tensorflow as tf

    model = build_classifier(kind, method, 9, 1000, 1, seed=0, jit_compile=jit)
    shape = (BATCH_SIZE, 64) if kind == "mlp" else (BATCH_SIZE, 8, 8, 1)
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensors(
        (rng.normal(size=shape).astype("float32"), rng.integers(0, 9, size=(BATCH_SIZE,)))
    ).repeat()
    model.fit(data, steps_per_epoch=20, epochs=1, verbose=0, shuffle=False)
    return model, data


def speed_rows(args):
    rows = []
    for kind in ("mlp", "cnn"):
        for jit in (False, True):
            models = {method: _timed_model(kind, method, jit) for method in ("plain", "ivon")}
            best = {method: float("inf") for method in models}
            for _ in range(args.repeats):
                for method, (model, data) in models.items():
                    start = time.perf_counter()
                    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
                    best[method] = min(best[method], (time.perf_counter() - start) / args.steps)
            rows.append((kind.upper(), jit, best["plain"], best["ivon"]))
            print(f"  speed {kind} XLA {jit}: done", file=sys.stderr, flush=True)
    return rows


def print_speed(rows, args):
    from tfp_uq import _native

    kernels = "built" if _native.library() is not None else "not built"
    print(
        f"\n## step time (batch {BATCH_SIZE}, best of {args.repeats} x {args.steps} steps, alternating; "
        f"tfp_uq's C++ kernels {kernels})"
    )
    header = f"{'model':5s} {'XLA':>4s} {'Adam ms':>8s} {'IVON ms':>8s} {'IVON / Adam':>12s}"
    print(header)
    print("-" * len(header))
    for kind, jit, adam, ivon in rows:
        print(f"{kind:5s} {'on' if jit else 'off':>4s} {adam * 1e3:8.2f} {ivon * 1e3:8.2f} {ivon / adam:12.2f}")


def main():
    args = parse_args()
    started = time.perf_counter()
    sections = [args.only] if args.only else ["digits", "uci", "speed"]
    results = {}
    if "digits" in sections:
        results["digits"] = digits_rows(args)
    if "uci" in sections:
        results["uci"] = uci_rows(args)
    if "speed" in sections:
        results["speed"] = speed_rows(args)
    for section, rows in results.items():
        {"digits": print_digits, "uci": print_uci, "speed": print_speed}[section](rows, args)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
