"""Dropout that stays on at inference (MC dropout), and learned-rate dropout.

Gal & Ghahramani (2016) read dropout as approximate Bayesian inference: keep
it on when predicting and average many passes. Concrete dropout (Gal, Hron
& Kendall 2017) learns the rate through a continuous relaxation.
"""

import math

import keras
from keras import ops

from tfp_uq import _random, _validation
from tfp_uq.layers._base import StochasticLayer, VariationalLayer, WrapsLayer

__all__ = [
    "MCDropout",
    "SpatialMCDropout1D",
    "SpatialMCDropout2D",
    "SpatialMCDropout3D",
    "MCDropoutWrapper",
    "ConcreteDropout",
]


def _rate(value):
    return _validation.unit_interval("rate", value)


@keras.saving.register_keras_serializable(package="tfp_uq")
class MCDropout(StochasticLayer):
    """Dropout applied in training and inference alike.

    Each unit is zeroed with probability `rate` and the rest are scaled by
    1 / (1 - rate), in every call, so `tfp_uq.predict` averages over masks.

    Args:
        rate: drop probability in [0, 1).
        noise_shape: shape of the binary mask, broadcast over the inputs
            (None entries take the input's size), as `keras.layers.Dropout`.
        seed: integer seed.
        deterministic: if True, pass inputs through (a point prediction).

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, activation="relu"),
    ...                           tfp_uq.layers.MCDropout(0.1), keras.layers.Dense(1)])
    """

    def __init__(self, rate, noise_shape=None, seed=None, deterministic=False, **kwargs):
        super().__init__(seed=seed, deterministic=deterministic, **kwargs)
        self.rate = _rate(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def _mask_shape(self, inputs):
        shape = ops.shape(inputs)
        if self.noise_shape is None:
            return shape
        return tuple(shape[i] if d is None else d for i, d in enumerate(self.noise_shape))

    def call(self, inputs, training=None):
        seed = self.next_seed()
        if self.deterministic or self.rate == 0:
            return inputs
        keep = _random.uniform(self._mask_shape(inputs), seed, inputs.dtype) >= self.rate
        return ops.where(keep, inputs / (1.0 - self.rate), ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "noise_shape": self.noise_shape})
        return config


class _SpatialMCDropout(MCDropout):
    """MC dropout of whole feature maps: one mask entry per example and channel."""

    rank = None

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        kwargs.pop("noise_shape", None)
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = _validation.one_of(
            "data_format", data_format or keras.config.image_data_format(), ("channels_last", "channels_first")
        )

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} needs inputs of rank {self.rank + 2}, got shape {tuple(input_shape)}"
            )
        self.built = True

    def _mask_shape(self, inputs):
        shape = ops.shape(inputs)
        if self.data_format == "channels_last":
            return (shape[0],) + (1,) * self.rank + (shape[-1],)
        return (shape[0], shape[1]) + (1,) * self.rank

    def get_config(self):
        config = super().get_config()
        config.pop("noise_shape")
        config["data_format"] = self.data_format
        return config


@keras.saving.register_keras_serializable(package="tfp_uq")
class SpatialMCDropout1D(_SpatialMCDropout):
    """MC dropout of whole 1D feature maps (channels), on at inference."""

    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class SpatialMCDropout2D(_SpatialMCDropout):
    """MC dropout of whole 2D feature maps (channels), on at inference."""

    rank = 2


@keras.saving.register_keras_serializable(package="tfp_uq")
class SpatialMCDropout3D(_SpatialMCDropout):
    """MC dropout of whole 3D feature maps (channels), on at inference."""

    rank = 3


class _InputDropoutWrapper(WrapsLayer):
    """Mixin of wrappers that drop the inputs of a wrapped layer."""

    def _input_dim(self, input_shape):
        axis = -1
        if getattr(self.layer, "data_format", "channels_last") == "channels_first" and len(input_shape) > 2:
            axis = 1
        return input_shape[axis]

    def build(self, input_shape):
        self._build_wrapped(input_shape)
        self._build_wrapper(input_shape)
        self.built = True

    def _build_wrapper(self, input_shape):
        """Creates the wrapper's own state (none by default)."""

    def _wrapped_outputs(self, inputs):
        # In the wrapper's compute dtype even when the wrapped layer was built with another policy.
        return ops.cast(self.layer(inputs), self.compute_dtype)


@keras.saving.register_keras_serializable(package="tfp_uq")
class MCDropoutWrapper(_InputDropoutWrapper, StochasticLayer):
    """Applies MC dropout with a fixed rate to the inputs of a wrapped layer.

    Used by `tfp_uq.bayesianize(model, method="mc_dropout")` to keep the
    model's layer count and names.

    Args:
        layer: the layer whose inputs are dropped.
        rate: drop probability in [0, 1).
        seed: integer seed.
        deterministic: if True, no dropout.

    Example:

    >>> layer = tfp_uq.layers.MCDropoutWrapper(keras.layers.Dense(10), rate=0.1)
    """

    def __init__(self, layer, rate=0.1, seed=None, deterministic=False, **kwargs):
        super().__init__(seed=seed, deterministic=deterministic, **kwargs)
        self._wrap(layer)
        self.rate = _rate(rate)

    def call(self, inputs, training=None):
        seed = self.next_seed()
        if not self.deterministic and self.rate > 0:
            keep = _random.uniform(ops.shape(inputs), seed, inputs.dtype) >= self.rate
            inputs = ops.where(keep, inputs / (1.0 - self.rate), ops.zeros_like(inputs))
        return self._wrapped_outputs(inputs)

    def get_config(self):
        config = super().get_config()
        config["rate"] = self.rate
        return config


@keras.saving.register_keras_serializable(package="tfp_uq")
class ConcreteDropout(_InputDropoutWrapper, VariationalLayer):
    """Dropout on a wrapped layer's inputs with a learned rate (Gal, Hron & Kendall 2017).

    The drop mask is a Concrete (relaxed Bernoulli) sample,
    z = sigmoid((logit p + log u - log(1 - u)) / temperature), u ~ U(0, 1),
    so the rate p gets gradients. Its KL term, added like the Bayesian
    layers' with `kl_weight` (1 / N), is

        length_scale^2 ||W||^2 / (1 - p) - 2 K H(p),

    for the wrapped layer's kernel W, K input features and H the Bernoulli
    entropy (the paper's weight and dropout regularisers l^2/N and 2/N).
    More data weakens it, so the learned rate falls as N grows.

    Args:
        layer: the layer whose inputs are dropped (it should have a `kernel`).
        initial_rate: starting dropout rate in (0, 1).
        length_scale: prior length scale l (> 0).
        temperature: Concrete relaxation temperature (> 0).
        kl_weight: weight of the term (usually 1 / number of training examples).
        seed: integer seed.
        deterministic: if True, no dropout (point predictions).

    Example:

    >>> layer = tfp_uq.layers.ConcreteDropout(keras.layers.Dense(64, activation="relu"))
    """

    def __init__(
        self,
        layer,
        initial_rate=0.1,
        length_scale=1e-2,
        temperature=0.1,
        kl_weight=None,
        seed=None,
        deterministic=False,
        **kwargs,
    ):
        super().__init__(kl_weight=kl_weight, seed=seed, deterministic=deterministic, **kwargs)
        self._wrap(layer)
        self.initial_rate = _validation.open_unit_interval("initial_rate", initial_rate)
        self.length_scale = _validation.positive("length_scale", length_scale)
        self.temperature = _validation.positive("temperature", temperature)

    def _build_wrapper(self, input_shape):
        logit = math.log(self.initial_rate) - math.log1p(-self.initial_rate)
        self.rate_logit = self.add_weight(name="rate_logit", shape=(), initializer=keras.initializers.Constant(logit))
        self.input_dim = self._input_dim(input_shape)
        self.build_kl_weight()

    @property
    def rate(self):
        """The learned dropout rate p (a float)."""
        return float(keras.ops.convert_to_numpy(ops.sigmoid(self.rate_logit)))

    def kl_divergence(self):
        p = ops.sigmoid(ops.convert_to_tensor(self.rate_logit))
        kernel = getattr(self.layer, "kernel", None)
        weights = [kernel] if kernel is not None else self.layer.trainable_weights
        squared = sum(ops.sum(ops.square(ops.cast(w, p.dtype))) for w in weights)
        neg_entropy = p * ops.log(p) + (1.0 - p) * ops.log1p(-p)
        return self.length_scale**2 * squared / (1.0 - p) + 2.0 * self.input_dim * neg_entropy

    def call(self, inputs, training=None):
        seed = self.next_seed()
        if not self.deterministic:
            # The relaxed mask in float32 at least (its logs underflow in float16), applied in the inputs' dtype.
            dtype = "float64" if inputs.dtype == "float64" else "float32"
            eps = 1e-7
            p = ops.cast(ops.sigmoid(ops.convert_to_tensor(self.rate_logit)), dtype)
            u = _random.uniform(ops.shape(inputs), seed, dtype)
            drop = ops.sigmoid(
                (ops.log(p + eps) - ops.log1p(-p + eps) + ops.log(u + eps) - ops.log1p(-u + eps)) / self.temperature
            )
            inputs = inputs * ops.cast((1.0 - drop) / (1.0 - p), inputs.dtype)
        outputs = self._wrapped_outputs(inputs)
        self.add_kl_loss(self.kl_divergence(), training)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {"initial_rate": self.initial_rate, "length_scale": self.length_scale, "temperature": self.temperature}
        )
        return config
