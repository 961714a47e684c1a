"""Predictive summaries of Monte Carlo samples, in `keras.ops`.

Shared by `tfp_uq.predict` (on NumPy samples) and by `tfp_uq.export` (inside
the serving graph). Samples have the sample axis first.
"""

from keras import ops

_EPS = 1e-12


def entropy(probs, axis=-1):
    """Entropy in nats of probabilities over `axis`."""
    return -ops.sum(probs * ops.log(probs + _EPS), axis=axis)


def two_classes(outputs, from_logits=False):
    """A single unit, a binary classifier's P(class 1) or its logit z, as two classes.

    Probabilities become [1 - p, p], a logit the logits [0, z] (whose softmax
    is [1 - sigmoid(z), sigmoid(z)]); outputs of several units pass through.
    """
    if outputs.shape[-1] != 1:
        return outputs
    first = ops.zeros_like(outputs) if from_logits else 1.0 - outputs
    return ops.concatenate([first, outputs], axis=-1)


def class_probabilities(outputs, from_logits=False):
    """Model outputs as probabilities over the classes on the last axis (see `two_classes`)."""
    outputs = two_classes(outputs, from_logits)
    return ops.softmax(outputs, axis=-1) if from_logits else outputs


def classification(samples, from_logits=False):
    """Probabilities, entropies, mutual information and variation ratio."""
    samples = class_probabilities(samples, from_logits)
    probs = ops.mean(samples, axis=0)
    total = entropy(probs)
    expected = ops.mean(entropy(samples), axis=0)
    num_samples, num_classes = samples.shape[0], samples.shape[-1]
    votes = ops.sum(ops.one_hot(ops.argmax(samples, axis=-1), num_classes, dtype=samples.dtype), axis=0)
    return {
        "probs": probs,
        "total_entropy": total,
        "expected_entropy": expected,
        # Clipped at 0: the two entropies can differ by rounding when equal.
        "mutual_information": ops.maximum(total - expected, 0.0),
        "variation_ratio": 1.0 - ops.max(votes, axis=-1) / num_samples,
    }


def regression(samples, gaussian):
    """Mean and the law-of-total-variance split (aleatoric + epistemic)."""
    if gaussian:
        loc, scale = ops.split(samples, 2, axis=-1)
        aleatoric = ops.mean(ops.square(scale), axis=0)
    else:
        loc = samples
        aleatoric = ops.zeros_like(samples[0])
    mean = ops.mean(loc, axis=0)
    epistemic = ops.mean(ops.square(loc - mean), axis=0)
    return {
        "mean": mean,
        "variance": aleatoric + epistemic,
        "aleatoric_variance": aleatoric,
        "epistemic_variance": epistemic,
    }


def summarise(samples, task, gaussian=False, from_logits=False, exact=None):
    """The `PredictionResult` fields of one output's samples, by name (keras.ops).

    Args:
        samples: `(num_samples, batch, ...)` outputs.
        task: "classification" or "regression".
        gaussian: regression samples are `[loc, scale]` on the last axis.
        from_logits: classification samples are logits.
        exact: a posterior's closed-form fields that replace the Monte Carlo
            ones (`tfp_uq.posterior.Posterior.exact_fields`), or None; the
            entropies and mutual information follow replaced probabilities,
            the total variance follows replaced parts.
    """
    exact = {} if exact is None else {key: ops.cast(value, samples.dtype) for key, value in exact.items()}
    if task == "classification":
        fields = classification(samples, from_logits)
        if "probs" in exact:
            fields["probs"] = exact["probs"]
            fields["total_entropy"] = entropy(exact["probs"])
            fields["mutual_information"] = ops.maximum(fields["total_entropy"] - fields["expected_entropy"], 0.0)
        fields["mean"] = fields["probs"]
        return fields
    fields = regression(samples, gaussian)
    fields.update({key: exact[key] for key in ("mean", "aleatoric_variance", "epistemic_variance") if key in exact})
    if "variance" in exact:
        fields["variance"] = exact["variance"]
    elif {"aleatoric_variance", "epistemic_variance"} & set(exact):
        fields["variance"] = fields["aleatoric_variance"] + fields["epistemic_variance"]
    return fields
