"""NUTS speed: `tfp_uq.inference.sample_posterior` on both Keras backends against NumPyro and plain TFP.

The model: a 1-hidden-layer BNN (50 tanh units, N(0, 1) priors on every
weight, Gaussian likelihood with noise scale 0.5 on standardised targets) on
the first training split of a UCI folder given by path. For 1 and 4 chains it
runs NUTS (max tree depth 10, target acceptance 0.8, `--burnin` warm-up and
`--results` kept steps) with

- `sample_posterior` on KERAS_BACKEND=tensorflow and on KERAS_BACKEND=jax
  (dual-averaging step size; chains vectorised);
- plain TFP: the same kernel on a log-density written directly in TensorFlow
  (einsum over the chains' stacked weights);
- NumPyro's NUTS with its default warm-up (step size and diagonal mass
  matrix); 4 chains run one after another ("sequential", its default on one
  device) and vectorised.

Every run starts its chains at the same points (the initial weights plus the
same jitter `sample_posterior` adds) and runs in a fresh process with
`--threads` CPU threads. It prints, per run, the wall time of the call
including compilation (library imports excluded), the minimum over weights of
the effective sample size (TFP's estimator, across chains, for every run),
ESS per second, the mean leapfrog steps per kept draw, and the wall time as a
ratio to NumPyro's (sequential for 4 chains).

Run:  .venv/bin/python benchmarks/hmc_speed.py ../shared/data/uci/concrete [--burnin 300 --results 300]
Needs NumPyro (`pip install -e ".[bench]"`); without it the NumPyro rows say so.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

HIDDEN, NOISE, JITTER, STEP_SIZE, MAX_TREE_DEPTH, TARGET_ACCEPT = 50, 0.5, 0.1, 0.01, 10, 0.8
RUNS = (
    ("tfp_uq, TensorFlow", "tfp_uq", "tensorflow"),
    ("tfp_uq, JAX", "tfp_uq", "jax"),
    ("plain TFP, TensorFlow", "plain_tfp", "tensorflow"),
    ("NumPyro", "numpyro", "sequential"),
    ("NumPyro, vectorized", "numpyro", "vectorized"),
)


def _data(folder):
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from uci import load_split

    x, y, _, _ = load_split(folder, 0)
    x = ((x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)).astype("float32")
    y = ((y - y.mean(0)) / y.std(0)).astype("float32")
    return x, y


def _shapes(d):
    return ((d, HIDDEN), (HIDDEN,), (HIDDEN, 1), (1,))


def _weights(d, seed):
    """The model's initial weights, N(0, 0.1^2)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.1, shape).astype("float32") for shape in _shapes(d)]


def _starts(d, chains, seed):
    """Each chain's start: the initial weights plus N(0, JITTER^2), drawn as `sample_posterior` draws its jitter."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(w[None] + JITTER * rng.normal(size=(chains,) + w.shape)).astype("float32") for w in _weights(d, seed)]


def _min_ess(draws):
    """Minimum ESS over all weights of `(steps, chains, ...)` draws, by TFP's estimator."""
    import numpy as np
    from tensorflow_probability.substrates import numpy as tfp_numpy

    return min(
        float(np.min(tfp_numpy.mcmc.effective_sample_size(s, cross_chain_dims=1 if s.shape[1] > 1 else None)))
        for s in draws
    )


def run_tfp_uq(x, y, chains, args):
    import keras

    import tfp_uq

    if keras.backend.backend() == "jax":
        from tfp_uq.inference import _substrate

        _substrate.get()  # imports TFP's JAX substrate, as NumPyro's import is outside its timing
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(HIDDEN, activation="tanh"), keras.layers.Dense(1)]
    )
    model.set_weights(_weights(x.shape[1], args.seed))
    start = time.perf_counter()
    posterior = tfp_uq.inference.sample_posterior(
        model, x, y, noise_scale=NOISE, num_chains=chains, num_burnin=args.burnin, num_results=args.results,
        step_size=STEP_SIZE, max_tree_depth=MAX_TREE_DEPTH, target_accept=TARGET_ACCEPT, jitter=JITTER,
        seed=args.seed, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return seconds, posterior.samples, posterior.diagnostics["mean_leapfrog_steps"]


def run_plain_tfp(x, y, chains, args):
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp

    x = tf.constant(x)

    def log_prob(w1, b1, w2, b2):
        hidden = tf.tanh(tf.einsum("nd,cdh->cnh", x, w1) + tf.expand_dims(b1, 1))
        out = tf.einsum("cnh,cho->cno", hidden, w2) + tf.expand_dims(b2, 1)
        z = (y[None] - out) / NOISE
        like = -0.5 * tf.reduce_sum(z * z, axis=[1, 2]) - y.size * (math.log(NOISE) + 0.5 * math.log(2 * math.pi))
        prior = sum(
            -0.5 * tf.reduce_sum(tf.reshape(w * w, (chains, -1)), axis=1)
            - 0.5 * math.log(2 * math.pi) * int(math.prod(w.shape[1:]))
            for w in (w1, b1, w2, b2)
        )
        return like + prior

    init = [tf.constant(s) for s in _starts(x.shape[1], chains, args.seed)]
    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
        tfp.mcmc.NoUTurnSampler(log_prob, step_size=STEP_SIZE, max_tree_depth=MAX_TREE_DEPTH),
        num_adaptation_steps=int(0.8 * args.burnin),
        target_accept_prob=TARGET_ACCEPT,
    )

    @tf.function(jit_compile=True, autograph=False)
    def run():
        return tfp.mcmc.sample_chain(
            args.results, init, kernel=kernel, num_burnin_steps=args.burnin, seed=tf.constant([args.seed, 0]),
            trace_fn=lambda _, results: results.inner_results.leapfrogs_taken,
        )  # fmt: skip

    start = time.perf_counter()
    draws, leapfrogs = run()
    draws = [np.asarray(d) for d in draws]
    return time.perf_counter() - start, draws, float(np.mean(leapfrogs))


def run_numpyro(x, y, chains, args, chain_method):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    names = ("w1", "b1", "w2", "b2")

    def model(x, y):
        w1, b1, w2, b2 = (
            numpyro.sample(name, dist.Normal(0.0, 1.0).expand(shape).to_event(len(shape)))
            for name, shape in zip(names, _shapes(x.shape[1]))
        )
        out = jnp.tanh(x @ w1 + b1) @ w2 + b2
        numpyro.sample("y", dist.Normal(out, NOISE).to_event(2), obs=y)

    starts = dict(zip(names, _starts(x.shape[1], chains, args.seed)))
    if chains == 1:
        starts = {name: value[0] for name, value in starts.items()}
    start = time.perf_counter()
    mcmc = MCMC(
        NUTS(model, step_size=STEP_SIZE, max_tree_depth=MAX_TREE_DEPTH, target_accept_prob=TARGET_ACCEPT),
        num_warmup=args.burnin,
        num_samples=args.results,
        num_chains=chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(args.seed), x, y, init_params=starts, extra_fields=("num_steps",))
    samples = mcmc.get_samples(group_by_chain=True)
    draws = [np.moveaxis(np.asarray(samples[name]), 0, 1) for name in names]  # (steps, chains, ...)
    seconds = time.perf_counter() - start
    return seconds, draws, float(np.mean(np.asarray(mcmc.get_extra_fields()["num_steps"])))


def worker(args):
    x, y = _data(args.folder)
    if args.implementation == "tfp_uq":
        seconds, draws, leapfrogs = run_tfp_uq(x, y, args.chains, args)
    elif args.implementation == "plain_tfp":
        seconds, draws, leapfrogs = run_plain_tfp(x, y, args.chains, args)
    else:
        seconds, draws, leapfrogs = run_numpyro(x, y, args.chains, args, args.variant)
    print(json.dumps({"seconds": seconds, "min_ess": _min_ess(draws), "leapfrogs": leapfrogs}))


def _environment(backend, threads):
    env = dict(os.environ, KERAS_BACKEND=backend if backend in ("tensorflow", "jax") else "jax")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
    env["XLA_FLAGS"] += f" intra_op_parallelism_threads={threads}"
    env["OMP_NUM_THREADS"] = env["TF_NUM_INTRAOP_THREADS"] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a UCI dataset folder, e.g. ../shared/data/uci/concrete")
    parser.add_argument("--burnin", type=int, default=300)
    parser.add_argument("--results", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--only", nargs="+", help="run only these implementations (tfp_uq, plain_tfp, numpyro)")
    parser.add_argument("--worker", nargs=3, metavar=("IMPLEMENTATION", "VARIANT", "CHAINS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.implementation, args.variant, args.chains = args.worker[0], args.worker[1], int(args.worker[2])
        return worker(args)

    try:
        import numpyro  # noqa: F401

        have_numpyro = True
    except ImportError:
        have_numpyro = False
    x, _ = _data(args.folder)
    print(
        f"{os.path.basename(os.path.normpath(args.folder))}: {x.shape[0]} points, {x.shape[1]}-{HIDDEN}-1 tanh BNN, "
        f"NUTS {args.burnin} warm-up + {args.results} results, {args.threads} thread(s)"
    )
    print(
        f"{'implementation':24s} {'chains':>6s} {'wall s':>7s} {'min ESS':>8s} {'ESS/s':>7s} {'leapfrogs':>9s} "
        f"{'time / NumPyro':>14s}"
    )
    for chains in args.chains:
        rows, reference = [], None
        for label, implementation, variant in RUNS:
            if args.only and implementation not in args.only:
                continue
            if implementation == "numpyro" and variant == "vectorized" and chains == 1:
                continue
            if implementation == "numpyro" and not have_numpyro:
                print(f"{label:24s} {chains:6d}  NumPyro not importable: pip install -e '.[bench]'")
                continue
            command = [sys.executable, os.path.abspath(__file__), args.folder, "--burnin", str(args.burnin),
                       "--results", str(args.results), "--seed", str(args.seed),
                       "--worker", implementation, variant, str(chains)]  # fmt: skip
            completed = subprocess.run(command, capture_output=True, text=True, env=_environment(variant, args.threads))
            if completed.returncode != 0:
                print(f"{label:24s} {chains:6d}  failed: {completed.stderr.strip().splitlines()[-1]}")
                continue
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            if implementation == "numpyro" and variant == "sequential":
                reference = result["seconds"]
            rows.append((label, result))
        for label, result in rows:
            ratio = f"{result['seconds'] / reference:14.2f}" if reference else f"{'':>14s}"
            print(
                f"{label:24s} {chains:6d} {result['seconds']:7.1f} {result['min_ess']:8.1f} "
                f"{result['min_ess'] / result['seconds']:7.2f} {result['leapfrogs']:9.1f} {ratio}",
                flush=True,
            )


if __name__ == "__main__":
    main()
