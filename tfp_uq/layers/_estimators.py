"""Gradient estimators for layers of the form y = linear(x, kernel) + bias.

`BayesianLinear` holds what Dense and convolution layers share: a kernel and
an optional bias with posteriors, activation, and the call that asks an
estimator for outputs. An estimator mixin adds only its sampling rule,
`_sample_outputs(inputs, seed)`, and a layer class adds only its linear
operation (`_linear`), its bias broadcast (`_add_bias`) and shapes.

- Reparameterization (Kingma & Welling 2014; Blundell et al. 2015): one
  kernel draw W = loc + scale * eps per call, shared by the batch.
- Flipout (Wen et al. 2018): one perturbation dW = scale * eps per call,
  decorrelated across examples by random signs,
  y_n = linear(x_n, loc) + (linear(x_n * s_n, dW) + db) * r_n.
- Local reparameterization (Kingma, Salimans & Welling 2015): samples the
  pre-activations, independent per example:
  y = linear(x, loc) + b + sqrt(linear(x^2, scale^2) + scale_b^2) * eps.
"""

import keras
from keras import ops

from tfp_uq import _random, _validation
from tfp_uq.layers._base import BayesianLayer


class BayesianLinear(BayesianLayer):
    """Base of Bayesian layers computing activation(linear(x, kernel) + bias).

    Args:
        activation: activation function, as in Keras layers.
        use_bias: whether the layer has a bias.
        kernel_initializer: initializer of the kernel's posterior mean.
        bias_initializer: initializer of the bias's posterior mean.
        bayesian_bias: if True the bias has a posterior and a prior like the
            kernel; if False it is an ordinary (point-estimate) weight.
        **kwargs: `BayesianLayer` arguments (prior, posterior_scale_init,
            kl_weight, seed, deterministic) and base layer arguments.
    """

    def __init__(
        self,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        bayesian_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.use_bias = _validation.boolean("use_bias", use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.bayesian_bias = _validation.boolean("bayesian_bias", bayesian_bias)
        self.bias = None

    def build_kernel_and_bias(self, kernel_shape, bias_shape):
        """Creates the kernel posterior and the bias (posterior or point)."""
        self.kernel = self.add_posterior("kernel", kernel_shape, self.kernel_initializer)
        if self.use_bias and self.bayesian_bias:
            self.bias = self.add_posterior("bias", bias_shape, self.bias_initializer)
        elif self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=bias_shape, initializer=self.bias_initializer
            )

    @property
    def _has_bias_posterior(self):
        return "bias" in self._posteriors

    def _bias_loc(self):
        if self.bias is None:
            return None
        return ops.convert_to_tensor(self.bias)

    def _cast(self, value):
        return ops.cast(value, self.compute_dtype)

    def _linear(self, inputs, kernel):
        raise NotImplementedError

    def _add_bias(self, outputs, bias):
        raise NotImplementedError

    def _mean_outputs(self, inputs):
        outputs = self._linear(inputs, self._cast(self.posterior_loc("kernel")))
        bias = self._bias_loc()
        return outputs if bias is None else self._add_bias(outputs, self._cast(bias))

    def _sample_outputs(self, inputs, seed):
        """Returns (pre-activation outputs, dict of posterior draws)."""
        raise NotImplementedError

    def call(self, inputs, training=None):
        seed = self.seed_generator.next()
        if self.deterministic:
            outputs, samples = self._mean_outputs(inputs), {}
        else:
            outputs, samples = self._sample_outputs(inputs, seed)
        self.add_kl_loss(samples, _random.substream(seed, 50), training)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "bayesian_bias": self.bayesian_bias,
            }
        )
        return config


class Reparameterization:
    """Estimator mixin: one weight draw per call, shared across the batch."""

    def _sample_outputs(self, inputs, seed):
        kernel = self.sample_posterior("kernel", _random.substream(seed, 0))
        outputs = self._linear(inputs, self._cast(kernel))
        samples = {"kernel": kernel}
        if self._has_bias_posterior:
            bias = self.sample_posterior("bias", _random.substream(seed, 1))
            samples["bias"] = bias
        else:
            bias = self._bias_loc()
        if bias is not None:
            outputs = self._add_bias(outputs, self._cast(bias))
        return outputs, samples


class Flipout:
    """Estimator mixin: one shared perturbation, signs flipped per example."""

    def _sample_outputs(self, inputs, seed):
        loc = self.posterior_loc("kernel")
        delta = self.posterior_scale("kernel") * _random.normal(
            ops.shape(loc), _random.substream(seed, 0), loc.dtype
        )
        sign_in = _random.rademacher(
            ops.shape(inputs), _random.substream(seed, 1), self.compute_dtype
        )
        perturbation = self._linear(inputs * sign_in, self._cast(delta))
        samples = {"kernel": loc + delta}
        if self._has_bias_posterior:
            bias_loc = self.posterior_loc("bias")
            bias_delta = self.posterior_scale("bias") * _random.normal(
                ops.shape(bias_loc), _random.substream(seed, 3), bias_loc.dtype
            )
            perturbation = self._add_bias(perturbation, self._cast(bias_delta))
            samples["bias"] = bias_loc + bias_delta
        sign_out = _random.rademacher(
            ops.shape(perturbation), _random.substream(seed, 2), self.compute_dtype
        )
        return self._mean_outputs(inputs) + perturbation * sign_out, samples


class LocalReparameterization:
    """Estimator mixin: pre-activations sampled independently per example."""

    def _sample_outputs(self, inputs, seed):
        mean = self._mean_outputs(inputs)
        scale = self.posterior_scale("kernel")
        # The variance is computed in float32: squares underflow in float16.
        inputs32 = ops.cast(inputs, scale.dtype)
        variance = self._linear(ops.square(inputs32), ops.square(scale))
        if self._has_bias_posterior:
            variance = self._add_bias(variance, ops.square(self.posterior_scale("bias")))
        noise = _random.normal(ops.shape(variance), _random.substream(seed, 0), variance.dtype)
        # The tiny constant keeps the gradient of sqrt finite for all-zero inputs.
        outputs = mean + self._cast(ops.sqrt(variance + 1e-12) * noise)
        return outputs, {}
