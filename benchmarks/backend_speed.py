"""Training and inference speed of the Bayesian Dense layers on both Keras backends.

The MLP of layers_speed.py (784-256-10, batch 128, Adam, sparse categorical
cross-entropy on one fixed random batch) with `keras.layers.Dense` and with
DenseReparameterization, DenseFlipout and DenseLocalReparameterization
(default arguments), timed as `model.fit` over `--steps` steps of one
repeated batch (a `tf.data` pipeline on TensorFlow, a Python generator on
JAX) and as `model.predict` over as many batches (training=False, one sample
per call), best of `--repeats` timings after a warm-up of each. Each call is
timed at `--steps` and at 4x as many steps, and a step's time is the
difference of the two best times over the 3x `--steps` extra steps: a fit or
predict call's fixed cost (~0.4 s on TensorFlow: callbacks, iterator, the
function's dispatch) cancels out. Each
backend runs in its own subprocess (Keras fixes its backend at import):
TensorFlow with XLA off and on (`jit_compile`), JAX (always XLA-compiled).
Every ratio is against the plain Dense MLP of the same backend and mode,
measured in the same process; the models alternate, so a busy spell of the
host spreads over all of them. Threads: `--threads` for TensorFlow's intra-
and inter-op pools and XLA's CPU backend on both.

Run:  .venv/bin/python benchmarks/backend_speed.py  [--steps 100] [--repeats 5] [--threads 1]
      [--backends tensorflow,jax]
"""

import argparse
import json
import os
import subprocess
import sys
import time

LAYERS = ("Dense", "DenseReparameterization", "DenseFlipout", "DenseLocalReparameterization")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="the short call's steps (the long one: 4x)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many timed epochs per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # the backend this process times
    return parser.parse_args(argv)


def _build(keras, layers, name, jit):
    cls = keras.layers.Dense if name == "Dense" else getattr(layers, name)
    model = keras.Sequential([keras.Input((784,)), cls(256, activation="relu"), cls(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=jit)
    return model


def worker(args):
    """Times every layer in this process's backend; prints one JSON line of seconds per step."""
    import keras
    import numpy as np

    import tfp_uq
    from tfp_uq import layers

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        modes = (False, True)
    else:
        modes = (True,)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 784)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size)
    if keras.backend.backend() == "tensorflow":

        def data(*arrays):
            return tf.data.Dataset.from_tensors(arrays).repeat()
    else:

        def data(*arrays):
            while True:
                yield arrays

    def timings(model, steps):
        fit = (model.fit, (data(x, y),), {"steps_per_epoch": steps, "epochs": 1, "verbose": 0})
        predict = (model.predict, (data(x),), {"steps": steps, "verbose": 0})
        return {"train": fit, "forward": predict}

    long_steps = 4 * args.steps

    models = {}
    for jit in modes:
        for name in LAYERS:
            model = _build(keras, layers, name, jit)
            if name != "Dense":
                tfp_uq.set_kl_weight(model, num_examples=60_000)
            for call, call_args, kwargs in timings(model, args.steps).values():
                call(*call_args, **kwargs)
            models[f"{name}|{int(jit)}"] = model
    best = {(kind, steps): {} for kind in ("train", "forward") for steps in (args.steps, long_steps)}
    for _ in range(args.repeats):
        for key, model in models.items():
            for steps in (args.steps, long_steps):
                for kind, (call, call_args, kwargs) in timings(model, steps).items():
                    start = time.perf_counter()
                    call(*call_args, **kwargs)
                    seconds = time.perf_counter() - start
                    best[kind, steps][key] = min(best[kind, steps].get(key, float("inf")), seconds)
    train, forward = (
        {key: (best[kind, long_steps][key] - best[kind, args.steps][key]) / (long_steps - args.steps) for key in models}
        for kind in ("train", "forward")
    )
    print(json.dumps({"backend": keras.backend.backend(), "train": train, "forward": forward}))


def run_backend(backend, args):
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    threads = f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'}"
    environment["XLA_FLAGS"] = f"{environment.get('XLA_FLAGS', '')} {threads}".strip()
    environment["OMP_NUM_THREADS"] = str(args.threads)
    command = [sys.executable, __file__, "--worker", backend, "--steps", str(args.steps)]
    command += ["--repeats", str(args.repeats), "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"the {backend} worker failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def print_table(results):
    print(
        f"{'backend':12s} {'XLA':4s} {'layer':30s} {'train ms':>9s} {'x Dense':>8s} {'forward ms':>11s} {'x Dense':>8s}"
    )
    for result in results:
        for key in result["train"]:
            name, jit = key.split("|")
            plain = f"Dense|{jit}"
            train, forward = result["train"][key], result["forward"][key]
            print(
                f"{result['backend']:12s} {'on' if jit == '1' else 'off':4s} {name:30s} {train * 1e3:9.3f} "
                f"{train / result['train'][plain]:7.2f}x {forward * 1e3:11.3f} "
                f"{forward / result['forward'][plain]:7.2f}x"
            )


def main():
    args = parse_args()
    if args.worker:
        worker(args)
        return
    results = [run_backend(backend, args) for backend in args.backends.split(",")]
    print(
        f"MLP 784-256-10, batch {args.batch_size}, {args.threads} thread(s), best of {args.repeats}: "
        f"(time of {4 * args.steps} steps - time of {args.steps}) / {3 * args.steps}"
    )
    print_table(results)


if __name__ == "__main__":
    main()
