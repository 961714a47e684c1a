"""What sampling a mean-field layer costs per step, operation by operation.

Times, for the 784x256 kernel of the MLP in `layers_speed.py` (200,704
weights), each elementwise operation a training step of
`DenseReparameterization` must do, alone in its own XLA-compiled function
(read one full-size array, write one), minus the cost of a plain copy; then
the layer's whole draw (posterior sample and KL) forward, and forward plus
backward. Then it times training steps of the MLP with `keras.layers.Dense`,
with Dense whose kernel is the sum of two variables (Adam's work for a layer
with a mean and a scale per weight, no sampling) and with
`DenseReparameterization`, XLA off.

The point: the sum of the operations a fresh Gaussian sample per weight needs
(random bits, inverse normal CDF, softplus and its derivative, the log in the
KL; each must touch every weight at least once per step) is close to a lower
bound on what sampling adds to a step, whatever the code around it. Compare
it with the room a ratio target leaves above the two-variable floor. The
bound is for one thread, as XLA runs each fusion: the compiled kernels of
`tfp_uq._native` (used in training steps without XLA when built) split the
same work over TensorFlow's CPU threads, so the training-step rows below use
them when `make` has built them.

Run:  .venv/bin/python benchmarks/sampling_costs.py [--threads 2]
Takes about 2 minutes on 2 CPU cores.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHAPE = (784, 256)


def best_ms(fn, calls=300, repeats=5):
    from layers_speed import best_call_seconds

    return best_call_seconds(fn, calls, repeats) * 1e3


def op_rows(tf):
    from tfp_uq import _random, priors

    loc = tf.Variable(tf.random.normal(SHAPE, stddev=0.05, seed=0))
    rho = tf.Variable(tf.fill(SHAPE, float(priors.softplus_inverse(1e-3))))
    scale = tf.Variable(priors.positive_scale(rho))
    unit = tf.Variable(tf.random.uniform(SHAPE, 0.001, 0.999, seed=0))
    seed = tf.constant([3, 4], "int64")
    shape = tf.constant(SHAPE)
    ops = {
        "copy (read + write, subtracted below)": lambda: loc * 1.0,
        "TensorFlow's Philox bits (not used)": lambda: tf.random.stateless_uniform(
            SHAPE, seed, minval=None, maxval=None, dtype="uint32", alg="philox"
        ),
        "random bits (xxHash32 of each index)": lambda: _random._bits(shape, seed),
        "inverse normal CDF": lambda: tf.math.ndtri(unit),
        "softplus (the scale)": lambda: priors.positive_scale(rho),
        "sigmoid (softplus' derivative)": lambda: tf.sigmoid(rho),
        "log (the KL's log scale)": lambda: tf.math.log(scale),
    }
    times = {name: best_ms(tf.function(fn, jit_compile=True)) for name, fn in ops.items()}
    copy = times.pop("copy (read + write, subtracted below)")
    return [(name, ms - copy) for name, ms in times.items()]


def flipout_matmul_ms(tf):
    """Flipout's two extra matmuls per step, (x * s) @ dW and its dW gradient."""
    x = tf.Variable(tf.random.normal((128, SHAPE[0]), seed=2))
    w = tf.Variable(tf.random.normal(SHAPE, seed=3))
    g = tf.Variable(tf.random.normal((128, SHAPE[1]), seed=4))
    both = best_ms(tf.function(lambda: tf.matmul(x, w)[0, 0] + tf.matmul(x, g, transpose_a=True)[0, 0]))
    call = best_ms(tf.function(lambda: x[0, 0] + w[0, 0] + g[0, 0]))
    return both - call


def draw_rows(tf):
    import tfp_uq
    from tfp_uq import _native

    layer = tfp_uq.layers.DenseReparameterization(256, kl_weight=1e-4)
    layer.build((None, 784))
    upstream = tf.random.normal(SHAPE, seed=1)
    seed = tf.constant([3, 4], "int64")

    def forward(training=None):
        samples, kl = layer.draw_posteriors(seed, training=training)
        return samples["kernel"][0, 0] + kl

    def forward_backward(training=None):
        with tf.GradientTape() as tape:
            samples, kl = layer.draw_posteriors(seed, training=training)
            loss = tf.reduce_sum(samples["kernel"] * upstream) + kl
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, layer.trainable_variables)])

    rows = [
        ("layer draw + KL, forward (XLA, as in a step)", best_ms(tf.function(forward))),
        ("layer draw + KL, forward + backward", best_ms(tf.function(forward_backward))),
    ]
    if _native.library() is not None:  # training calls outside XLA use the kernels
        rows += [
            ("layer draw + KL, forward (compiled kernels)", best_ms(tf.function(lambda: forward(True)))),
            (
                "layer draw + KL, forward + backward (compiled kernels)",
                best_ms(tf.function(lambda: forward_backward(True))),
            ),
        ]
    return rows


def step_rows(tf, keras):
    from layers_speed import _mlp, _two_variable_dense, dataset, time_model

    import tfp_uq

    data = dataset(tf, 128, (784,))
    timing = argparse.Namespace(warmup=20, steps=200, repeats=3)
    kinds = [
        ("keras Dense", keras.layers.Dense, {}),
        ("Dense, 2 variables per weight (floor)", _two_variable_dense(), {}),
        ("tfp_uq DenseReparameterization", tfp_uq.layers.DenseReparameterization, {"kl_weight": 1e-4}),
    ]
    return [(name, time_model(tf, _mlp(keras, cls, kwargs), data, False, timing) * 1e3) for name, cls, kwargs in kinds]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"{SHAPE[0]}x{SHAPE[1]} float32 kernel, {args.threads} threads, XLA-compiled, best of 5 x 300 calls")
    ops = op_rows(tf)
    print(f"\n{'operation (minus a copy)':46s} {'ms':>7s}")
    for name, ms in ops:
        print(f"{name:46s} {ms:7.3f}")
    needed = sum(ms for name, ms in ops if "not used" not in name)
    print(f"{'sum of the operations used':46s} {needed:7.3f}")
    print(f"\n{'whole draw of the layer (call included)':46s} {'ms':>7s}")
    for name, ms in draw_rows(tf):
        print(f"{name:46s} {ms:7.3f}")
    steps = step_rows(tf, keras)
    dense, floor = steps[0][1], steps[1][1]
    print(f"\n{'MLP 784-256-10 training step, XLA off':46s} {'ms':>7s} {'x Dense':>8s}")
    for name, ms in steps:
        print(f"{name:46s} {ms:7.3f} {ms / dense:8.2f}")
    matmuls = flipout_matmul_ms(tf)
    print(f"\nsampling needs at least {needed:.3f} ms; room above the floor:")
    print(f"  DenseReparameterization <= 1.5x Dense: {1.5 * dense - floor:.3f} ms")
    print(
        f"  DenseFlipout <= 1.8x Dense, less its two extra matmuls ({matmuls:.3f} ms): "
        f"{1.8 * dense - floor - matmuls:.3f} ms"
    )


if __name__ == "__main__":
    main()
