"""Speed of `tfp_uq.predict` against plain forward passes and a Python loop.

MLP 784-256-10 with DenseFlipout layers, 100 Monte Carlo samples for 10,000
inputs, timed three ways in one run:

  tfp_uq.predict      all samples vectorised in compiled calls (XLA off: the
                      CPU default, and on);
  (a) plain passes    100 deterministic passes of the same MLP with
                      keras.layers.Dense over the same inputs, compiled with
                      XLA: the FLOP floor, since one sample costs one pass;
  (b) predict loop    a Python loop of 100 `model.predict` calls.

Run:  .venv/bin/python benchmarks/predict_speed.py [--inputs 10000] [--samples 100]
Takes about 3 minutes on 2 CPU cores (most of it in the loop (b)).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000, help="inputs per call of the plain passes (a)")
    parser.add_argument(
        "--loop-calls",
        type=int,
        default=None,
        help="model.predict calls timed for (b), scaled to --samples (default: all)",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    import tfp_uq

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    x = np.random.default_rng(0).normal(size=(args.inputs, 784)).astype("float32")

    def mlp(dense, **kwargs):
        return keras.Sequential(
            [keras.Input((784,)), dense(256, activation="relu", **kwargs), dense(10, activation="softmax", **kwargs)]
        )

    bayesian = mlp(tfp_uq.DenseFlipout, kl_weight=1e-4)
    plain = mlp(keras.layers.Dense)

    def timed(function, repeats=2):
        function()  # compile
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            best = min(best, time.perf_counter() - start)
        return best

    t_predict = timed(lambda: tfp_uq.predict(bayesian, x, num_samples=args.samples, jit_compile=False))
    t_predict_xla = timed(lambda: tfp_uq.predict(bayesian, x, num_samples=args.samples, jit_compile=True))

    forward = tf.function(lambda batch: plain(batch, training=False), jit_compile=True)
    batches = [tf.constant(x[i : i + args.batch_size]) for i in range(0, len(x), args.batch_size)]

    def plain_passes():
        for _ in range(args.samples):
            outputs = [forward(batch) for batch in batches]
        return outputs[-1].numpy()

    t_plain = timed(plain_passes)

    calls = args.loop_calls or args.samples

    def loop():
        return [bayesian.predict(x, verbose=0) for _ in range(calls)]

    t_loop = timed(loop, repeats=1) * args.samples / calls

    print(f"MLP 784-256-10 (DenseFlipout), {args.samples} samples x {args.inputs} inputs, {args.threads} threads")
    print(f"{'method':40s} {'seconds':>9s} {'x plain passes':>15s}")
    for name, seconds in [
        ("tfp_uq.predict (vectorised, no XLA)", t_predict),
        ("tfp_uq.predict (vectorised, XLA)", t_predict_xla),
        ("(a) plain Dense MLP, 100 passes (XLA)", t_plain),
        (
            "(b) loop of model.predict" + ("" if calls == args.samples else f" (x{args.samples // calls} of {calls})"),
            t_loop,
        ),
    ]:
        print(f"{name:40s} {seconds:9.2f} {seconds / t_plain:15.2f}")
    print(f"tfp_uq.predict is {t_loop / t_predict:.1f}x faster than the loop (b)")


if __name__ == "__main__":
    main()
