"""Training speed of tfp_uq's Bayesian layers against plain Keras layers.

MLP: 784-256-10 (batch 128, Adam) with `keras.layers.Dense` and with each
Bayesian Dense layer. CNN: two 3x3 convolutions (32 and 64 filters, ReLU) on
28x28x1 images, then Flatten and a plain Dense(10), with `keras.layers.Conv2D`
and with each Bayesian Conv2D layer. Both with XLA off and on; the table gives
steps per second and the ratio of step time to the plain layer measured in
the same run and mode. Each row is the best of `--instances` freshly built
models (XLA step times on a small VM jump between two levels per compiled
model) and, within each, the best of `--repeats` timings.

The MLP table also has a floor row: a Dense layer whose kernel is the sum of
two variables, so Adam updates twice as many values. A mean-field layer has
two variables per weight (mean and scale), so no such layer can be faster
than this row, whatever its sampling costs.

Each Bayesian layer runs twice: with its default posterior scale (the
curvature parameterisation) and, in the rows marked "softplus scale", with
`posterior_scale_init=1e-3` (scale = softplus(rho) + floor, the
parameterisation before it).

A second table times one forward pass of the same models at inference
(`training=False`, one sample per call: what `model.predict` and `evaluate`
run), in steps per second read as passes per second.

Without XLA, training steps use tfp_uq's compiled C++ kernels when they are
built (`make` builds them; see tfp_uq/_native): each Bayesian row then has a
second row, "XLA-compiled draw", timed with the kernels switched off
(`TFP_UQ_NATIVE=0`), as a user without a C++ compiler gets it.

When `tf_keras` is importable, TFP's own `tfp.layers` equivalents run side by
side (their ratio is against the tf_keras plain layer).

Four more model kinds (`--only`), each with the plain Keras layer first and
its Bayesian twins after it, ratios against the plain one:
- conv_transpose: 14x14x16 inputs, two Conv2DTranspose (32 and 16 filters,
  3x3, stride 2, ReLU) up to 56x56, then a 4x4 average pool, Flatten, Dense(10).
- depthwise: 28x28x16 inputs, two DepthwiseConv2D (3x3, ReLU), Flatten, Dense(10).
- attention: 32 tokens of 64 features, a 4-head MultiHeadAttention block (key
  dimension 16) with a residual, pooling and Dense(10); the Bayesian rows are
  that model after `tfp_uq.bayesianize` (its four EinsumDense projections and
  the head converted in place).
- lstm: sequences of 32 steps of 16 features, LSTM(128), Dense(10).

Run:  .venv/bin/python benchmarks/layers_speed.py  [--steps 200] [--threads 2]
          [--only mlp|cnn|conv_transpose|depthwise|attention|lstm]
Takes about 10 minutes on 2 CPU cores with the defaults (MLP and CNN).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


KINDS = {
    "mlp": "MLP 784-256-10",
    "cnn": "CNN 2 x Conv2D on 28x28x1",
    "conv_transpose": "2 x Conv2DTranspose 14x14x16 -> 56x56",
    "depthwise": "2 x DepthwiseConv2D on 28x28x16",
    "attention": "4-head attention block, 32 tokens x 64",
    "lstm": "LSTM(128) on 32 steps x 16",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="TF intra/inter-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings per model")
    parser.add_argument("--instances", type=int, default=2, help="best of this many freshly built models")
    parser.add_argument("--no-tfp", action="store_true", help="skip TFP's tf_keras layers")
    parser.add_argument("--only", choices=tuple(KINDS), help="run one model kind")
    return parser.parse_args()


def dataset(tf, batch_size, input_shape, num_classes=10):
    rng = __import__("numpy").random.default_rng(0)
    x = rng.normal(size=(batch_size,) + tuple(input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=(batch_size,))
    return tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(4)


def best_call_seconds(fn, calls, repeats):
    """Best seconds per call of `fn()` over `repeats` timings of `calls` calls."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = fn()
        out.numpy()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


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


def _best_time(tf, build, data, jit, args):
    return min(time_model(tf, build(), data, jit, args) for _ in range(args.instances))


def _two_variable_dense():
    import keras

    class TwoVariableDense(keras.layers.Dense):
        """Dense with kernel = kernel + kernel_2: Adam's work of a mean-field layer."""

        def build(self, input_shape):
            super().build(input_shape)
            self.kernel_2 = self.add_weight(name="kernel_2", shape=self.kernel.shape, initializer="zeros")

        def call(self, inputs):
            outputs = keras.ops.matmul(inputs, self.kernel + self.kernel_2) + self.bias
            return self.activation(outputs)

    return TwoVariableDense


def _mlp(module, cls, kwargs):
    return module.Sequential(
        [module.Input((784,)), cls(256, activation="relu", **kwargs), cls(10, activation="softmax", **kwargs)]
    )


def _cnn(module, cls, kwargs):
    return module.Sequential(
        [
            module.Input((28, 28, 1)),
            cls(32, 3, activation="relu", **kwargs),
            cls(64, 3, activation="relu", **kwargs),
            module.layers.Flatten(),
            module.layers.Dense(10, activation="softmax"),
        ]
    )


def _attention(bayesianize_method=None):
    import keras

    import tfp_uq

    inputs = keras.Input((32, 64))
    attended = keras.layers.MultiHeadAttention(4, 16)(inputs, inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(attended + inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(pooled))
    if bayesianize_method is None:
        return model
    return tfp_uq.bayesianize(model, method=bayesianize_method, num_examples=10_000, seed=0)


def _new_kinds(model_kind):
    """(input shape, [(row name, model factory)]) of the layer kinds added for issue 25."""
    import keras

    import tfp_uq

    bayes = {"kl_weight": 1e-4}

    def sequential(shape, *layer_list):
        return lambda: keras.Sequential([keras.Input(shape), *[make() for make in layer_list]])

    head = [keras.layers.Flatten, lambda: keras.layers.Dense(10, activation="softmax")]
    if model_kind == "conv_transpose":
        shape = (14, 14, 16)

        def upsampling(cls, kwargs):
            return sequential(
                shape,
                lambda: cls(32, 3, strides=2, padding="same", activation="relu", **kwargs),
                lambda: cls(16, 3, strides=2, padding="same", activation="relu", **kwargs),
                lambda: keras.layers.AveragePooling2D(4),
                *head,
            )

        return shape, [
            ("keras Conv2DTranspose", upsampling(keras.layers.Conv2DTranspose, {})),
            (
                "tfp_uq Conv2DTransposeReparameterization",
                upsampling(tfp_uq.layers.Conv2DTransposeReparameterization, bayes),
            ),
            ("tfp_uq Conv2DTransposeFlipout", upsampling(tfp_uq.layers.Conv2DTransposeFlipout, bayes)),
        ]
    if model_kind == "depthwise":
        shape = (28, 28, 16)

        def depthwise(cls, kwargs):
            return sequential(
                shape, lambda: cls(3, activation="relu", **kwargs), lambda: cls(3, activation="relu", **kwargs), *head
            )

        return shape, [
            ("keras DepthwiseConv2D", depthwise(keras.layers.DepthwiseConv2D, {})),
            (
                "tfp_uq DepthwiseConv2DReparameterization",
                depthwise(tfp_uq.layers.DepthwiseConv2DReparameterization, bayes),
            ),
            ("tfp_uq DepthwiseConv2DFlipout", depthwise(tfp_uq.layers.DepthwiseConv2DFlipout, bayes)),
        ]
    if model_kind == "attention":
        return (32, 64), [
            ("keras MultiHeadAttention (EinsumDense)", _attention),
            ("tfp_uq EinsumDenseReparameterization", lambda: _attention("reparameterization")),
            ("tfp_uq EinsumDenseFlipout", lambda: _attention("flipout")),
        ]
    shape = (32, 16)

    def recurrent(cls, kwargs):
        return sequential(shape, lambda: cls(128, **kwargs), lambda: keras.layers.Dense(10, activation="softmax"))

    return shape, [
        ("keras LSTM", recurrent(keras.layers.LSTM, {})),
        ("tfp_uq LSTMReparameterization", recurrent(tfp_uq.layers.LSTMReparameterization, bayes)),
        ("tfp_uq LSTMFlipout", recurrent(tfp_uq.layers.LSTMFlipout, bayes)),
    ]


def _factories(model_kind):
    """(input shape, [(row name, model factory)]) of one model kind."""
    import keras

    if model_kind not in ("mlp", "cnn"):
        return _new_kinds(model_kind)
    build, shape, kinds = _keras_kinds(model_kind)
    return shape, [(name, lambda cls=cls, kwargs=kwargs: build(keras, cls, kwargs)) for name, cls, kwargs in kinds]


def _keras_kinds(model_kind):
    import keras

    import tfp_uq

    bayes = {"kl_weight": 1e-4}
    softplus = {**bayes, "posterior_scale_init": 1e-3}
    if model_kind == "mlp":
        plain = [
            ("keras Dense", keras.layers.Dense, {}),
            ("keras Dense, 2 variables per weight (floor)", _two_variable_dense(), {}),
        ]
        layers = ("DenseReparameterization", "DenseFlipout", "DenseLocalReparameterization")
        build, shape = _mlp, (784,)
    else:
        plain = [("keras Conv2D", keras.layers.Conv2D, {})]
        layers = ("Conv2DReparameterization", "Conv2DFlipout")
        build, shape = _cnn, (28, 28, 1)
    bayesian = []
    for name in layers:
        cls = getattr(tfp_uq.layers, name)
        bayesian += [(f"tfp_uq {name}", cls, bayes), (f"tfp_uq {name}, softplus scale", cls, softplus)]
    return build, shape, plain + bayesian


def _kernels_built():
    from tfp_uq import _native

    return _native.library() is not None


def keras_rows(tf, args, model_kind):
    shape, factories = _factories(model_kind)
    data = dataset(tf, args.batch_size, shape)
    rows = []
    for jit in (False, True):
        for name, factory in factories:
            rows.append((name, jit, _best_time(tf, factory, data, jit, args)))
            if not jit and name.startswith("tfp_uq") and _kernels_built():
                os.environ["TFP_UQ_NATIVE"] = "0"  # read when a model's step is traced
                try:
                    seconds = _best_time(tf, factory, data, jit, args)
                finally:
                    del os.environ["TFP_UQ_NATIVE"]
                rows.append((f"{name}, XLA-compiled draw", jit, seconds))
    return rows


def forward_rows(tf, args, model_kind):
    """Seconds per forward pass (training=False, one sample) of a batch."""
    shape, factories = _factories(model_kind)
    x = next(iter(dataset(tf, args.batch_size, shape)))[0]
    rows = []
    for jit in (False, True):
        for name, factory in factories:
            model = factory()
            forward = tf.function(lambda x, model=model: model(x, training=False), jit_compile=jit)
            rows.append((name, jit, best_call_seconds(lambda forward=forward: forward(x), args.steps, args.repeats)))
    return rows


def tfp_rows(tf, args, model_kind):
    try:
        import tensorflow_probability as tfp
        import tf_keras
    except ImportError:
        return []
    if model_kind == "mlp":
        build, shape = _mlp, (784,)
        kinds = [
            ("tf_keras Dense", tf_keras.layers.Dense),
            ("tfp.layers DenseReparameterization", tfp.layers.DenseReparameterization),
            ("tfp.layers DenseFlipout", tfp.layers.DenseFlipout),
            ("tfp.layers DenseLocalReparameterization", tfp.layers.DenseLocalReparameterization),
        ]
    else:
        build, shape = _cnn, (28, 28, 1)
        kinds = [
            ("tf_keras Conv2D", tf_keras.layers.Conv2D),
            ("tfp.layers Convolution2DReparameterization", tfp.layers.Convolution2DReparameterization),
            ("tfp.layers Convolution2DFlipout", tfp.layers.Convolution2DFlipout),
        ]
    data = dataset(tf, args.batch_size, shape)
    return [
        (name, jit, _best_time(tf, lambda cls=cls: build(tf_keras, cls, {}), data, jit, args))
        for jit in (False, True)
        for name, cls in kinds
    ]


def print_table(title, rows):
    baseline = {}
    for _, jit, seconds in rows:  # the first row of each mode is the plain layer
        baseline.setdefault(jit, seconds)
    eager = {name: seconds for name, jit, seconds in rows if not jit}
    print(f"\n{title}")
    print(f"{'layer':56s} {'XLA':>4s} {'steps/s':>9s} {'ms/step':>8s} {'x plain':>8s} {'x no-XLA':>9s}")
    for name, jit, seconds in rows:
        print(
            f"{name:56s} {'on' if jit else 'off':>4s} {1 / seconds:9.1f} {seconds * 1e3:8.2f} "
            f"{seconds / baseline[jit]:8.2f} {seconds / eager[name]:9.2f}"
        )


def main():
    args = parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(
        f"batch {args.batch_size}, Adam, {args.threads} threads, best of {args.instances} models "
        f"x {args.repeats} timings x {args.steps} steps; tfp_uq's C++ kernels "
        f"{'built' if _kernels_built() else 'not built: XLA-compiled draws only'}"
    )
    # Without --only, the two models of the original table.
    for kind in KINDS if args.only else ("mlp", "cnn"):
        if args.only not in (None, kind):
            continue
        title = KINDS[kind]
        print_table(f"{title}, Keras 3 (tfp_uq)", keras_rows(tf, args, kind))
        print_table(f"{title}, one forward pass (training=False), Keras 3 (tfp_uq)", forward_rows(tf, args, kind))
        if not args.no_tfp and kind in ("mlp", "cnn"):
            rows = tfp_rows(tf, args, kind)
            print_table(f"{title}, tf_keras (TFP's own layers)", rows) if rows else print(
                "\ntf_keras not importable: TFP's layers skipped"
            )


if __name__ == "__main__":
    main()
