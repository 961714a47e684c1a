"""A Bayesian drop-in replacement for `keras.layers.Embedding`."""

import keras
from keras import ops

from tfp_uq import _parameterization, _random, _validation
from tfp_uq.layers._base import BayesianLayer
from tfp_uq.layers._linear import reject_replaced_options

__all__ = ["EmbeddingReparameterization"]


@keras.saving.register_keras_serializable(package="tfp_uq")
class EmbeddingReparameterization(BayesianLayer):
    """Embedding whose table is drawn once per call, at the rows the call looks up.

    e_t = loc[i_t] + scale[i_t] * eps[i_t], eps ~ N(0, I): one posterior draw
    of the table per call (reparameterization, Blundell et al. 2015), so a
    token that occurs twice in a batch gets the same vector both times. Only
    the rows looked up are drawn (`tfp_uq._random.normal_at`: the draw is a
    function of the row and the seed), never the whole table, which for a
    language model's vocabulary would cost more than the rest of the layer.
    The KL term covers the whole table (in closed form for a Normal prior).

    Args:
        input_dim: size of the vocabulary (largest index + 1).
        output_dim: dimension of the embedding vectors.
        embeddings_initializer: initializer of the table's posterior mean.
        mask_zero: whether index 0 is padding, masked for later layers.
        prior, kl_weight, seed, deterministic: as in `tfp_uq.layers.DenseFlipout`.
        posterior_scale_init: initial posterior standard deviation of the
            softplus scale (default 1e-3). The curvature scale of the other
            layers (None) needs each row's input energy, the frequency of its
            index, which this layer does not track yet: with energy 1 every row
            was measured too wide (digits as pixel tokens on JAX: accuracy 0.53).

    Input shape: integer indices `(batch_size, ...)`; output shape:
    `(batch_size, ..., output_dim)`, as `keras.layers.Embedding`.

    Example:

    >>> embed = tfp_uq.layers.EmbeddingReparameterization(10_000, 64, mask_zero=True)
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", mask_zero=False, **kwargs):
        reject_replaced_options(self, kwargs)
        kwargs.setdefault("posterior_scale_init", 1e-3)
        super().__init__(**kwargs)
        self.input_dim = _validation.positive_int("input_dim", input_dim)
        self.output_dim = _validation.positive_int("output_dim", output_dim)
        if self.input_dim * self.output_dim > 2**32:
            raise ValueError(
                f"input_dim * output_dim must be at most 2^32 (the positions of one draw), got "
                f"{self.input_dim} * {self.output_dim}"
            )
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.mask_zero = _validation.boolean("mask_zero", mask_zero)
        self.supports_masking = self.mask_zero

    def build(self, input_shape=None):
        self.embeddings = self.add_posterior(
            "embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer
        )
        self.built = True

    def _cast_inputs(self, inputs):
        return ops.cast(inputs, "int32")

    def _rows(self, values, ids):
        return ops.take(values, ids, axis=0)

    def _positions(self, ids):
        # In uint32 (< 2^32 by the check in __init__), which every backend has without 64-bit integers.
        rows = ops.cast(ids, "uint32")[..., None] * ops.cast(self.output_dim, "uint32")
        return rows + ops.cast(ops.arange(self.output_dim, dtype="int32"), "uint32")

    def _drawn(self, ids, noise):
        # In float32 whatever the policy: the posterior's variables are.
        loc = ops.cast(self._rows(self.posterior_loc("embeddings"), ids), "float32")
        rho = ops.cast(self._rows(self._posteriors["embeddings"].rho, ids), "float32")
        scale = _parameterization.positive_scale(rho)
        return ops.cast(loc + scale * ops.cast(noise, "float32"), self.compute_dtype)

    def _mean_outputs(self, inputs):
        return ops.cast(self._rows(self.posterior_loc("embeddings"), inputs), self.compute_dtype)

    def _sample_outputs(self, inputs, seed, training=None):
        _, kl = self.draw_posteriors(seed, output=None, training=training)
        stream = _random.substream(seed, self.weight_stream("embeddings"))
        return self._drawn(inputs, _random.normal_at(self._positions(inputs), stream)), kl

    def _vectorized_outputs(self, inputs, seed, num_samples):
        rows = ops.shape(inputs)[0]
        sample = ops.arange(rows) // (rows // num_samples)
        seeds = _random.sample_seeds(_random.substream(seed, self.weight_stream("embeddings")), num_samples)
        noise = _random.normal_at(self._positions(inputs), ops.take(seeds, sample, axis=0))
        return self._drawn(inputs, noise)

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs, 0) if self.mask_zero else None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "mask_zero": self.mask_zero,
            }
        )
        return config
