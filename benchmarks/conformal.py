"""Split conformal calibration on UCI regression (standard splits) and on digits.

UCI: for each dataset folder laid out like ../shared/data/uci/<name>/ and each
of its first `--splits` standard splits, the last ~20% of the split's training
rows calibrate (`calibration_size`: n + 1 a multiple of 20, so that split conformal's
expected coverage k / (n + 1) is exactly 90% and 95%) and the others train (inputs and targets standardised on
those); the split's test rows test. Methods (tfp_uq._recipes, as
benchmarks/uci.py builds them, one hidden layer of n_hidden units, every model
ending in a GaussianHead): plain, mc_dropout, flipout, ensemble (5 members),
trained n_epochs x `--epochs-multiplier` epochs (batch 32, Adam 1e-2
cosine-decayed to 0); and HMC (NUTS, `tfp_uq.inference.sample_posterior` on a
50-tanh-unit MLP with sampled Gaussian noise, started from the weights of a
plain MLP trained on the same rows) on datasets of at most `--hmc-max-rows`
rows. Each model predicts the calibration and test rows once; conformal
intervals at 90% and 95% use the absolute residual and the residual
normalised by the total predictive std. Coverage and mean width (original
units) on the test rows.

Digits (tfp_uq._demo.load_digits_split, digits 0-8, split seed = split
index): the last ~20% of the training images calibrate (`calibration_size`), the rest train plain,
mc_dropout, flipout and ensemble MLPs (128-128, 60 x `--epochs-multiplier` /
10 epochs); LAC, APS and RAPS (k_reg=1, lambda_=0.01), randomized, at 90% and
95%: coverage and mean set size on the test images.

Prints, per dataset, method, level and score, the mean +- standard error over
splits, and a summary of the targets: coverage within 1 point of nominal
(mean over splits; with the count of rows more than 2 standard errors from
nominal, by the law of a split's coverage under exchangeability,
`coverage_spread`) and normalised intervals at least 10% narrower than
absolute ones for the best Bayesian method (the one with the narrowest
normalised 90% intervals) on at least three UCI sets.

Run:  .venv/bin/python benchmarks/conformal.py ../shared/data/uci/concrete ../shared/data/uci/yacht
      TFP_UQ_UCI_DIR=../shared/data/uci .venv/bin/python benchmarks/conformal.py   (every set in it)
Options: --splits 3  --epochs-multiplier 10  --methods plain,mc_dropout,flipout,ensemble,hmc  --no-digits
         --save run.json (the summaries, for --merge run1.json run2.json ...: one table from runs in separate processes)
Measured: --splits 3 --epochs-multiplier 2 --hmc-burnin 200 --hmc-results 100 on all four sets and digits took
19 CPU minutes (42 minutes wall beside other jobs on 2 cores); HMC on yacht was 337 s of it. At --splits 20
--epochs-multiplier 1, one process per set and method: 223-313 s (plain), 259-338 s (MC dropout), 636-790 s
(Flipout), 425-770 s (ensemble) a set; HMC on yacht 1,961 s.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

BATCH_SIZE = 32
LEVELS = (0.9, 0.95)
CALIBRATION_FRACTION = 0.2
REGRESSION_SCORES = ("absolute", "normalized")
CLASSIFICATION_SCORES = ("lac", "aps", "raps")
BAYESIAN = ("mc_dropout", "flipout", "ensemble", "hmc")
HMC_HIDDEN = 50


def calibration_size(num_rows, levels=LEVELS, fraction=CALIBRATION_FRACTION):
    """The calibration rows of a split: near `fraction` of `num_rows`, with (n + 1) * level whole for every level.

    Split conformal's expected coverage is k / (n + 1), k = ceil((n + 1) * level), which exceeds the
    level by up to 1 / (n + 1): 51 / 56 = 0.911 at 90% for yacht's 55 rows, whatever the predictor.
    With n + 1 a multiple of every level's denominator (20 for 90% and 95%) it is the level exactly,
    so a mean over splits can be read against the nominal level on small sets too.

    Example: `calibration_size(277)` is 59 (55 would be 20%), `calibration_size(927)` is 179.
    """
    import fractions
    import math

    step = math.lcm(*(fractions.Fraction(level).limit_denominator(1000).denominator for level in levels))
    size = step * max(1, round((fraction * num_rows + 1) / step)) - 1
    if size >= num_rows:
        raise ValueError(f"{num_rows} training rows leave none to train on after {size} calibration rows")
    return size


def _calibration_split(x, y):
    """(x_fit, y_fit, x_cal, y_cal): the last `calibration_size(len(x))` rows calibrate."""
    cut = len(x) - calibration_size(len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _hmc_predictor(x, y, epochs, seed, burnin, results):
    import keras

    import tfp_uq

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(HMC_HIDDEN, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=True)
    model.fit(x, y, epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    return tfp_uq.inference.sample_posterior(
        model, x, y, num_chains=2, num_burnin=burnin, num_results=results, seed=seed, progress=False
    )


def _regression_predictor(method, x, y, epochs, hidden, seed, args):
    import keras

    from tfp_uq import _recipes

    if method == "hmc":
        return _hmc_predictor(x, y, epochs, seed, args.hmc_burnin, args.hmc_results)
    keras.utils.set_random_seed(seed)
    steps = _recipes.decay_steps(len(x), epochs, BATCH_SIZE)
    model = _recipes.build(method, x.shape[1], "regression", 1, len(x), hidden=(hidden,), seed=seed, decay_steps=steps)
    model.fit(x, y, epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    return model


def _predictive(predictor, method, x, samples, seed):
    import tfp_uq
    from tfp_uq import _recipes

    if method == "hmc":
        return predictor.predict(x)
    return tfp_uq.predict(predictor, x, num_samples=_recipes.num_predict_samples(method, samples), seed=seed)


def run_uci_split(folder, split, method, epochs, hidden, args):
    """`({(level, score): (coverage, mean width in original units)}, (calibration rows, test rows))` of one split."""

    from uci import load_split

    from tfp_uq import conformal, metrics

    x_train, y_train, x_test, y_test = load_split(folder, split)
    x_fit, y_fit, x_cal, y_cal = _calibration_split(x_train, y_train)
    x_mean, x_std = x_fit.mean(0), x_fit.std(0)
    x_std[x_std == 0] = 1.0
    y_mean, y_std = y_fit.mean(0), y_fit.std(0)

    def inputs(a):
        return ((a - x_mean) / x_std).astype("float32")

    def targets(a):
        return ((a - y_mean) / y_std).astype("float32")

    seed = args.seed + split
    predictor = _regression_predictor(method, inputs(x_fit), targets(y_fit), epochs, hidden, seed, args)
    calibration = _predictive(predictor, method, inputs(x_cal), args.samples, seed)
    test = _predictive(predictor, method, inputs(x_test), args.samples, seed + 1)
    rows = {}
    for level in LEVELS:
        for score in REGRESSION_SCORES:
            calibrator = conformal.ConformalCalibrator.from_predictions(calibration, targets(y_cal), level, score)
            result = calibrator.apply(test)
            rows[level, score] = (
                metrics.interval_coverage(targets(y_test), result.lower, result.upper),
                metrics.mean_width(result.lower, result.upper) * float(y_std[0]),
            )
    return rows, (len(x_cal), len(x_test))


def run_digits_split(split, method, epochs, args):
    """`({(level, score): (coverage, mean set size)}, (calibration images, test images))` of one split of digits."""
    import keras

    import tfp_uq
    from tfp_uq import _demo, _recipes, conformal, metrics

    x_train, y_train, x_test, y_test, _ = _demo.load_digits_split(seed=split)
    x_fit, y_fit, x_cal, y_cal = _calibration_split(x_train, y_train)
    seed = args.seed + split
    keras.utils.set_random_seed(seed)
    num_classes = int(y_train.max()) + 1
    model = _recipes.build(
        method,
        x_fit.shape[1],
        "classification",
        num_classes,
        len(x_fit),
        hidden=(128, 128),
        dropout_rate=0.2,
        seed=seed,
    )
    model.fit(x_fit, y_fit, epochs=epochs, batch_size=64, verbose=0)
    samples = _recipes.num_predict_samples(method, args.samples)
    calibration = tfp_uq.predict(model, x_cal, num_samples=samples, seed=seed)
    test = tfp_uq.predict(model, x_test, num_samples=samples, seed=seed + 1)
    rows = {}
    for level in LEVELS:
        for score in CLASSIFICATION_SCORES:
            calibrator = conformal.ConformalCalibrator.from_predictions(calibration, y_cal, level, score, seed=seed)
            result = calibrator.apply(test, seed=seed + 2)
            rows[level, score] = (
                metrics.set_coverage(result.prediction_set, y_test),
                metrics.mean_set_size(result.prediction_set),
            )
    return rows, (len(x_cal), len(x_test))


def _summaries(results):
    """`(splits, {(level, score): (mean, standard error) arrays of (coverage, size)}, sizes)` over splits.

    `sizes`: the calibration and test rows of the first split (the standard splits all have the same).
    """
    import numpy as np

    summary = {}
    for key in results[0][0]:
        values = np.array([rows[key] for rows, _ in results])
        error = values.std(0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.zeros(2)
        summary[key] = (values.mean(0), error)
    return len(results), summary, results[0][1]


def coverage_spread(num_calibration, num_test, coverage, splits):
    """The standard error of a mean of `splits` split coverages under exchangeability.

    One split's coverage is BetaBinomial(m, k, n + 1 - k) / m for n
    calibration and m test points, k = ceil((n + 1) * coverage).
    """
    import math

    from scipy import stats

    from tfp_uq import conformal

    k = conformal.conformal_rank(num_calibration, coverage)
    return stats.betabinom(num_test, k, num_calibration + 1 - k).std() / num_test / math.sqrt(splits)


def _released(run, *args):
    """`run(*args)`, then Keras's global state cleared: one process compiles a model per split and method.

    A 20-split run of three methods on four sets without it (about 230 XLA-compiled models in one
    process) died after 100 minutes: "LLVM compilation error: Cannot allocate memory", then a
    segfault. Whether clearing prevents that is not measured: later runs kept to one set and method a
    process (at most 100 models: an ensemble's 20 splits), and all finished.
    """
    import keras

    try:
        return run(*args)
    finally:
        keras.backend.clear_session()


def _num_rows(folder):
    with open(os.path.join(folder, "data.txt")) as handle:
        return sum(1 for line in handle if line.strip())


def main():
    from uci import _read_int

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", help="dataset folders (default: every folder in $TFP_UQ_UCI_DIR)")
    parser.add_argument("--methods", default="plain,mc_dropout,flipout,ensemble,hmc")
    parser.add_argument("--splits", type=int, default=3, help="first N splits")
    parser.add_argument("--epochs-multiplier", type=int, default=10, help="epochs = n_epochs.txt x this (protocol: 10)")
    parser.add_argument("--samples", type=int, default=100, help="Monte Carlo samples per input")
    parser.add_argument(
        "--hmc-max-rows", type=int, default=400, help="HMC only on datasets with at most this many rows"
    )
    parser.add_argument("--hmc-burnin", type=int, default=300)
    parser.add_argument("--hmc-results", type=int, default=200, help="NUTS results per chain (2 chains)")
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="FILE", help="also write the summaries to FILE (JSON)")
    parser.add_argument(
        "--merge", nargs="+", metavar="FILE", help="print the tables of runs saved with --save, run nothing"
    )
    args = parser.parse_args()
    if args.merge:
        print_tables(*_load(args.merge))
        return

    folders = args.folders
    root = os.environ.get("TFP_UQ_UCI_DIR")
    if not folders and root:
        folders = sorted(os.path.join(root, d) for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    methods = args.methods.split(",")
    budget = f"{args.splits} splits, epochs x {args.epochs_multiplier}, {args.samples} samples"
    started = time.perf_counter()
    uci = {}
    for folder in folders:
        name = os.path.basename(os.path.normpath(folder))
        splits = min(_read_int(folder, "n_splits.txt", 20), args.splits)
        epochs = _read_int(folder, "n_epochs.txt", 40) * args.epochs_multiplier
        hidden = _read_int(folder, "n_hidden.txt", 50)
        for method in methods:
            if method == "hmc" and _num_rows(folder) > args.hmc_max_rows:
                continue
            start = time.perf_counter()
            uci[name, method] = _summaries(
                [_released(run_uci_split, folder, k, method, epochs, hidden, args) for k in range(splits)]
            )
            print(f"{name} {method}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    digits = {}
    if not args.no_digits:
        epochs = max(1, 60 * args.epochs_multiplier // 10)
        for method in (m for m in methods if m != "hmc"):
            start = time.perf_counter()
            digits[method] = _summaries(
                [_released(run_digits_split, k, method, epochs, args) for k in range(args.splits)]
            )
            print(f"digits {method}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    if args.save:
        _save(args.save, uci, digits, budget, seconds)
    print_tables(uci, digits, budget, seconds)


def _save(path, uci, digits, budget, seconds):
    import json

    def entries(results):
        return [
            {
                "key": list(key) if isinstance(key, tuple) else [key],
                "splits": splits,
                "sizes": list(sizes),
                "rows": [
                    [level, score, mean.tolist(), error.tolist()] for (level, score), (mean, error) in rows.items()
                ],
            }
            for key, (splits, rows, sizes) in results.items()
        ]

    with open(path, "w") as handle:
        json.dump({"budget": budget, "seconds": seconds, "uci": entries(uci), "digits": entries(digits)}, handle)


def _load(paths):
    """`(uci, digits, budget, seconds)` of the runs saved in `paths` (later files win on the same key)."""
    import json

    import numpy as np

    uci, digits, budgets, seconds = {}, {}, [], 0.0
    for path in paths:
        with open(path) as handle:
            saved = json.load(handle)
        budgets.append(saved["budget"])
        seconds += saved["seconds"]
        for name, results in (("uci", uci), ("digits", digits)):
            for entry in saved[name]:
                key = tuple(entry["key"]) if name == "uci" else entry["key"][0]
                rows = {(level, score): (np.array(m), np.array(e)) for level, score, m, e in entry["rows"]}
                results[key] = (entry["splits"], rows, tuple(entry["sizes"]))
    return uci, digits, "; ".join(sorted(set(budgets))), seconds


def _cell(mean, error, digits=3):
    return f"{mean:.{digits}f} +- {error:.{digits}f}"


def print_tables(uci, digits, budget, seconds):
    if uci:
        print(f"\nUCI regression, conformal intervals ({budget}; mean +- standard error over splits)")
        header = f"{'dataset':18s} {'method':11s} {'level':>5s} {'score':10s} {'coverage':>15s} {'mean width':>17s}"
        print(header)
        print("-" * len(header))
        for (name, method), (_, summary, _) in uci.items():
            for (level, score), (mean, error) in summary.items():
                print(
                    f"{name:18s} {method:11s} {level:5.2f} {score:10s} {_cell(mean[0], error[0]):>15s} "
                    f"{_cell(mean[1], error[1]):>17s}"
                )
    if digits:
        print(f"\ndigits 0-8, conformal sets ({budget}; mean +- standard error over splits)")
        header = f"{'method':11s} {'level':>5s} {'score':6s} {'coverage':>15s} {'mean set size':>15s}"
        print(header)
        print("-" * len(header))
        for method, (_, summary, _) in digits.items():
            for (level, score), (mean, error) in summary.items():
                print(
                    f"{method:11s} {level:5.2f} {score:6s} {_cell(mean[0], error[0]):>15s} "
                    f"{_cell(mean[1], error[1], 2):>15s}"
                )
    _print_targets(uci, digits)
    print(f"\n(total {seconds:.0f} s)")


def _print_targets(uci, digits):
    rows = [(f"{name} {method}", result) for (name, method), result in uci.items()]
    rows += [(f"digits {method}", result) for method, result in digits.items()]
    misses, beyond = [], 0
    for label, (splits, summary, (num_calibration, num_test)) in rows:
        for (level, score), (mean, _) in summary.items():
            z = (mean[0] - level) / coverage_spread(num_calibration, num_test, level, splits)
            beyond += abs(z) > 2
            if abs(mean[0] - level) > 0.01:
                misses.append(f"{label} {level:.2f} {score}: {mean[0]:.3f} ({z:+.1f} standard errors)")
    count = sum(len(summary) for _, (_, summary, _) in rows)
    print(
        f"\nTarget: mean coverage within 1 point of nominal: {len(misses)} of {count} rows miss; {beyond} are more "
        "than 2 standard errors of the split-to-split law (coverage_spread) from nominal"
        + "".join(f"\n  {miss}" for miss in misses)
    )
    if not uci:
        return
    print("Target: normalised at least 10% narrower than absolute (90%), best Bayesian method per set:")
    hits = 0
    for name in dict.fromkeys(name for name, _ in uci):
        candidates = [(uci[name, m][1][0.9, "normalized"][0][1], m) for m in BAYESIAN if (name, m) in uci]
        if not candidates:
            continue
        width, method = min(candidates)
        ratio = width / uci[name, method][1][0.9, "absolute"][0][1]
        hits += ratio <= 0.9
        print(f"  {name:18s} {method:11s} normalised / absolute width = {ratio:.3f}")
    print(f"  {hits} set(s) meet it (target: at least 3 of 4)")


if __name__ == "__main__":
    main()
