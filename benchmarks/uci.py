"""UCI regression benchmark with the standard splits (Hernandez-Lobato & Adams 2015).

For each dataset folder laid out like ../shared/data/uci/<name>/ (data.txt,
index_features.txt, index_target.txt, n_splits.txt, index_train_K.txt,
index_test_K.txt, n_epochs.txt, n_hidden.txt), each split: inputs and targets
standardised on the training part, one hidden layer of n_hidden (50) units,
n_epochs x 10 epochs (batch 32, Adam 1e-2 cosine-decayed to 0; loss: beta-NLL
with beta 0.5 for MC dropout and ensembles, the exact NLL in Flipout's ELBO;
see tfp_uq._recipes), then RMSE and test log-likelihood of the Monte Carlo
predictive (a Gaussian mixture over samples) in the original units. Prints
mean +- standard error over splits per method, next to the published MC
dropout numbers (Gal & Ghahramani 2016, grid-searched).

Every model ends in a GaussianHead (learned, heteroscedastic noise), so no
noise precision is grid-searched.

Run:  .venv/bin/python benchmarks/uci.py ../shared/data/uci/concrete ../shared/data/uci/yacht
      TFP_UQ_UCI_DIR=../shared/data/uci .venv/bin/python benchmarks/uci.py   (every set in it)
Options: --methods mc_dropout,flipout,ensemble  --splits 20  --epochs-multiplier 10
Measured on one CPU thread, 20 splits: 8-23 minutes per dataset and method for
MC dropout and Flipout (yacht fastest, concrete Flipout slowest); see RESULTS.md.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH_SIZE = 32
PUBLISHED_MC_DROPOUT = {  # RMSE, LL (mean, standard error)
    "concrete": ((4.82, 0.16), (-2.93, 0.02)),
    "energy": ((0.54, 0.06), (-1.21, 0.01)),
    "wine-quality-red": ((0.62, 0.01), (-0.93, 0.01)),
    "yacht": ((0.67, 0.05), (-1.25, 0.01)),
}


def _read_int(folder, name, default):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return default
    with open(path) as handle:
        return int(float(handle.read().split()[0]))


def load_split(folder, split):
    """(x_train, y_train, x_test, y_test) of split `split` of a UCI folder."""
    import numpy as np

    data = np.loadtxt(os.path.join(folder, "data.txt"))
    features = np.loadtxt(os.path.join(folder, "index_features.txt"), dtype=int, ndmin=1)
    target = int(np.loadtxt(os.path.join(folder, "index_target.txt")))
    train = np.loadtxt(os.path.join(folder, f"index_train_{split}.txt"), dtype=int)
    test = np.loadtxt(os.path.join(folder, f"index_test_{split}.txt"), dtype=int)
    x, y = data[:, features], data[:, target : target + 1]
    return x[train], y[train], x[test], y[test]


def run_split(folder, split, method, epochs, hidden, samples, seed):
    import keras

    import tfp_uq
    from tfp_uq import _recipes

    x_train, y_train, x_test, y_test = load_split(folder, split)
    x_mean, x_std = x_train.mean(0), x_train.std(0)
    x_std[x_std == 0] = 1.0
    y_mean, y_std = y_train.mean(0), y_train.std(0)
    standardise = lambda a: ((a - x_mean) / x_std).astype("float32")  # noqa: E731
    keras.utils.set_random_seed(seed + split)
    steps = _recipes.decay_steps(len(x_train), epochs, BATCH_SIZE)
    model = _recipes.build(
        method, x_train.shape[1], "regression", 1, len(x_train), hidden=(hidden,), seed=seed + split, decay_steps=steps
    )
    model.fit(
        standardise(x_train),
        ((y_train - y_mean) / y_std).astype("float32"),
        epochs=epochs,
        batch_size=BATCH_SIZE,
        verbose=0,
    )
    result = tfp_uq.predict(
        model,
        standardise(x_test),
        num_samples=_recipes.num_predict_samples(method, samples),
        seed=seed,
        return_samples=True,
    )
    locs = result.samples[..., :1] * y_std + y_mean
    scales = result.samples[..., 1:] * y_std
    rmse = tfp_uq.metrics.rmse(y_test, locs.mean(0))
    ll = tfp_uq.metrics.mixture_log_likelihood(y_test, locs, scales)
    return rmse, ll


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", help="dataset folders (default: every folder in $TFP_UQ_UCI_DIR)")
    parser.add_argument("--methods", default="mc_dropout,flipout,ensemble")
    parser.add_argument("--splits", type=int, default=None, help="first N splits (default: all)")
    parser.add_argument("--epochs-multiplier", type=int, default=10, help="epochs = n_epochs.txt x this (protocol: 10)")
    parser.add_argument("--samples", type=int, default=100, help="Monte Carlo samples at test time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import numpy as np

    folders = args.folders
    if not folders:
        root = os.environ.get("TFP_UQ_UCI_DIR")
        if not root:
            parser.error("give dataset folders or set TFP_UQ_UCI_DIR")
        folders = sorted(os.path.join(root, d) for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    methods = args.methods.split(",")
    rows = []
    for folder in folders:
        name = os.path.basename(os.path.normpath(folder))
        splits = _read_int(folder, "n_splits.txt", 20)
        splits = min(splits, args.splits) if args.splits else splits
        epochs = _read_int(folder, "n_epochs.txt", 40) * args.epochs_multiplier
        hidden = _read_int(folder, "n_hidden.txt", 50)
        for method in methods:
            start = time.perf_counter()
            scores = np.array(
                [run_split(folder, k, method, epochs, hidden, args.samples, args.seed) for k in range(splits)]
            )
            mean, error = (
                scores.mean(0),
                scores.std(0, ddof=1) / np.sqrt(len(scores)) if len(scores) > 1 else np.zeros(2),
            )
            rows.append((name, method, splits, mean, error, time.perf_counter() - start))
            print(
                f"{name:18s} {method:12s} RMSE {mean[0]:.3f} +- {error[0]:.3f}  LL {mean[1]:.3f} +- {error[1]:.3f}  "
                f"({splits} splits, {time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"\n{'dataset':18s} {'method':12s} {'splits':>6s} {'RMSE':>15s} {'test LL':>15s} {'published MC dropout':>30s}"
    )
    for name, method, splits, mean, error, _ in rows:
        published = PUBLISHED_MC_DROPOUT.get(name)
        reference = (
            f"{published[0][0]:.2f} +- {published[0][1]:.2f} / {published[1][0]:.2f} +- {published[1][1]:.2f}"
            if published
            else "-"
        )
        print(
            f"{name:18s} {method:12s} {splits:6d} {mean[0]:7.3f} +- {error[0]:.3f} "
            f"{mean[1]:7.3f} +- {error[1]:.3f} {reference:>30s}"
        )


if __name__ == "__main__":
    main()
