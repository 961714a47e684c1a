"""Likelihoods p(y | f) of a network's function outputs f, and their curvature in f.

The generalised Gauss-Newton matrix is `sum_n J_n^T Lambda_n J_n` with
`Lambda_n` the Hessian of -log p(y_n | f) in f (Schraudolph 2002; Martens 2020):
for a softmax it is `diag(p) - p p^T`, for a Gaussian the inverse noise
variance. Each likelihood gives Lambda as a sum, as its diagonal and as
columns `M_n` with `M_n M_n^T = Lambda_n`, the cotangents whose
vector-Jacobian products make the GGN from per-example gradients.

f is what the network computes before its link: logits for classification
(one logit for a binary classifier), the mean for regression, `[loc, scale]`
for a `GaussianHead`. All functions take a per-example weight `weights`
(0 for padding).
"""

import math

from keras import ops


class Likelihood:
    """Interface shared by the likelihoods; see the module docstring."""

    #: "classification" or "regression".
    task = None
    #: Whether the observation noise is a hyperparameter (its precision scales the GGN).
    learns_noise = False

    def statistic(self, f, y, weights):
        """The data term summed over the batch: log-likelihood, or the sum of squared errors with a noise."""
        raise NotImplementedError

    def hessian_sqrt(self, f):
        """`(batch, outputs, columns)` M with `M M^T = Lambda`."""
        raise NotImplementedError

    def hessian_sum(self, f, weights):
        """`(outputs, outputs)`: the weighted sum of Lambda over the batch."""
        sqrt = self.hessian_sqrt(f) * ops.sqrt(weights)[:, None, None]
        return ops.einsum("nkc,nlc->kl", sqrt, sqrt)

    def hessian_diag(self, f):
        """`(batch, outputs)`: the diagonal of Lambda."""
        return ops.sum(ops.square(self.hessian_sqrt(f)), axis=-1)

    def linearized(self, f):
        """The outputs of f whose predictive is linearised: all of them, or a Gaussian's locations."""
        return f

    def log_likelihood(self, statistic, noise_precision, num_targets):
        """`(log-likelihood, its derivative in noise_precision)` from the summed `statistic` (floats)."""
        return statistic, 0.0


class Categorical(Likelihood):
    """Softmax cross-entropy on K >= 2 logits; labels integer or one-hot."""

    task = "classification"

    def statistic(self, f, y, weights):
        log_probs = ops.log_softmax(f, axis=-1)
        if len(y.shape) == len(f.shape) and y.shape[-1] == f.shape[-1] and y.shape[-1] != 1:
            per_example = ops.sum(ops.cast(y, f.dtype) * log_probs, axis=-1)
        else:
            # A one-hot mask: three ops, where take_along_axis's broadcasting makes a dozen to trace.
            mask = ops.one_hot(ops.reshape(y, (-1,)), f.shape[-1], dtype=f.dtype)
            per_example = ops.sum(mask * log_probs, axis=-1)
        return ops.sum(weights * per_example)

    def hessian_sqrt(self, f):
        # Column c of M is sqrt(p_c) (e_c - p): M M^T = diag(p) - p p^T since sum(p) = 1.
        probs = ops.softmax(f, axis=-1)
        eye = ops.eye(f.shape[-1], dtype=f.dtype)
        return (eye[None] - probs[:, :, None]) * ops.sqrt(probs)[:, None, :]

    def hessian_sum(self, f, weights):
        probs = ops.softmax(f, axis=-1)
        weighted = probs * ops.sqrt(weights)[:, None]
        return ops.diag(ops.sum(weights[:, None] * probs, axis=0)) - ops.matmul(ops.transpose(weighted), weighted)

    def hessian_diag(self, f):
        probs = ops.softmax(f, axis=-1)
        return probs * (1.0 - probs)


class Bernoulli(Likelihood):
    """Sigmoid cross-entropy on one logit; labels 0 / 1."""

    task = "classification"

    def statistic(self, f, y, weights):
        y = ops.cast(ops.reshape(y, ops.shape(f)), f.dtype)
        per_example = y * ops.log_sigmoid(f) + (1.0 - y) * ops.log_sigmoid(-f)
        return ops.sum(weights * per_example[:, 0])

    def hessian_sqrt(self, f):
        probs = ops.sigmoid(f)
        return ops.sqrt(probs * (1.0 - probs))[:, :, None]


class Gaussian(Likelihood):
    """Gaussian noise of one unknown scale sigma shared by all targets (the loss was mean squared error).

    The GGN is computed at unit noise and scaled by the noise precision
    1 / sigma^2 afterwards, so sigma can be tuned by marginal likelihood.
    """

    task = "regression"
    learns_noise = True

    def statistic(self, f, y, weights):
        y = ops.cast(ops.reshape(y, ops.shape(f)), f.dtype)
        return ops.sum(weights * ops.sum(ops.square(y - f), axis=-1))

    def hessian_sqrt(self, f):
        eye = ops.eye(f.shape[-1], dtype=f.dtype)
        return ops.broadcast_to(eye[None], (ops.shape(f)[0],) + tuple(eye.shape))

    def hessian_sum(self, f, weights):
        return ops.sum(weights) * ops.eye(f.shape[-1], dtype=f.dtype)

    def hessian_diag(self, f):
        return ops.ones_like(f)

    def log_likelihood(self, statistic, noise_precision, num_targets):
        log_normaliser = 0.5 * num_targets * (math.log(noise_precision) - math.log(2 * math.pi))
        value = log_normaliser - 0.5 * noise_precision * statistic
        return value, 0.5 * num_targets / noise_precision - 0.5 * statistic


class HeteroscedasticGaussian(Likelihood):
    """Gaussian noise whose scale the network predicts: f = [loc, scale] from a `tfp_uq.layers.GaussianHead`.

    Lambda is the Fisher information of N(y; loc, scale^2) in (loc, scale),
    `diag(1 / scale^2, 2 / scale^2)`, the positive semi-definite part of the
    Hessian (the GGN of a non-canonical parameterisation).
    """

    task = "regression"

    def statistic(self, f, y, weights):
        loc, scale = ops.split(f, 2, axis=-1)
        y = ops.cast(ops.reshape(y, ops.shape(loc)), f.dtype)
        log_density = -0.5 * ops.square((y - loc) / scale) - ops.log(scale) - 0.5 * math.log(2 * math.pi)
        return ops.sum(weights * ops.sum(log_density, axis=-1))

    def _precisions(self, f):
        _, scale = ops.split(f, 2, axis=-1)
        inverse = 1.0 / ops.square(scale)
        return ops.concatenate([inverse, 2.0 * inverse], axis=-1)

    def hessian_sqrt(self, f):
        sqrt = ops.sqrt(self._precisions(f))
        return sqrt[:, :, None] * ops.eye(f.shape[-1], dtype=f.dtype)[None]

    def hessian_sum(self, f, weights):
        return ops.diag(ops.sum(weights[:, None] * self._precisions(f), axis=0))

    def hessian_diag(self, f):
        return self._precisions(f)

    def linearized(self, f):
        return ops.split(f, 2, axis=-1)[0]


def for_outputs(task, num_outputs, gaussian_head):
    """The likelihood of a task ("classification" / "regression") for f of `num_outputs` units."""
    if task == "classification":
        return Bernoulli() if num_outputs == 1 else Categorical()
    return HeteroscedasticGaussian() if gaussian_head else Gaussian()
