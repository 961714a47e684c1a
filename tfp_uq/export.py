"""SavedModel export whose serving signature returns mean and uncertainty."""

import math
import os
import shutil

import keras
import numpy as np

from tfp_uq import _summaries, _validation, prediction

__all__ = ["serving_outputs", "export"]


TASKS = ("auto", "classification", "regression")
_DEFAULT_REFER_ON = {"classification": "entropy", "regression": "total_std"}


def _thinned(posterior, num_samples):
    """Up to `num_samples` posterior draws, evenly spread over all chains."""
    flat = posterior._flat()
    total = flat[0].shape[0]
    index = np.linspace(0, total - 1, min(num_samples, total)).round().astype(int)
    return [w[index] for w in flat]


def serving_outputs(samples, task, gaussian=False, from_logits=False):
    """Named serving tensors from Monte Carlo samples (keras.ops)."""
    from keras import ops

    if task == "classification":
        stats = _summaries.classification(samples, from_logits)
        return {
            "mean": stats["probs"],
            "probs": stats["probs"],
            "predicted_class": ops.argmax(stats["probs"], axis=-1),
            "entropy": stats["total_entropy"],
            "expected_entropy": stats["expected_entropy"],
            "mutual_information": stats["mutual_information"],
            "variation_ratio": stats["variation_ratio"],
        }
    stats = _summaries.regression(samples, gaussian)
    return {
        "mean": stats["mean"],
        "total_std": ops.sqrt(stats["variance"]),
        "aleatoric_std": ops.sqrt(stats["aleatoric_variance"]),
        "epistemic_std": ops.sqrt(stats["epistemic_variance"]),
    }


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
    - `refer` (bool, per input) when `threshold` is given: True where the
      `refer_on` output (default `entropy`, or `total_std`, any target) is
      above it, i.e. inputs to hand to a person.

    Args:
        model: a built Keras model, or `PosteriorSamples` from
            `tfp_uq.inference.sample_posterior` (its draws are stored in the
            graph; up to `num_samples` of them, evenly spread, are served).
        path: folder to write (must not exist or be empty, unless `overwrite`).
        num_samples: Monte Carlo samples per request (positive integer).
        task: "classification", "regression" or "auto" (default): from the
            model's structure, classification when its output is made by a
            softmax, by a sigmoid over one unit (a binary classifier, served
            as two classes' probabilities), or has one unit and was compiled
            with a cross-entropy loss, or `from_logits` is set; regression
            otherwise.
        threshold: optional referral threshold (float).
        refer_on: name of the output compared with `threshold`.
        from_logits: classification outputs are logits. None (default): as
            the model's compiled loss says (True for a loss built with
            `from_logits=True`).
        seed: reseed the model's random layers before export (reproducible
            serving streams); their state in the model is restored after.
        jit_compile: compile the serving function with XLA.
        overwrite: replace an existing, non-empty `path`.

    Returns:
        The path written.

    Example:

    >>> tfp_uq.export(model, "bnn_savedmodel", num_samples=50, task="classification",
    ...               threshold=0.5)
    >>> served = tf.saved_model.load("bnn_savedmodel")
    >>> served.serve(x)["mutual_information"]
    """
    import tensorflow as tf

    from tfp_uq.inference import PosteriorSamples

    posterior = None
    if isinstance(model, PosteriorSamples):
        posterior, model = model, model.model
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model or PosteriorSamples, got {type(model).__name__}")
    num_samples = _validation.positive_int("num_samples", num_samples)
    task = _validation.one_of("task", task, TASKS)
    from_logits = prediction.resolve_from_logits(model, from_logits)
    if task == "auto":
        task = prediction.output_task(model, from_logits)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a string or path, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        if not _validation.boolean("overwrite", overwrite):
            raise ValueError(f"path {path!r} exists and is not empty; pass overwrite=True to replace it")
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    gaussian = prediction._has_gaussian_head(model)
    if threshold is not None:
        threshold = _validation.real("threshold", threshold)
        refer_on = refer_on or _DEFAULT_REFER_ON[task]
        allowed = tuple(serving_outputs(tf.zeros((2, 1, 2)), task, gaussian=False))
        _validation.one_of("refer_on", refer_on, allowed)
    seed = _validation.optional_int("seed", seed)
    inputs = getattr(model, "inputs", None) or getattr(getattr(model, "members", [None])[0], "inputs", None)
    if not inputs:
        raise ValueError("model must have known inputs (a Functional or Sequential model, or one called on data)")
    specs = [tf.TensorSpec((None,) + tuple(x.shape[1:]), x.dtype, name=x.name.split(":")[0]) for x in inputs]

    noise_variance = None
    if posterior is not None and posterior.noise_scale is not None:
        noise_variance = float(np.mean(np.square(posterior.noise_scale)))
    if posterior is not None:
        # HMC samples ride along as constants; each serves as one MC sample.
        flat = [tf.constant(w[:num_samples]) for w in _thinned(posterior, num_samples)]
        non_trainable = [v.value for v in model.non_trainable_variables]

    def serve(*inputs):
        if posterior is None:
            samples = prediction.forward_samples(model, list(inputs), num_samples)
            if isinstance(samples, (list, tuple, dict)):
                raise ValueError(
                    "export serves models with one output; this model has several. Export one "
                    "keras.Model(model.inputs, output) per output."
                )
        else:
            batch = inputs[0] if len(inputs) == 1 else list(inputs)
            samples = tf.vectorized_map(
                lambda w: model.stateless_call(list(w), non_trainable, batch, training=False)[0], flat
            )
        outputs = serving_outputs(samples, task, gaussian, from_logits)
        if noise_variance is not None and task == "regression":
            outputs["aleatoric_std"] = tf.fill(tf.shape(outputs["mean"]), math.sqrt(noise_variance))
            outputs["total_std"] = tf.sqrt(tf.square(outputs["epistemic_std"]) + noise_variance)
        if threshold is not None:
            score = outputs[refer_on]
            if len(score.shape) > 1:
                score = tf.reduce_max(score, axis=list(range(1, len(score.shape))))
            outputs["refer"] = score > threshold
        return outputs

    with prediction.seeded(prediction._stochastic_layers(model), seed):
        archive = keras.export.ExportArchive()
        archive.track(model)
        function = tf.function(serve, input_signature=specs, jit_compile=jit_compile, autograph=False)
        archive.add_endpoint("serve", function)
        archive.write_out(path, verbose=False)
    return path
