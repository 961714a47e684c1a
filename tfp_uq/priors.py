"""Prior distributions over the weights of Bayesian layers.

A prior is a small, serialisable object. A layer never special-cases a prior
type: it asks the prior for

- `build(layer, name, shape)`: any variables the prior learns (created on the
  layer, so each layer gets its own);
- `kl_divergence(loc, scale, sample, variables)`: KL(q || p) for the layer's
  mean-field Normal posterior q = N(loc, scale^2), summed over the weights, in
  closed form where one exists and by a one-sample Monte Carlo estimate
  otherwise (`sample` is a callable returning a draw from q);
- `log_prob(value, variables)`: the summed log-density of weights `value`;
- `variance(variables)`: the prior variance of each weight (broadcastable to
  the weight), which bounds the posterior variance in the layers' default
  curvature parameterisation of the scale.

Example:

>>> layer = tfp_uq.layers.DenseFlipout(
...     10, prior=tfp_uq.priors.ScaleMixtureNormal(pi=0.5, scale1=1.0, scale2=0.01))
"""

import math

import keras
import numpy as np
from keras import ops

from tfp_uq import _validation

# Re-exported: the parameterisation of scales used to live here.
from tfp_uq._parameterization import SCALE_FLOOR, positive_scale, raw_scale, softplus_inverse  # noqa: F401

__all__ = [
    "normal_log_prob",
    "normal_kl",
    "Prior",
    "Normal",
    "ScaleMixtureNormal",
    "HierarchicalNormal",
    "DistributionPrior",
    "serialize",
    "get",
]


_LOG_2PI = math.log(2.0 * math.pi)


def normal_log_prob(value, loc, scale):
    """Elementwise log-density of N(loc, scale^2) at `value`."""
    z = (value - loc) / scale
    return -0.5 * ops.square(z) - ops.log(scale) - 0.5 * _LOG_2PI


def normal_kl(loc_q, scale_q, loc_p, scale_p):
    """Elementwise KL(N(loc_q, scale_q^2) || N(loc_p, scale_p^2))."""
    ratio = ops.square(scale_q / scale_p)
    return 0.5 * (ratio + ops.square((loc_q - loc_p) / scale_p) - 1.0 - ops.log(ratio))


class Prior:
    """Base class of priors: Monte Carlo KL from `log_prob`, no variables.

    Subclasses implement `log_prob` and `get_config`; they override
    `kl_divergence` when a closed form exists and `build` when they learn
    variables.
    """

    def build(self, layer, name, shape):
        """Creates the variables the prior learns for weight `name` on `layer`.

        Returns:
            A dict of variables, passed back to `kl_divergence` and `log_prob`.
        """
        del layer, name, shape
        return {}

    def log_prob(self, value, variables=None):
        """Summed log-density of the weights `value`."""
        raise NotImplementedError

    def variance(self, variables=None):
        """Prior variance of each weight: a float or a tensor broadcastable to the weight."""
        raise NotImplementedError(f"{type(self).__name__} does not define its variance")

    def kl_divergence(self, loc, scale, sample, variables=None):
        """KL(N(loc, scale^2) || prior), summed: one-sample Monte Carlo here.

        Args:
            loc: posterior means.
            scale: posterior standard deviations, same shape as `loc`.
            sample: callable with no arguments returning a draw from the
                posterior (called only by estimators that need one).
            variables: what `build` returned.
        """
        value = sample()
        log_q = ops.sum(normal_log_prob(value, loc, scale))
        return log_q - self.log_prob(value, variables)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="tfp_uq")
class Normal(Prior):
    """Fixed Normal prior N(loc, scale^2) on every weight; KL in closed form.

    Args:
        loc: prior mean (float).
        scale: prior standard deviation (float > 0).

    Example:

    >>> prior = tfp_uq.priors.Normal(0.0, 0.1)
    """

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = _validation.real("loc", loc)
        self.scale = _validation.positive("scale", scale)

    def log_prob(self, value, variables=None):
        return ops.sum(normal_log_prob(value, self.loc, self.scale))

    def variance(self, variables=None):
        return self.scale**2

    def kl_divergence(self, loc, scale, sample, variables=None):
        # normal_kl summed, with the constants taken out of the elementwise
        # work: fewer kernels over the weights when XLA does not fuse them.
        centred = loc if self.loc == 0.0 else loc - self.loc
        size = ops.cast(ops.size(loc), loc.dtype)
        return ops.sum((ops.square(scale) + ops.square(centred)) * (0.5 / self.scale**2) - ops.log(scale)) + size * (
            math.log(self.scale) - 0.5
        )

    def get_config(self):
        return {"loc": self.loc, "scale": self.scale}


@keras.saving.register_keras_serializable(package="tfp_uq")
class ScaleMixtureNormal(Prior):
    """Scale mixture of two zero-mean Normals (Blundell et al. 2015).

    p(w) = pi N(w; 0, scale1^2) + (1 - pi) N(w; 0, scale2^2), evaluated in log
    space. It has no closed-form KL against a Normal posterior, so the KL is a
    one-sample Monte Carlo estimate.

    Args:
        pi: weight of the first component, in (0, 1).
        scale1: standard deviation of the first (wide) component, > 0.
        scale2: standard deviation of the second (narrow) component, > 0.

    Example:

    >>> prior = tfp_uq.priors.ScaleMixtureNormal(pi=0.5, scale1=1.0, scale2=0.0025)
    """

    def __init__(self, pi=0.5, scale1=1.0, scale2=0.01):
        self.pi = _validation.open_unit_interval("pi", pi)
        self.scale1 = _validation.positive("scale1", scale1)
        self.scale2 = _validation.positive("scale2", scale2)

    def log_prob(self, value, variables=None):
        log_p1 = math.log(self.pi) + normal_log_prob(value, 0.0, self.scale1)
        log_p2 = math.log1p(-self.pi) + normal_log_prob(value, 0.0, self.scale2)
        return ops.sum(ops.logaddexp(log_p1, log_p2))

    def variance(self, variables=None):
        return self.pi * self.scale1**2 + (1.0 - self.pi) * self.scale2**2

    def get_config(self):
        return {"pi": self.pi, "scale1": self.scale1, "scale2": self.scale2}


@keras.saving.register_keras_serializable(package="tfp_uq")
class HierarchicalNormal(Prior):
    """Normal prior whose scale is learned under a half-Cauchy hyperprior.

    w_ij | s ~ N(0, s^2),   s ~ HalfCauchy(0, hyperprior_scale).

    The scale s is a point estimate learned with the posterior (type-II
    maximum a posteriori, as in automatic relevance determination, MacKay
    1994; Neal 1996). Its term in the negative ELBO is

        KL(q(w) || N(0, s^2)) - log p(s),

    where the KL is in closed form. With `granularity="layer"` one s is shared
    by the whole weight tensor; with `granularity="input"` there is one s per
    input unit (one row of a Dense kernel, one input channel of a convolution
    kernel), so the weights of an input the data do not need shrink to zero
    together. Biases (rank-1 weights) always get one scale.

    Args:
        initial_scale: starting value of s (> 0).
        hyperprior_scale: scale of the half-Cauchy hyperprior on s (> 0).
        granularity: "layer" or "input".

    Example:

    >>> layer = tfp_uq.layers.DenseReparameterization(
    ...     1, prior=tfp_uq.priors.HierarchicalNormal(granularity="input"))
    """

    GRANULARITIES = ("layer", "input")

    def __init__(self, initial_scale=1.0, hyperprior_scale=1.0, granularity="layer"):
        self.initial_scale = _validation.positive("initial_scale", initial_scale)
        self.hyperprior_scale = _validation.positive("hyperprior_scale", hyperprior_scale)
        self.granularity = _validation.one_of("granularity", granularity, self.GRANULARITIES)

    def _scale_shape(self, shape):
        if self.granularity == "layer" or len(shape) < 2:
            return ()
        # Keras kernels are laid out (..., input, output).
        return tuple(1 for _ in shape[:-2]) + (shape[-2], 1)

    def build(self, layer, name, shape):
        raw = layer.add_weight(
            name=f"{name}_prior_scale",
            shape=self._scale_shape(shape),
            initializer=keras.initializers.Constant(float(raw_scale(self.initial_scale))),
        )
        return {"scale": raw}

    def scale(self, variables):
        """The learned prior scale s (a tensor)."""
        return positive_scale(variables["scale"])

    def variance(self, variables=None):
        return ops.square(self.scale(variables))

    def _hyperprior_log_prob(self, scale):
        # HalfCauchy(0, b): log 2 - log(pi b) - log(1 + (s / b)^2).
        b = self.hyperprior_scale
        return ops.sum(math.log(2.0 / (math.pi * b)) - ops.log1p(ops.square(scale / b)))

    def log_prob(self, value, variables=None):
        scale = self.scale(variables)
        return ops.sum(normal_log_prob(value, 0.0, scale)) + self._hyperprior_log_prob(scale)

    def kl_divergence(self, loc, scale, sample, variables=None):
        prior_scale = self.scale(variables)
        kl = ops.sum(normal_kl(loc, scale, 0.0, prior_scale))
        return kl - self._hyperprior_log_prob(prior_scale)

    def get_config(self):
        return {
            "initial_scale": self.initial_scale,
            "hyperprior_scale": self.hyperprior_scale,
            "granularity": self.granularity,
        }


@keras.saving.register_keras_serializable(package="tfp_uq")
class DistributionPrior(Prior):
    """Any `tfp.distributions.Distribution` as a prior; KL by Monte Carlo.

    The distribution's batch shape must broadcast against the weight shape
    (a scalar distribution applies to every weight). It serialises when its
    parameters are numbers or arrays.

    Args:
        distribution: a `tfp.distributions.Distribution` instance.

    Example:

    >>> import tensorflow_probability as tfp
    >>> prior = tfp_uq.priors.DistributionPrior(tfp.distributions.Laplace(0.0, 0.1))
    """

    def __init__(self, distribution):
        import tensorflow_probability as tfp

        if isinstance(distribution, dict):
            cls = getattr(tfp.distributions, distribution["class_name"])
            distribution = cls(**distribution["parameters"])
        if not isinstance(distribution, tfp.distributions.Distribution):
            raise TypeError(f"distribution must be a tfp.distributions.Distribution, got {type(distribution).__name__}")
        self.distribution = distribution

    def log_prob(self, value, variables=None):
        return ops.sum(self.distribution.log_prob(value))

    def variance(self, variables=None):
        # A distribution without a finite variance (Cauchy) leaves the posterior
        # variance bounded by the data term alone.
        variance = ops.cast(self.distribution.variance(), "float32")
        return ops.where(ops.isfinite(variance), variance, 1e30)

    def get_config(self):
        import tensorflow as tf

        parameters = {}
        for key, value in self.distribution.parameters.items():
            if key in ("name", "validate_args", "allow_nan_stats") or value is None:
                continue
            if tf.is_tensor(value) or isinstance(value, (np.ndarray, float, int)):
                parameters[key] = np.asarray(value).tolist()
            else:
                raise TypeError(
                    f"DistributionPrior cannot serialise parameter {key!r} of "
                    f"{type(self.distribution).__name__} ({type(value).__name__}); "
                    "only numeric parameters can be saved"
                )
        return {
            "distribution": {
                "class_name": type(self.distribution).__name__,
                "parameters": parameters,
            }
        }

    def __repr__(self):
        return f"DistributionPrior({self.distribution!r})"


def serialize(prior):
    """Serialises a prior to a config dict."""
    return keras.saving.serialize_keras_object(prior)


def get(identifier):
    """Returns a prior from a prior, a config dict, a distribution or None.

    None gives the standard Normal prior N(0, 1); a
    `tfp.distributions.Distribution` is wrapped in `DistributionPrior`.

    Raises:
        TypeError: if `identifier` is none of these.
    """
    if identifier is None:
        return Normal()
    if isinstance(identifier, Prior):
        return identifier
    if isinstance(identifier, dict):
        prior = keras.saving.deserialize_keras_object(identifier)
        if isinstance(prior, Prior):
            return prior
    else:
        try:
            import tensorflow_probability as tfp

            if isinstance(identifier, tfp.distributions.Distribution):
                return DistributionPrior(identifier)
        except ImportError:  # pragma: no cover - TFP is a dependency
            pass
    raise TypeError(
        "prior must be a tfp_uq.priors.Prior, a tfp.distributions.Distribution "
        f"or None, got {identifier!r} of type {type(identifier).__name__}"
    )
