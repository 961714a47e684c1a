"""Training speed of tfp_uq's Bayesian layers against plain Keras layers.

Trains an MLP 784-256-10 (batch 128, Adam) with `keras.layers.Dense` and with
each Bayesian Dense layer, with XLA off and on, and prints steps per second
and the ratio of step time to plain Dense measured in the same run and mode.
When `tf_keras` is importable, TFP's own `tfp.layers` equivalents run side by
side (their ratio is against a tf_keras Dense MLP).

Run:  .venv/bin/python benchmarks/layers_speed.py  [--steps 200] [--threads 2]
Takes about 2 minutes on 2 CPU cores with the defaults.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="TF intra/inter-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--no-tfp", action="store_true", help="skip TFP's tf_keras layers")
    return parser.parse_args()


def dataset(tf, batch_size, input_shape, num_classes=10):
    rng = __import__("numpy").random.default_rng(0)
    x = rng.normal(size=(batch_size,) + tuple(input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=(batch_size,))
    return tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(4)


def time_model(tf, model, data, jit, args):
    """Best seconds per step over `args.repeats` timings of `args.steps` steps."""
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        jit_compile=jit,
    )
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
        best = min(best, (time.perf_counter() - start) / args.steps)
    return best



def keras_rows(tf, args):
    import keras

    import tfp_uq

    data = dataset(tf, args.batch_size, (784,))
    kinds = [
        ("keras Dense", keras.layers.Dense, {}),
        ("tfp_uq DenseReparameterization", tfp_uq.DenseReparameterization, {"kl_weight": 1e-4}),
        ("tfp_uq DenseFlipout", tfp_uq.DenseFlipout, {"kl_weight": 1e-4}),
        ("tfp_uq DenseLocalReparameterization", tfp_uq.DenseLocalReparameterization, {"kl_weight": 1e-4}),
    ]
    rows = []
    for jit in (False, True):
        for name, cls, kwargs in kinds:
            model = keras.Sequential(
                [keras.Input((784,)), cls(256, activation="relu", **kwargs), cls(10, activation="softmax", **kwargs)]
            )
            rows.append((name, jit, time_model(tf, model, data, jit, args)))
    return rows


def tfp_rows(tf, args):
    try:
        import tf_keras
        import tensorflow_probability as tfp
    except ImportError:
        return []
    data = dataset(tf, args.batch_size, (784,))
    kinds = [
        ("tf_keras Dense", tf_keras.layers.Dense),
        ("tfp.layers DenseReparameterization", tfp.layers.DenseReparameterization),
        ("tfp.layers DenseFlipout", tfp.layers.DenseFlipout),
        ("tfp.layers DenseLocalReparameterization", tfp.layers.DenseLocalReparameterization),
    ]
    rows = []
    for jit in (False, True):
        for name, cls in kinds:
            model = tf_keras.Sequential(
                [tf_keras.Input((784,)), cls(256, activation="relu"), cls(10, activation="softmax")]
            )
            rows.append((name, jit, time_model(tf, model, data, jit, args)))
    return rows


def print_table(title, rows):
    baseline = {jit: seconds for name, jit, seconds in rows if name.endswith(" Dense")}
    eager = {name: seconds for name, jit, seconds in rows if not jit}
    print(f"\n{title}")
    print(f"{'layer':42s} {'XLA':>4s} {'steps/s':>9s} {'ms/step':>8s} {'x Dense':>8s} {'x no-XLA':>9s}")
    for name, jit, seconds in rows:
        print(
            f"{name:42s} {'on' if jit else 'off':>4s} {1 / seconds:9.1f} {seconds * 1e3:8.2f} "
            f"{seconds / baseline[jit]:8.2f} {seconds / eager[name]:9.2f}"
        )


def main():
    args = parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"MLP 784-256-10, batch {args.batch_size}, Adam, {args.threads} threads, "
          f"best of {args.repeats} x {args.steps} steps")
    print_table("Keras 3 (tfp_uq)", keras_rows(tf, args))
    if not args.no_tfp:
        rows = tfp_rows(tf, args)
        if rows:
            print_table("tf_keras (TFP's own layers)", rows)
        else:
            print("\ntf_keras not importable: TFP's layers skipped")


if __name__ == "__main__":
    main()
