"""Bayesian low-rank adaptation of a pretrained Dense or EinsumDense layer."""

import math

import keras
from keras import ops

from tfp_uq import _random, _validation
from tfp_uq.layers._base import BayesianLayer, WrapsLayer

__all__ = ["BayesianLoRA"]


@keras.saving.register_keras_serializable(package="tfp_uq")
class BayesianLoRA(WrapsLayer, BayesianLayer):
    """Frozen pretrained kernel plus a low-rank update with a weight posterior.

    W = W0 + (alpha / rank) A B, with W0 the wrapped layer's kernel (frozen),
    A of shape kernel.shape[:-1] + (rank,) and B of shape (rank, units),
    both with mean-field Normal posteriors and a prior (Yang et al. 2024,
    "Bayesian Low-rank Adaptation"). B's mean starts at zero, so the layer
    reproduces the pretrained outputs at initialisation (exactly with
    `deterministic=True`, up to the tiny initial posterior noise otherwise),
    and only the adapters train: a large pretrained model gains epistemic
    uncertainty for about 2 rank (fan_in + units) parameters per layer.

    Args:
        layer: a built `keras.layers.Dense` or `keras.layers.EinsumDense`.
        rank: rank of the update (1 <= rank <= min(fan_in, units)).
        alpha: scale of the update (default: rank, i.e. a factor of 1).
        prior, posterior_scale_init, kl_weight, seed, deterministic: as in
            `tfp_uq.layers.DenseFlipout`; with the default curvature scale the
            adapters' scales take unit input energy (this layer keeps no
            input statistics).

    Example:

    >>> adapted = tfp_uq.layers.BayesianLoRA(pretrained_dense, rank=4)
    """

    unrolls_samples = True  # _vectorized_outputs loops over samples

    def __init__(self, layer, rank=4, alpha=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            raise TypeError(f"layer must be a keras.layers.Dense or EinsumDense, got {type(layer).__name__}")
        self.layer = layer
        self.rank = _validation.positive_int("rank", rank)
        self.alpha = float(self.rank) if alpha is None else _validation.positive("alpha", alpha)

    def build(self, input_shape):
        self._build_wrapped(input_shape)
        self.layer.trainable = False
        kernel_shape = tuple(self.layer.kernel.shape)
        fan_in, units = int(math.prod(kernel_shape[:-1])), kernel_shape[-1]
        if self.rank > min(fan_in, units):
            raise ValueError(
                f"rank must be <= min(fan_in, units) = {min(fan_in, units)} for layer {self.layer.name!r}, "
                f"got {self.rank}"
            )
        self.lora_a = self.add_posterior("lora_a", kernel_shape[:-1] + (self.rank,), keras.initializers.HeUniform())
        self.lora_b = self.add_posterior("lora_b", (self.rank, units), "zeros")
        self.built = True

    @property
    def num_adapter_parameters(self):
        """Trainable parameters of the adapters (means and scales)."""
        return sum(int(math.prod(v.shape)) for v in self.trainable_weights)

    def _apply(self, inputs, kernel):
        layer = self.layer
        if isinstance(layer, keras.layers.Dense):
            outputs = ops.matmul(inputs, kernel)
        else:
            outputs = ops.einsum(layer.equation, inputs, kernel)
        if layer.bias is not None:
            outputs = outputs + ops.cast(layer.bias, outputs.dtype)
        return layer.activation(outputs) if layer.activation is not None else outputs

    def _kernel(self, a, b):
        update = ops.einsum("...r,ru->...u", a, b) * (self.alpha / self.rank)
        return ops.cast(ops.convert_to_tensor(self.layer.kernel) + update, self.compute_dtype)

    def _mean_outputs(self, inputs):
        return self._apply(inputs, self._kernel(self.posterior_loc("lora_a"), self.posterior_loc("lora_b")))

    def _sample_outputs(self, inputs, seed, training=None):
        samples, kl = self.draw_posteriors(seed, output="sample", training=training)
        return self._apply(inputs, self._kernel(samples["lora_a"], samples["lora_b"])), kl

    def _vectorized_outputs(self, inputs, seed, num_samples):
        a = self.sample_weights("lora_a", _random.substream(seed, self.weight_stream("lora_a")), num_samples)
        b = self.sample_weights("lora_b", _random.substream(seed, self.weight_stream("lora_b")), num_samples)
        blocks = ops.split(inputs, num_samples, axis=0)
        return ops.concatenate([self._apply(x, self._kernel(a[s], b[s])) for s, x in enumerate(blocks)], axis=0)

    def get_config(self):
        config = super().get_config()
        config.update({"rank": self.rank, "alpha": self.alpha})
        return config
