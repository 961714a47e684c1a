"""Runs tfp_uq's public entry points on the JAX backend; prints a JSON summary.

HMC (`sample_posterior` on a conjugate linear regression, `PosteriorSamples`
predict, save and load, a run resumed from its checkpoint folder), `export`
of a Flipout classifier and of the HMC draws (served later by the caller in a
process without tfp_uq) and the `tfp-uq` command (IVON, conformal sets).

Run as a subprocess (the Keras backend is fixed when keras is imported).
Usage: python jax_parity.py OUTPUT_DIR
"""

import contextlib
import io
import json
import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from tensorflow_probability.substrates import numpy as tfp_numpy  # noqa: E402

import tfp_uq  # noqa: E402
from tfp_uq import cli  # noqa: E402
from tfp_uq.inference import PosteriorSamples, hmc, sample_posterior  # noqa: E402

NOISE = 0.5
HMC_OPTIONS = dict(noise_scale=NOISE, num_chains=2, num_burnin=100, num_results=200, chunk_size=50, seed=1)


def _linear_data(n=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + NOISE * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def _hmc(out):
    x, y = _linear_data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    posterior = sample_posterior(model, x, y, progress=False, **HMC_OPTIONS)
    draws = posterior.samples[0].reshape(-1, 3)
    # The ESS of each weight's squared deviation: what the variance estimate's error depends on.
    squares = (posterior.samples[0].reshape(HMC_OPTIONS["num_results"], -1, 3) - draws.mean(0)) ** 2
    square_ess = tfp_numpy.mcmc.effective_sample_size(squares, cross_chain_dims=1)
    result = posterior.predict(x[:5])
    posterior.save(os.path.join(out, "posterior.npz"))
    restored = PosteriorSamples.load(os.path.join(out, "posterior.npz"), model)

    # A run killed after its first chunk, then started again: the uninterrupted draws.
    save, chunks = hmc._Checkpoint.save, []

    def save_then_die(self, *args):
        save(self, *args)
        chunks.append(args[0])
        raise KeyboardInterrupt

    hmc._Checkpoint.save = save_then_die
    folder = os.path.join(out, "checkpoint")
    with contextlib.suppress(KeyboardInterrupt):
        sample_posterior(model, x, y, progress=False, checkpoint_dir=folder, **HMC_OPTIONS)
    hmc._Checkpoint.save = save
    resumed = sample_posterior(model, x, y, progress=False, checkpoint_dir=folder, **HMC_OPTIONS)

    tfp_uq.export(posterior, os.path.join(out, "hmc_export"), num_samples=400, task="regression")
    np.save(os.path.join(out, "hmc_x.npy"), x[:5])
    diagnostics = {k: v for k, v in posterior.diagnostics.items() if k not in ("ess", "rhat")}
    return {
        "x": x.tolist(),
        "y": y.tolist(),
        "draws_mean": draws.mean(0).tolist(),
        "draws_cov": np.cov(draws.T).tolist(),
        "square_ess": np.asarray(square_ess).tolist(),
        "diagnostics": diagnostics,
        "predict_mean": result.mean.ravel().tolist(),
        "predict_epistemic": result.epistemic_variance.ravel().tolist(),
        "predict_aleatoric": result.aleatoric_variance.ravel().tolist(),
        "draws_predict_mean": (x[:5] @ draws.mean(0)).tolist(),
        "draws_predict_variance": (x[:5] @ draws.T).var(1).tolist(),
        "restored_max_diff": float(np.max(np.abs(restored.predict(x[:5]).mean - result.mean))),
        "killed_after_steps": chunks,
        "resumed_max_diff": float(np.max(np.abs(resumed.samples[0] - posterior.samples[0]))),
    }


def _export(out):
    x = np.random.default_rng(0).normal(size=(7, 4)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            tfp_uq.layers.DenseFlipout(8, activation="relu", seed=1, posterior_scale_init=0.3),
            tfp_uq.layers.DenseFlipout(3, activation="softmax", seed=2, posterior_scale_init=0.3),
        ]
    )
    tfp_uq.export(model, os.path.join(out, "flipout_export"), num_samples=40, threshold=0.9, seed=5)
    expected = tfp_uq.predict(model, x, num_samples=40, seed=5)
    np.save(os.path.join(out, "export_x.npy"), x)
    return {"probs": expected.probs.tolist(), "mutual_information": expected.mutual_information.tolist()}


def _cli(out):
    from sklearn.datasets import load_iris

    iris = load_iris()
    csv = os.path.join(out, "iris.csv")
    with open(csv, "w") as handle:
        handle.write("sl,sw,pl,pw,species\n")
        for row, label in zip(iris.data, iris.target):
            handle.write(",".join(str(v) for v in row) + f",{iris.target_names[label]}\n")
    folder = os.path.join(out, "cli_model")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        fit = cli.main(["fit", "--csv", csv, "--target", "species", "--task", "classification", "--method", "ivon",
                        "--epochs", "30", "--samples", "10", "--coverage", "0.9", "--output", folder,
                        "--quiet"])  # fmt: skip
        evaluate = cli.main(["evaluate", folder, "--csv", csv, "--samples", "10", "--predictions",
                             os.path.join(out, "predictions.csv")])  # fmt: skip
        native = cli.main(["build-native"])
    table = printed.getvalue().rsplit("metrics on", 1)[1]
    with open(os.path.join(out, "predictions.csv")) as handle:
        header = handle.readline().strip().split(",")
    return {
        "fit": fit,
        "evaluate": evaluate,
        "build_native": native,
        "accuracy": float(table.split("accuracy", 1)[1].split()[0]),
        "conformal_coverage": float(table.split("conformal_coverage", 1)[1].split()[0]),
        "columns": header,
    }


def main():
    assert keras.backend.backend() == "jax"
    out = sys.argv[1]
    summary, seconds = {}, {}
    for name, part in (("hmc", _hmc), ("export", _export), ("cli", _cli)):
        started = time.perf_counter()
        summary[name] = part(out)
        seconds[name] = time.perf_counter() - started
    summary["seconds"] = seconds
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
