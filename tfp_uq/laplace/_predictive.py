"""The linearised (GLM) predictive in closed form, shared by `LaplacePosterior` and the prior grid search.

For the network linearised at theta*, `f(x; theta) ~ f(x; theta*) + J(x) (theta - theta*)`, the function outputs
under N(theta*, P^-1) are Gaussian with mean f(x; theta*) and variance diag(J P^-1 J^T) (Immer et al. 2021).
Classification turns them into probabilities with the probit approximation
`softmax(mu / sqrt(1 + pi / 8 var))` (MacKay 1992); regression adds the noise variance.
"""

import math

from keras import ops

from tfp_uq.laplace import _likelihoods


def unit_columns(likelihood, f):
    """Unit cotangents over the linearised outputs: `(batch, outputs, linearised outputs)`."""
    width = likelihood.linearized(f).shape[-1]
    eye = ops.eye(f.shape[-1], width, dtype=f.dtype)
    return ops.broadcast_to(eye[None], (ops.shape(f)[0],) + tuple(eye.shape))


def moments(function, structure, likelihood, arrays, inputs):
    """`(f, mean, variance, jacobians)`: f at theta*, and the linearised outputs' mean and variance."""
    f, jacobians = function.jacobians(inputs, lambda outputs: unit_columns(likelihood, outputs))
    variance = structure.functional_variance(arrays, jacobians)
    return f, likelihood.linearized(f), variance, jacobians


def probit(mean, variance):
    """Probit-approximated class probabilities of Gaussian logits (one logit: a binary classifier's two classes)."""
    scaled = mean / ops.sqrt(1.0 + math.pi / 8.0 * variance)
    if scaled.shape[-1] == 1:
        positive = ops.sigmoid(scaled)
        return ops.concatenate([1.0 - positive, positive], axis=-1)
    return ops.softmax(scaled, axis=-1)


def fields(likelihood, f, mean, variance, noise_precision):
    """The closed-form summaries: classification `probs` and `mean`; regression `mean` and the variances."""
    if likelihood.task == "classification":
        probs = probit(mean, variance)
        return {"probs": probs, "mean": probs}
    if isinstance(likelihood, _likelihoods.HeteroscedasticGaussian):
        aleatoric = ops.square(ops.split(f, 2, axis=-1)[1])
    else:
        aleatoric = ops.full_like(mean, 1.0 / noise_precision)
    return {
        "mean": mean,
        "epistemic_variance": variance,
        "aleatoric_variance": aleatoric,
        "variance": variance + aleatoric,
    }


def negative_log_likelihood(likelihood, summary, targets, weights):
    """The weighted summed NLL of `targets` under the closed-form predictive `summary` (a `fields` dict)."""
    if likelihood.task == "classification":
        log_probs = ops.log(ops.maximum(summary["probs"], 1e-12))
        if len(targets.shape) == 2 and targets.shape[-1] == log_probs.shape[-1] > 1:  # one-hot (or soft) labels
            per_example = ops.sum(ops.cast(targets, log_probs.dtype) * log_probs, axis=-1)
        else:
            labels = ops.cast(ops.reshape(targets, (-1,)), "int32")
            per_example = ops.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
        return -ops.sum(weights * per_example)
    mean, variance = summary["mean"], summary["variance"]
    targets = ops.cast(ops.reshape(targets, ops.shape(mean)), mean.dtype)
    per_target = 0.5 * (ops.log(2 * math.pi * variance) + ops.square(targets - mean) / variance)
    return ops.sum(weights * ops.sum(per_target, axis=-1))
