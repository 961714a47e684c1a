"""SavedModel export whose serving signature returns mean and uncertainty."""

import os
import shutil

import keras
from keras import ops

from tfp_uq import _random, _summaries, _validation
from tfp_uq import task as _task
from tfp_uq.posterior import EXTRA_FIELDS_STREAM, as_posterior

__all__ = ["export", "serving_outputs"]

_DEFAULT_REFER_ON = {"classification": "entropy", "regression": "total_std"}


def serving_outputs(fields, task):
    """Named serving tensors from an output's summary fields (`tfp_uq._summaries.summarise`)."""
    if task == "classification":
        return {
            "mean": fields["probs"],
            "probs": fields["probs"],
            "predicted_class": ops.argmax(fields["probs"], axis=-1),
            "entropy": fields["total_entropy"],
            "expected_entropy": fields["expected_entropy"],
            "mutual_information": fields["mutual_information"],
            "variation_ratio": fields["variation_ratio"],
        }
    return {
        "mean": fields["mean"],
        "total_std": ops.sqrt(fields["variance"]),
        "aleatoric_std": ops.sqrt(fields["aleatoric_variance"]),
        "epistemic_std": ops.sqrt(fields["epistemic_variance"]),
    }


_OUTPUT_NAMES = {
    "classification": ("mean", "probs", "predicted_class", "entropy", "expected_entropy", "mutual_information")
    + ("variation_ratio",),
    "regression": ("mean", "total_std", "aleatoric_std", "epistemic_std"),
}


def _rows_finite(tensor):
    """Boolean per row: every value of a float tensor is finite (True for other dtypes)."""
    import tensorflow as tf

    if not tensor.dtype.is_floating:
        return tf.ones(tf.shape(tensor)[:1], "bool")
    flat = tf.reshape(tensor, [tf.shape(tensor)[0], -1])
    return tf.reduce_all(tf.math.is_finite(flat), axis=1)


def _fail_safe(outputs, nonfinite):
    """NaN in every float output, class -1, for rows with a non-finite input or output."""
    import tensorflow as tf

    safe = {}
    for name, value in outputs.items():
        mask = tf.reshape(nonfinite, [-1] + [1] * (len(value.shape) - 1))
        if value.dtype.is_floating:
            safe[name] = tf.where(mask, tf.constant(float("nan"), value.dtype), value)
        elif name == "predicted_class":
            safe[name] = tf.where(mask, tf.constant(-1, value.dtype), value)
        else:
            safe[name] = value
    return safe


def export(
    model,
    path,
    num_samples=100,
    task="auto",
    threshold=None,
    refer_on=None,
    from_logits=None,
    seed=None,
    jit_compile=True,
    overwrite=False,
):
    """Writes a SavedModel that serves the Monte Carlo predictive.

    The default signature ("serve" and "serving_default") takes a batch of
    inputs and returns named tensors; the `num_samples` samples run inside
    the graph (under XLA with `jit_compile`), so serving needs TensorFlow
    only, not tfp_uq:

    - classification: `mean` and `probs` (predictive probabilities),
      `predicted_class`, `entropy` (total, nats), `expected_entropy`
      (aleatoric), `mutual_information` (epistemic), `variation_ratio`;
    - regression: `mean`, `total_std`, `aleatoric_std` (from a
      `GaussianHead`, else 0), `epistemic_std`;
    - the posterior's further outputs (a conformal calibrator's `lower` and
      `upper`, or `prediction_set` and `set_size`);
    - `refer` (bool, per input) when `threshold` is given: True where the
      `refer_on` output (default `entropy`, or `total_std`, any target) is
      above it or NaN: inputs to hand to a person.

    Fail-safe: for an input row holding NaN or infinite values, or whose
    outputs are not finite (diverged weights), every float output is NaN,
    `predicted_class` is -1 and `refer` is True, so no decision is read from
    it. (The model never sees such a row: it is replaced by zeros first.)

    The serving function draws its samples from a seed state of its own,
    saved in the SavedModel and advanced by each request; the model's layers'
    seed generators are not touched.

    Args:
        model: a built Keras model, or any `tfp_uq.posterior.Posterior`
            (`PosteriorSamples` from `tfp_uq.inference.sample_posterior`: up
            to `num_samples` of its draws, evenly spread, are stored in the
            graph; a `DeepEnsemble`: its members).
        path: folder to write (must not exist or be empty, unless `overwrite`).
        num_samples: Monte Carlo samples per request (positive integer).
        task: "classification", "regression" or "auto" (default): from the
            model's structure by the rule of `tfp_uq.task` (classification
            when a softmax makes the output, or a sigmoid over one unit (a
            binary classifier, served as two classes' probabilities), or it
            has one unit and was compiled with a cross-entropy loss, or
            `from_logits` is set); regression otherwise.
        threshold: optional referral threshold (float).
        refer_on: name of the output compared with `threshold`.
        from_logits: classification outputs are logits. None (default): as
            the model's compiled loss says (True for a loss built with
            `from_logits=True`).
        seed: integer seed of the serving function's random stream
            (reproducible serving); None: a fresh one.
        jit_compile: compile the serving function with XLA. XLA compiles
            once per batch size it is sent (cached after): pad requests to
            a few sizes (e.g. powers of two) for steady latency.
        overwrite: replace an existing, non-empty `path`.

    Returns:
        The path written.

    Example:

    >>> tfp_uq.export(model, "bnn_savedmodel", num_samples=50, task="classification",
    ...               threshold=0.5)
    >>> served = tf.saved_model.load("bnn_savedmodel")
    >>> served.serve(x)["mutual_information"]
    """
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(
            f"tfp_uq.export writes a TensorFlow SavedModel and needs the TensorFlow backend; the Keras backend is "
            f"{keras.backend.backend()!r}. Save the model with model.save('model.keras') and export it from a "
            "process with KERAS_BACKEND=tensorflow."
        )
    import tensorflow as tf

    try:
        posterior = as_posterior(model)
    except TypeError as error:
        raise TypeError(f"model: {error}") from None
    num_samples = _validation.positive_int("num_samples", num_samples)
    _validation.one_of("task", task, _task.TASKS)
    from_logits = posterior.resolve_from_logits(from_logits)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a string or path, got {type(path).__name__}")
    path = os.fspath(path)
    overwrite = _validation.boolean("overwrite", overwrite)
    seed = _validation.optional_int("seed", seed)
    inputs = posterior.input_tensors
    if not inputs:
        raise ValueError("model must have known inputs (a Functional or Sequential model, or one called on data)")
    kind = posterior.output_kinds(1)[0]
    task = _task.decide(task, kind, from_logits)
    if threshold is not None:
        threshold = _validation.real("threshold", threshold)
        refer_on = refer_on or _DEFAULT_REFER_ON[task]
        _validation.one_of("refer_on", refer_on, _OUTPUT_NAMES[task])
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        if not overwrite:
            raise ValueError(f"path {path!r} exists and is not empty; pass overwrite=True to replace it")
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

    specs = [tf.TensorSpec((None,) + tuple(x.shape[1:]), x.dtype, name=x.name.split(":")[0]) for x in inputs]
    num_samples = 1 if posterior.deterministic else posterior.resolve_num_samples(num_samples)
    exact = posterior.has_exact_fields
    stream = keras.random.SeedGenerator(0, name="serving_seed")
    stream.state.assign(_random.call_seed(seed, 0) if seed is not None else posterior.fresh_seed())

    def serve(*batch):
        finite = tf.reduce_all(tf.stack([_rows_finite(x) for x in batch]), axis=0)
        batch = [tf.where(tf.reshape(finite, [-1] + [1] * (len(x.shape) - 1)), x, tf.zeros_like(x)) for x in batch]
        structured = batch[0] if len(batch) == 1 else list(batch)
        seed = stream.next()
        samples = posterior.sample_outputs(structured, num_samples, seed)
        if isinstance(samples, (list, tuple, dict)):
            raise ValueError(
                "export serves models with one output; this model has several. Export one "
                "keras.Model(model.inputs, output) per output."
            )
        closed = posterior.exact_fields(structured)[0] if exact else None
        fields = _summaries.summarise(samples, task, kind.gaussian, from_logits, closed)
        outputs = serving_outputs(fields, task)
        outputs.update(posterior.extra_fields(fields, task, _random.fold_in(seed, EXTRA_FIELDS_STREAM)))
        nonfinite = ~(finite & _rows_finite(tf.transpose(samples, [1, 0] + list(range(2, len(samples.shape))))))
        outputs = _fail_safe(outputs, nonfinite)
        if threshold is not None:
            score = outputs[refer_on]
            if len(score.shape) > 1:
                score = tf.reduce_max(score, axis=list(range(1, len(score.shape))))
            outputs["refer"] = (score > threshold) | tf.math.is_nan(score) | nonfinite
        return outputs

    archive = keras.export.ExportArchive()
    archive.track(posterior.model)
    function = tf.function(serve, input_signature=specs, jit_compile=jit_compile, autograph=False)
    archive.add_endpoint("serve", function)
    archive.write_out(path, verbose=False)
    return path
