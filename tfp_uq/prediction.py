"""Prediction with uncertainty from any predictive source, many Monte Carlo samples per pass."""

import dataclasses
import functools

import keras
import numpy as np

from tfp_uq import _caches, _chunking, _inputs, _random, _summaries, _validation
from tfp_uq import task as _task
from tfp_uq.posterior import EXTRA_FIELDS_STREAM, Posterior, as_posterior

__all__ = ["NONFINITE", "PredictionResult", "predict"]

NONFINITE = ("raise", "refer", "ignore")


@dataclasses.dataclass
class PredictionResult:
    """Predictive distribution summaries from `tfp_uq.predict`.

    All arrays have the inputs' batch size first.

    Attributes:
        task: "classification" or "regression".
        mean: predictive mean (class probabilities, or the regression mean).
        samples: the Monte Carlo samples `(num_samples, batch, ...)` if
            requested, else None (for a Gaussian output: `[loc, scale]` on the
            last axis).
        probs: classification: predictive probabilities (same as `mean`).
        total_entropy: classification: H[E_w p(y | x, w)] in nats.
        expected_entropy: classification: E_w H[p(y | x, w)], the aleatoric
            part.
        mutual_information: classification: total minus expected entropy,
            the epistemic part (BALD).
        variation_ratio: classification: 1 - (samples voting for the modal
            class) / num_samples.
        variance: regression: total predictive variance.
        aleatoric_variance: regression: E_w[scale^2] from a Gaussian output,
            zeros for a point-output model.
        epistemic_variance: regression: Var_w[mean].
        nonfinite: boolean per input: its input or the model's outputs were
            not finite (NaN or infinite); with `on_nonfinite="refer"` its
            summaries are NaN.
        lower, upper: regression: conformal interval bounds (from a
            `tfp_uq.conformal` calibrator), else None.
        prediction_set: classification: conformal prediction set, a boolean
            `(batch, classes)` mask, else None.
        set_size: classification: classes in each prediction set, else None.
    """

    task: str
    mean: np.ndarray
    num_samples: int
    samples: np.ndarray = None
    probs: np.ndarray = None
    total_entropy: np.ndarray = None
    expected_entropy: np.ndarray = None
    mutual_information: np.ndarray = None
    variation_ratio: np.ndarray = None
    variance: np.ndarray = None
    aleatoric_variance: np.ndarray = None
    epistemic_variance: np.ndarray = None
    nonfinite: np.ndarray = None
    lower: np.ndarray = None
    upper: np.ndarray = None
    prediction_set: np.ndarray = None
    set_size: np.ndarray = None

    @property
    def std(self):
        """Regression: total predictive standard deviation."""
        return None if self.variance is None else np.sqrt(self.variance)

    @property
    def predicted_class(self):
        """Classification: the most probable class per input (-1 where the summaries are NaN)."""
        if self.probs is None:
            return None
        known = np.all(np.isfinite(self.probs), axis=-1)
        return np.where(known, np.argmax(np.nan_to_num(self.probs, nan=-1.0), axis=-1), -1)


_RESULT_FIELDS = {field.name for field in dataclasses.fields(PredictionResult)}


def _gpu_visible():
    if keras.backend.backend() != "tensorflow":
        return True
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def _signature(batch):
    """A `tf.TensorSpec` structure for `batch` with an unknown batch size: one trace for all sizes."""
    import tensorflow as tf

    return keras.tree.map_structure(lambda x: tf.TensorSpec((None,) + x.shape[1:], x.dtype), batch)


def _jax_jit(owner, function):
    """`function(posterior, *args)` under `jax.jit`, with the posterior's variables passed in rather than baked in.

    Traced as a pure function of the variables' current values (bound by a
    `keras.StatelessScope`), so one compiled function serves every later
    value of the weights (and of an optimizer's posterior state), as a
    `tf.function` reads its variables at run time.
    """
    import jax

    @jax.jit
    def pure(values, *args):
        posterior = as_posterior(owner())
        with keras.StatelessScope(state_mapping=list(zip(posterior.variables, values))):
            return function(posterior, *args)

    def run(*args):
        return pure([variable.value for variable in as_posterior(owner()).variables], *args)

    return run


def _run(owner, function, *args):
    return function(as_posterior(owner()), *args)


def _compiled(posterior, name, jit_compile, signature, function, takes_seed):
    """`function(posterior, inputs[, seed])` compiled once per posterior (cached on its `cache_owner`)."""
    key = (name, type(posterior).__name__, jit_compile, str(signature))

    def make(owner):
        if keras.backend.backend() == "jax" and jit_compile:
            return _jax_jit(owner, function)
        # A partial, not a closure: TensorFlow counts traces per code object, and one
        # trace per model of many (a benchmark, a calibration loop) would read as retracing.
        run = functools.partial(_run, owner, function)
        if keras.backend.backend() != "tensorflow":
            return run
        import tensorflow as tf

        specs = [signature, tf.TensorSpec((2,), "int64")] if takes_seed else [signature]
        # No AutoGraph, as in Keras's own predict step: converting the sources a posterior
        # calls took 10 s of a Laplace posterior's first prediction.
        return tf.function(run, jit_compile=jit_compile, input_signature=specs, autograph=False)

    return _caches.compiled(posterior.cache_owner, key, make)


def _sampler(posterior, num_samples, jit_compile, signature):
    return _compiled(
        posterior,
        f"samples{num_samples}",
        jit_compile,
        signature,
        lambda p, inputs, seed: p.sample_outputs(inputs, num_samples, seed),
        takes_seed=True,
    )


def _seed_tensor(seed):
    dtype = "int64" if keras.backend.backend() == "tensorflow" else "uint32"
    return keras.ops.convert_to_tensor(np.asarray(seed), dtype=dtype)


def _draw(posterior, arrays, keys, num_samples, batch_size, jit_compile, seed):
    """`(samples, structure, exact)`: a `(num_samples, n, ...)` array per flattened output, the
    structure the model returns its outputs in, and the posterior's exact fields (or None)."""
    n = arrays[0].shape[0]
    width = _chunking.output_width(posterior.model)
    if posterior.deterministic:  # every sample equals one pass
        batch_size, per_call, calls = _chunking.chunks(1, batch_size, width, n)
    elif not posterior.random_samples:  # a fixed set of samples: all in one call
        batch_size, _, _ = _chunking.chunks(num_samples, batch_size, width, n)
        per_call, calls = num_samples, 1
    else:
        batch_size, per_call, calls = _chunking.chunks(
            num_samples, batch_size, width, n, posterior.max_samples_per_call
        )
    first = _inputs.pack([x[:batch_size] for x in arrays], keys)
    signature = _signature(first) if keras.backend.backend() == "tensorflow" else None
    sampler = _sampler(posterior, per_call, jit_compile, signature)
    exact = None
    if posterior.has_exact_fields:
        exact = _compiled(
            posterior, "exact", jit_compile, signature, lambda p, inputs: p.exact_fields(inputs), takes_seed=False
        )
    chunks, exact_chunks, call = [], [], 0
    structure = None
    for start in range(0, n, batch_size):
        batch = [x[start : start + batch_size] for x in arrays]
        size = batch[0].shape[0]
        if size < batch_size and start > 0:  # pad: one shape for every call (one XLA compile)
            batch = [np.concatenate([x, np.repeat(x[-1:], batch_size - size, 0)]) for x in batch]
        batch = _inputs.pack(batch, keys)
        outputs = []
        for _ in range(calls):
            call_seed = posterior.fresh_seed() if seed is None else _random.call_seed(seed, call)
            outputs.append(sampler(batch, _seed_tensor(call_seed)))
            call += 1
        structure = outputs[0]
        leaves = []
        for parts in zip(*[[np.asarray(leaf) for leaf in keras.tree.flatten(out)] for out in outputs]):
            parts = np.concatenate(parts, axis=0)
            if posterior.deterministic:
                parts = np.broadcast_to(parts, (num_samples,) + parts.shape[1:])
            leaves.append(parts[:num_samples, :size])
        chunks.append(leaves)
        if exact is not None:
            exact_chunks.append([{k: np.asarray(v)[:size] for k, v in fields.items()} for fields in exact(batch)])
    samples = [np.concatenate(parts, axis=1).astype("float64") for parts in zip(*chunks)]
    if exact is not None:
        exact = [
            {k: np.concatenate([c[i][k] for c in exact_chunks]) for k in exact_chunks[0][i]}
            for i in range(len(samples))
        ]
    return samples, structure, exact


def _summary_input(samples):
    """The float64 samples, or float32 on JAX without 64-bit mode (it has no float64)."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return samples.astype("float32")
    return samples


def _numpy(fields):
    return {key: np.asarray(keras.ops.convert_to_numpy(value)) for key, value in fields.items()}


def _mark_nonfinite(fields, rows):
    """NaN in every float field for `rows` (a boolean mask over inputs)."""
    for key, value in fields.items():
        if value is not None and value.dtype.kind == "f" and value.shape[:1] == rows.shape:
            value = np.array(value, copy=True)
            value[rows] = np.nan
            fields[key] = value
    return fields


def predict(
    model,
    x,
    num_samples=100,
    batch_size=None,
    seed=None,
    task="auto",
    from_logits=None,
    return_samples=False,
    jit_compile=None,
    on_nonfinite="raise",
):
    """Monte Carlo predictive distribution of a Keras model or any posterior, vectorised.

    All `num_samples` samples of a batch run in one compiled call: inputs
    are tiled, and each weight-sampling layer applies its own weight sample
    to each tile, so a sample costs the FLOPs of one plain forward pass
    (weights are drawn once per sample, not per example). Chunks over
    samples and inputs bound memory. Layers of the package and Keras layers
    mix freely; a model with no stochastic layer gets zero epistemic
    uncertainty. Any `tfp_uq.posterior.Posterior` (a `DeepEnsemble`, HMC's
    `PosteriorSamples`, a Laplace or IVON posterior, a conformal calibrator)
    predicts through the same call.

    Classification splits the predictive entropy into its aleatoric part
    (expected entropy) and epistemic part (mutual information, BALD);
    regression splits the variance by the law of total variance, with the
    aleatoric part from a `GaussianHead` when the model ends in one.

    Prediction is reentrant: a seeded call draws through stateless seeds
    passed into the computation and never reads or changes a layer's seed
    generator, so the same seed gives the same numbers whatever runs beside
    it (other threads, a `fit` in progress). A call without a seed advances
    each stochastic layer's stream once per compiled call, under a lock.

    Args:
        model: a built Keras model, or a `tfp_uq.posterior.Posterior`.
        x: inputs: an array, a list or dict of arrays for a multi-input
            model, or a batched `tf.data.Dataset` or `keras.utils.PyDataset`
            of inputs or of `(inputs, targets)` tuples (read once, targets
            ignored).
        num_samples: number of Monte Carlo samples (positive integer).
        batch_size: inputs per compiled call (default: chosen from memory).
        seed: integer for reproducible samples, or None to continue the
            layers' streams.
        task: "classification", "regression" or "auto" (the rule of
            `tfp_uq.task`: classification when a softmax, or a sigmoid over
            one unit, makes the output, or a single unit in [0, 1] of a model
            compiled with a cross-entropy loss, or `from_logits` is set). A
            binary classifier's single unit P(class 1) gives `probs` over the
            two classes, `[1 - p, p]`.
        from_logits: classification outputs are logits, not probabilities.
            None (default): as the model's compiled loss says (True for a
            loss built with `from_logits=True`).
        return_samples: keep the samples in the result.
        jit_compile: compile with XLA. None (default) uses XLA when a GPU
            is visible and plain TensorFlow graphs on CPU, where XLA's random
            number kernels made this 1.3x slower (measured: 100 samples x
            10,000 inputs of a 784-256-10 Flipout MLP, 3.2 s vs 2.6 s). Off
            for models whose variables are mirrored over several devices.
            On JAX, None means `jax.jit` (False: op by op).
        on_nonfinite: what to do with inputs holding NaN or infinite values,
            and with inputs whose outputs are not finite (diverged weights):
            "raise" (default) a ValueError naming the rows; "refer": their
            summaries are NaN and `result.nonfinite` marks them (a decision
            made from them refers: `tfp_uq.selective.should_refer`); "ignore":
            predict as they come.

    Returns:
        A `PredictionResult`; for a model with several outputs, one per
        output, in the structure (list or dict) the model returns them in,
        all from the same weight samples (`task` and `from_logits` apply to
        each; "auto" decides per output).

    Example:

    >>> result = tfp_uq.predict(model, x_test, num_samples=100, seed=0)
    >>> result.probs.shape, result.mutual_information.shape
    ((1000, 10), (1000,))
    """
    try:
        posterior = as_posterior(model)
    except TypeError as error:
        raise TypeError(f"model: {error}") from None
    num_samples = _validation.positive_int("num_samples", num_samples)
    if batch_size is not None:
        batch_size = _validation.positive_int("batch_size", batch_size)
    seed = _validation.optional_int("seed", seed)
    _validation.one_of("task", task, _task.TASKS)
    _validation.one_of("on_nonfinite", on_nonfinite, NONFINITE)
    _validation.boolean("return_samples", return_samples)
    from_logits = posterior.resolve_from_logits(from_logits)
    arrays, keys = _inputs.as_inputs(x)
    if keys is None:
        _inputs.check_input_shapes(posterior.input_tensors, arrays)
    if jit_compile is None:
        jit_compile = _gpu_visible()
    else:
        _validation.boolean("jit_compile", jit_compile)
    strategy = getattr(posterior.model, "distribute_strategy", None)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        # An XLA cluster cannot read variables mirrored on several devices.
        jit_compile = False

    bad_inputs = _inputs.nonfinite_rows(arrays)
    if bad_inputs.any():
        if on_nonfinite == "raise":
            raise ValueError(
                f"x has NaN or infinite values in {_inputs.describe_rows(bad_inputs)}; pass "
                "on_nonfinite='refer' to get NaN summaries for them (marked in result.nonfinite), or "
                "on_nonfinite='ignore' to predict them as they are"
            )
        if on_nonfinite == "refer":  # the model never sees them
            arrays = [
                np.where(bad_inputs.reshape((-1,) + (1,) * (a.ndim - 1)), 0, a) if a.dtype.kind == "f" else a
                for a in arrays
            ]

    num_samples = posterior.resolve_num_samples(num_samples)
    outputs, structure, exact = _draw(posterior, arrays, keys, num_samples, batch_size, jit_compile, seed)
    # A seed for the posterior's extra fields that moves no layer's stream.
    base = Posterior.fresh_seed(posterior) if seed is None else _random.call_seed(seed, 0)
    extra_seed = _random.fold_in(_seed_tensor(base), EXTRA_FIELDS_STREAM)
    kinds = posterior.output_kinds(len(outputs))
    results = []
    for index, (samples, kind) in enumerate(zip(outputs, kinds)):
        bad_outputs = ~np.isfinite(samples.reshape(samples.shape[0], samples.shape[1], -1)).all(axis=(0, 2))
        if (bad_outputs & ~bad_inputs).any() and on_nonfinite == "raise":
            raise ValueError(
                f"the model's outputs are not finite (NaN or infinite) for {_inputs.describe_rows(bad_outputs)} "
                "of x, whose values are finite: its weights may have diverged. Pass on_nonfinite='refer' to get "
                "NaN summaries for them (marked in result.nonfinite)"
            )
        nonfinite = bad_inputs | bad_outputs
        name = _task.decide(task, kind, from_logits, samples[:, ~nonfinite] if nonfinite.any() else samples)
        fields = _numpy(
            _summaries.summarise(
                _summary_input(samples), name, kind.gaussian, from_logits, exact[index] if exact else None
            )
        )
        if on_nonfinite == "refer":
            fields = _mark_nonfinite(fields, nonfinite)
        extra = _numpy(posterior.extra_fields(fields, name, extra_seed))
        unknown = set(extra) - _RESULT_FIELDS
        if unknown:
            raise TypeError(f"{type(posterior).__name__}.extra_fields returned unknown fields {sorted(unknown)}")
        if on_nonfinite == "refer":
            extra = _mark_nonfinite(extra, nonfinite)
        results.append(
            PredictionResult(
                task=name,
                num_samples=num_samples,
                samples=samples if return_samples else None,
                nonfinite=nonfinite,
                **fields,
                **extra,
            )
        )
    return results[0] if len(results) == 1 else keras.tree.pack_sequence_as(structure, results)
