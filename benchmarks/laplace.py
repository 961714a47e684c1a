"""Post-hoc Laplace (tfp_uq.laplace) beside retrained uncertainty methods: digits OOD and UCI regression.

Digits (tfp_uq._demo.load_digits_split: digits 0-8 in, standardised; out of
distribution: the held-out 9s and as many images of uniform noise on the raw
pixel range, standardised alike). 15% of the training split is held out as
validation data for every model; on the rest a plain MLP (128-128, Adam 1e-3,
60 epochs of batch 64, the demo's recipe) is trained, and Laplace is fitted
to it: last-layer and all-layer KFAC, GLM predictive with the probit link,
the prior precision by marginal likelihood ("marglik") or by the grid search
on the validation data ("grid"). Beside them MC dropout, a Flipout BNN and a
5-member deep ensemble are trained on the same data and budget, predicted
with `tfp_uq.predict` (100 samples), as is every Laplace posterior (its
probit probabilities replace the Monte Carlo ones). Per model: accuracy,
NLL, ECE (15 bins), Brier score, and the AUROC of telling the test set from
each OOD set by predictive entropy, and by mutual information where the
predictive has samples (for Laplace: 100 samples of the linearised
network). Laplace fit times are given as ratios to one training epoch of the
plain MLP (the mean of epochs 2-60, and the first epoch, which includes
compiling), for the default (plain TensorFlow graphs on a CPU), with
`jit_compile=True`, and for a second fit of the same posterior.

Prior precision (--prior-seeds seeds of each of digits as above, scikit-learn's
breast cancer and wine, standardised on 70% training splits, 15% of which
validate the grid search): the plain MLP above, then last-layer KFAC with
the prior precision by marginal likelihood and by the validation grid
search; test NLL and ECE per seed and their means, and on how many seeds
each is at or below the plain model's NLL.

UCI (the standard splits of Hernandez-Lobato & Adams 2015, loaded with
benchmarks/uci.py's loader; folders as for uci.py): per split two plain MLPs
are trained with uci.py's protocol (one hidden layer of n_hidden units,
n_epochs x 10 epochs (--uci-epochs-multiplier), batch 32, Adam 1e-2
cosine-decayed): one ending in a GaussianHead (beta-NLL 0.5, as uci.py
trains its point-estimate models),
then last-layer KFAC Laplace (the head's scale is the noise); and one with a
single output and the mean squared error, then all-layer KFAC Laplace with
the noise scale by marginal likelihood. Test RMSE and log-likelihood in the
original units of the plain GaussianHead model (N(y; loc, scale^2)) and of
Laplace's GLM predictives (N(y; mean, noise^2 + J P^-1 J^T), through
`tfp_uq.predict`), next to the published MC dropout numbers.

Run:  .venv/bin/python benchmarks/laplace.py                          (digits, then UCI from $TFP_UQ_UCI_DIR)
      .venv/bin/python benchmarks/laplace.py --uci-splits 3 --uci-dir ../shared/data/uci
Options: --skip-digits, --skip-priors, --skip-uci, --seed 0, --prior-seeds 3, --uci-epochs-multiplier 10.
Prints the wall time of each part; RESULTS.md has a run with its budget.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras
import numpy as np

EPOCHS, BATCH_SIZE, HIDDEN, DROPOUT = 60, 64, (128, 128), 0.2
VALIDATION = 0.15  # fraction of the digits training split held out for the prior's grid search
NUM_SAMPLES = 100


def uniform_noise_images(count, seed):
    """`count` images of uniform noise on the raw pixel range [0, 1], standardised as load_digits_split does."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from tfp_uq._demo import OOD_CLASS

    # load_digits_split's standardisation, recomputed: the mean and std of its training images.
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    keep = y != OOD_CLASS
    x_train, _, _, _ = train_test_split(x[keep], y[keep], test_size=0.3, random_state=seed, stratify=y[keep])
    mean, std = x_train.mean(0), x_train.std(0) + 1e-3
    noise = np.random.default_rng(seed).uniform(0.0, 1.0, size=(count, x.shape[1]))
    return ((noise - mean) / std).astype("float32")


class EpochTimer(keras.callbacks.Callback):
    """Keeps each training epoch's wall time."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _row(name, probs, y_test, total_entropy, mutual_information=None):
    from tfp_uq import metrics

    def auroc(scores):
        if scores is None:
            return {"ood9": float("nan"), "noise": float("nan")}
        test, ood9, noise = scores
        return {
            key: metrics.auroc(np.concatenate([test, ood]), np.concatenate([np.zeros(len(test)), np.ones(len(ood))]))
            for key, ood in (("ood9", ood9), ("noise", noise))
        }

    entropy, information = auroc(total_entropy), auroc(mutual_information)
    return {
        "model": name,
        "accuracy": metrics.accuracy(probs, y_test),
        "nll": metrics.negative_log_likelihood(probs, y_test),
        "ece": metrics.expected_calibration_error(probs, y_test),
        "brier": metrics.brier_score(probs, y_test),
        "entropy_ood9": entropy["ood9"],
        "entropy_noise": entropy["noise"],
        "mi_ood9": information["ood9"],
        "mi_noise": information["noise"],
    }


def digits(seed):
    from sklearn.model_selection import train_test_split

    import tfp_uq
    from tfp_uq import _demo, _recipes, laplace

    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test, x_ood = _demo.load_digits_split(seed)
    # A validation split for the grid search over the prior, held out from every model's training.
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=VALIDATION, random_state=seed, stratify=y_train
    )
    x_noise = uniform_noise_images(len(x_ood), seed)
    inputs = (x_test, x_ood, x_noise)
    num_classes = int(y_train.max()) + 1
    rows, timing = [], {}
    plain = None
    for name, method in _demo.MODELS:
        if method == "laplace":  # the demo's Laplace row: the Laplace variants below take its place
            continue
        model = _recipes.build(
            method,
            x_train.shape[1],
            "classification",
            num_classes,
            len(x_train),
            hidden=HIDDEN,
            dropout_rate=DROPOUT,
            seed=seed,
        )
        timer = EpochTimer()
        model.fit(x_train, y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0, callbacks=[timer])
        num_samples = _recipes.num_predict_samples(method, NUM_SAMPLES)
        results = [tfp_uq.predict(model, x, num_samples=num_samples, seed=seed) for x in inputs]
        information = None if method == "plain" else [r.mutual_information for r in results]
        rows.append(_row(name, results[0].probs, y_test, [r.total_entropy for r in results], information))
        print(f"  trained {name}", file=sys.stderr, flush=True)
        if method == "plain":
            plain = model
            timing["first_epoch"], timing["epoch"] = timer.seconds[0], float(np.mean(timer.seconds[1:]))
    variants = (
        ("LL-KFAC marglik", "last_layer", {}),
        ("LL-KFAC grid", "last_layer", {"prior_precision": "gridsearch", "validation_data": (x_val, y_val)}),
        ("all-KFAC marglik", "all", {}),
        ("all-KFAC grid", "all", {"prior_precision": "gridsearch", "validation_data": (x_val, y_val)}),
    )
    for name, subset, kwargs in variants:
        start = time.perf_counter()
        posterior = laplace.fit(plain, (x_train, y_train), subset=subset, verbose=0, **kwargs)
        timing[name] = time.perf_counter() - start
        # Probit probabilities and their entropy; mutual information from 100 samples of the linearised network.
        results = [tfp_uq.predict(posterior, x, num_samples=NUM_SAMPLES, seed=seed) for x in inputs]
        entropies, information = [r.total_entropy for r in results], [r.mutual_information for r in results]
        rows.append(_row("Laplace " + name, results[0].probs, y_test, entropies, information))
        timing[f"{name} prior"] = posterior.prior_precision
        print(
            f"  fitted Laplace {name} in {timing[name]:.2f} s (prior precision {posterior.prior_precision:.3g})",
            file=sys.stderr,
            flush=True,
        )
    start = time.perf_counter()
    laplace.fit(plain, (x_train, y_train), verbose=0, jit_compile=True)
    timing["xla"] = time.perf_counter() - start
    start = time.perf_counter()
    laplace.fit(plain, (x_train, y_train), verbose=0)
    timing["again"] = time.perf_counter() - start
    return rows, timing


def format_digits(rows, timing, seed):
    header = (
        f"{'model':24s} {'accuracy':>8s} {'NLL':>7s} {'ECE':>7s} {'Brier':>7s}   {'AUROC entropy':>15s}"
        f"   {'AUROC MI':>15s}"
    )
    title = (
        f"digits (seed {seed}; {EPOCHS} epochs, batch {BATCH_SIZE}, MLP {HIDDEN}, {1 - VALIDATION:.0%} of the "
        "training split (the rest validates the grid search); OOD: 9s / uniform noise)"
    )
    lines = [
        title,
        header,
        f"{'':24s} {'':8s} {'':7s} {'':7s} {'':7s}   {'9s':>7s} {'noise':>7s}   {'9s':>7s} {'noise':>7s}",
        "-" * len(header),
    ]
    for row in rows:
        lines.append(
            f"{row['model']:24s} {row['accuracy']:8.3f} {row['nll']:7.3f} {row['ece']:7.3f} {row['brier']:7.3f}   "
            f"{row['entropy_ood9']:7.3f} {row['entropy_noise']:7.3f}   {row['mi_ood9']:7.3f} {row['mi_noise']:7.3f}"
        )
    epoch, first = timing["epoch"], timing["first_epoch"]
    lines.append("")
    lines.append(f"plain MLP epoch: {epoch:.3f} s (mean of epochs 2-{EPOCHS}); first epoch (compiling) {first:.2f} s")
    lines.append(f"{'Laplace fit':38s} {'seconds':>8s} {'x epoch':>8s} {'x first epoch':>14s} {'prior':>8s}")
    for label, key in (
        ("LL-KFAC marglik (first fit)", "LL-KFAC marglik"),
        ("LL-KFAC marglik (again)", "again"),
        ("LL-KFAC marglik, jit_compile=True", "xla"),
        ("LL-KFAC grid (81 priors)", "LL-KFAC grid"),
        ("all-KFAC marglik", "all-KFAC marglik"),
        ("all-KFAC grid (81 priors)", "all-KFAC grid"),
    ):
        prior = timing.get(f"{key} prior")
        prior = f"{prior:8.3g}" if prior is not None else f"{'':8s}"
        lines.append(f"{label:38s} {timing[key]:8.2f} {timing[key] / epoch:8.2f} {timing[key] / first:14.2f} {prior}")
    return "\n".join(lines)


def _sklearn_sets(seed):
    """`(name, x_train, y_train, x_test, y_test)` of digits (as `digits`) and standardised breast cancer and wine."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    from tfp_uq import _demo

    x_train, y_train, x_test, y_test, _ = _demo.load_digits_split(seed)
    yield "digits", x_train, y_train, x_test, y_test
    for name, load in (("breast cancer", datasets.load_breast_cancer), ("wine", datasets.load_wine)):
        x, y = load(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-3
        yield (
            name,
            ((x_train - mean) / std).astype("float32"),
            y_train,
            ((x_test - mean) / std).astype("float32"),
            y_test,
        )


def prior_methods(seeds):
    """Per dataset and seed: test (NLL, ECE) of the plain MLP and of last-layer KFAC by marglik and by grid search."""
    from sklearn.model_selection import train_test_split

    import tfp_uq
    from tfp_uq import _recipes, laplace, metrics

    scores = {}
    for seed in range(seeds):
        for name, x_train, y_train, x_test, y_test in _sklearn_sets(seed):
            keras.utils.set_random_seed(seed)
            x_train, x_val, y_train, y_val = train_test_split(
                x_train, y_train, test_size=VALIDATION, random_state=seed, stratify=y_train
            )
            classes = int(y_train.max()) + 1
            model = _recipes.build(
                "plain", x_train.shape[1], "classification", classes, len(x_train), hidden=HIDDEN, seed=seed
            )
            model.fit(x_train, y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
            predictors = {
                "plain MLP": model,
                "LL-KFAC marglik": laplace.fit(model, (x_train, y_train), verbose=0),
                "LL-KFAC grid": laplace.fit(
                    model, (x_train, y_train), prior_precision="gridsearch", validation_data=(x_val, y_val), verbose=0
                ),
            }
            for method, predictor in predictors.items():
                probs = tfp_uq.predict(predictor, x_test, num_samples=1, seed=seed).probs
                nll, ece = (
                    metrics.negative_log_likelihood(probs, y_test),
                    metrics.expected_calibration_error(probs, y_test),
                )
                prior = getattr(predictor, "prior_precision", float("nan"))
                scores.setdefault((name, method), []).append((nll, ece, prior))
            print(f"  priors: {name}, seed {seed}", file=sys.stderr, flush=True)
    return scores


def format_prior_methods(scores, seeds):
    lines = [
        f"last-layer KFAC prior precision on {seeds} seeds (MLP {HIDDEN}, {EPOCHS} epochs, no weight decay; "
        f"grid: {VALIDATION:.0%} of the training split validates); test NLL / ECE (lambda) per seed",
        f"{'dataset':14s} {'method':16s} "
        + " ".join(f"{'seed ' + str(k):>24s}" for k in range(seeds))
        + f"   {'mean NLL':>8s} {'mean ECE':>8s} {'NLL <= plain':>12s}",
    ]
    for (name, method), rows in scores.items():
        rows = np.array(rows)
        plain = np.array(scores[(name, "plain MLP")])[:, 0]
        cells = " ".join(
            f"{nll:7.4f} / {ece:6.4f}" + (f" ({prior:5.3g})" if np.isfinite(prior) else f"{'':8s}")
            for nll, ece, prior in rows
        )
        wins = f"{int(np.sum(rows[:, 0] <= plain + 1e-12))} of {seeds}" if method != "plain MLP" else ""
        lines.append(f"{name:14s} {method:16s} {cells}   {rows[:, 0].mean():8.4f} {rows[:, 1].mean():8.4f} {wins:>12s}")
    return "\n".join(lines)


def _gaussian_log_likelihood(y, mean, variance):
    return float(np.mean(-0.5 * (np.log(2 * np.pi * variance) + (y - mean) ** 2 / variance)))


def uci_split(folder, split, seed, epochs_multiplier=10):
    """One split's test scores in original units.

    Returns `(RMSE, LL plain, LL Laplace, fit seconds)` of the GaussianHead
    model with last-layer KFAC, then `(RMSE, LL Laplace, fit seconds)` of the
    mean-squared-error model with all-layer KFAC and the noise by marginal likelihood.
    """
    from uci import BATCH_SIZE as UCI_BATCH
    from uci import _read_int, load_split

    import tfp_uq
    from tfp_uq import _recipes, laplace

    x_train, y_train, x_test, y_test = load_split(folder, split)
    epochs = _read_int(folder, "n_epochs.txt", 40) * epochs_multiplier
    hidden = _read_int(folder, "n_hidden.txt", 50)
    x_mean, x_std = x_train.mean(0), x_train.std(0)
    x_std[x_std == 0] = 1.0
    y_mean, y_std = y_train.mean(0), y_train.std(0)
    inputs, test_inputs = ((x_train - x_mean) / x_std).astype("float32"), ((x_test - x_mean) / x_std).astype("float32")
    targets = ((y_train - y_mean) / y_std).astype("float32")
    steps = _recipes.decay_steps(len(x_train), epochs, UCI_BATCH)
    scores = []
    for loss, subset in (("gaussian_head", "last_layer"), ("mse", "all")):
        keras.utils.set_random_seed(seed + split)
        if loss == "gaussian_head":
            model = _recipes.build(
                "plain",
                x_train.shape[1],
                "regression",
                1,
                len(x_train),
                hidden=(hidden,),
                seed=seed + split,
                decay_steps=steps,
            )
        else:  # the same MLP with one output and the mean squared error: Laplace learns one noise scale
            model = keras.Sequential(
                [keras.Input((x_train.shape[1],)), keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(1)]
            )
            model.compile(_recipes.optimizer("regression", decay_steps=steps), "mse", jit_compile=True)
        model.fit(inputs, targets, epochs=epochs, batch_size=UCI_BATCH, verbose=0)
        start = time.perf_counter()
        posterior = laplace.fit(model, (inputs, targets), subset=subset, verbose=0)
        seconds = time.perf_counter() - start
        result = tfp_uq.predict(posterior, test_inputs, num_samples=2, seed=seed)  # the moments are closed forms
        mean = result.mean * y_std + y_mean
        variance = result.variance * y_std**2
        rmse = float(np.sqrt(np.mean((y_test - mean) ** 2)))
        laplace_ll = _gaussian_log_likelihood(y_test, mean, variance)
        if loss == "gaussian_head":
            aleatoric = result.aleatoric_variance * y_std**2
            scores += [rmse, _gaussian_log_likelihood(y_test, mean, aleatoric), laplace_ll, seconds]
        else:
            scores += [rmse, laplace_ll, seconds]
    return scores


def uci(folders, splits, seed, epochs_multiplier):
    from uci import PUBLISHED_MC_DROPOUT

    rows = []
    for folder in folders:
        name = os.path.basename(os.path.normpath(folder))
        start = time.perf_counter()
        scores = np.array([uci_split(folder, k, seed, epochs_multiplier) for k in range(splits)])
        rows.append((name, scores, PUBLISHED_MC_DROPOUT.get(name), time.perf_counter() - start))
        row = format_uci(rows[-1:], splits, epochs_multiplier).splitlines()[3]  # kept if a later set is stopped
        print(f"  {name}: {time.perf_counter() - start:.0f} s\n{row}", file=sys.stderr, flush=True)
    return rows


def format_uci(rows, splits, epochs_multiplier):
    def summary(values):
        error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
        return f"{values.mean():8.3f} +- {error:6.3f}"

    header = (
        f"{'':18s} {'GaussianHead MLP + last-layer KFAC':^54s} | {'MSE MLP + all-layer KFAC, marglik noise':^36s} |"
        f" {'published':>13s}\n"
        f"{'dataset':18s} {'RMSE':>17s} {'LL plain':>17s} {'LL Laplace':>17s} | {'RMSE':>17s} {'LL Laplace':>17s}"
        f" | {'MC dropout LL':>13s}"
    )
    title = (
        f"UCI, first {splits} standard splits (n_epochs x {epochs_multiplier} epochs, batch 32, Adam 1e-2 cosine); "
        "test LL in original units"
    )
    lines = [title, header]
    wins = np.zeros(2, dtype=int)
    for name, scores, published, _ in rows:
        reference = published[1][0] if published else float("nan")
        wins += [scores[:, 2].mean() >= reference, scores[:, 5].mean() >= reference]
        lines.append(
            f"{name:18s} {summary(scores[:, 0])} {summary(scores[:, 1])} {summary(scores[:, 2])} | "
            f"{summary(scores[:, 4])} {summary(scores[:, 5])} | {reference:6.2f} +- {published[1][1]:.2f}"
        )
    fit_seconds = np.concatenate([scores[:, [3, 6]] for _, scores, _, _ in rows])
    lines.append(
        f"test LL at or above published MC dropout on {wins[0]} (last-layer, GaussianHead) and {wins[1]} "
        f"(all-layer, MSE) of {len(rows)} sets; Laplace fit {fit_seconds[:, 0].mean():.2f} s / "
        f"{fit_seconds[:, 1].mean():.2f} s per split"
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uci-dir", default=os.environ.get("TFP_UQ_UCI_DIR"), help="folder of UCI dataset folders")
    parser.add_argument("--uci-splits", type=int, default=3)
    parser.add_argument(
        "--uci-epochs-multiplier", type=int, default=10, help="epochs = n_epochs.txt x this (uci.py's protocol: 10)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-priors", action="store_true")
    parser.add_argument("--prior-seeds", type=int, default=3)
    parser.add_argument("--skip-uci", action="store_true")
    args = parser.parse_args()
    if not args.skip_digits:
        start = time.perf_counter()
        rows, timing = digits(args.seed)
        print(format_digits(rows, timing, args.seed))
        print(f"(digits: {time.perf_counter() - start:.0f} s)\n", flush=True)
    if not args.skip_priors:
        start = time.perf_counter()
        print(format_prior_methods(prior_methods(args.prior_seeds), args.prior_seeds))
        print(f"(prior precision: {time.perf_counter() - start:.0f} s)\n", flush=True)
    if not args.skip_uci:
        if not args.uci_dir:
            parser.error("give --uci-dir or set TFP_UQ_UCI_DIR (or --skip-uci)")
        folders = sorted(
            os.path.join(args.uci_dir, d)
            for d in os.listdir(args.uci_dir)
            if os.path.isdir(os.path.join(args.uci_dir, d))
        )
        start = time.perf_counter()
        multiplier = args.uci_epochs_multiplier
        print(format_uci(uci(folders, args.uci_splits, args.seed, multiplier), args.uci_splits, multiplier))
        print(f"(UCI: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
