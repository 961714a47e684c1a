"""What every Bayesian layer shares: posteriors, prior, KL term, seed.

A `BayesianLayer` holds, for each Bayesian weight, a mean-field Normal
posterior q(w) = N(loc, scale^2) whose scale comes from a raw variable `rho`
(see `_posterior_scale`: by default the posterior precision is the prior's plus
N times the input's mean square times exp(rho)). Its KL to
the prior enters the loss through `add_loss`, multiplied by the layer's
`kl_weight`, which lives in a non-trainable variable that callbacks may change
during `fit` (`tfp_uq.callbacks.KLAnnealing`).

`model.fit` averages the data loss over a batch, so the negative ELBO per
example is  mean NLL + KL / N  for N training examples: set
`kl_weight = 1 / N` on each layer, or once for a whole model with
`tfp_uq.set_kl_weight(model, num_examples=N)`.
"""

import warnings
import weakref

import keras
from keras import ops

from tfp_uq import _kl_tracking, _native, _random, _validation, priors
from tfp_uq.layers import _posterior_scale

_SEED_STATE_KEY = "seed_state"

# Compiled `_draw_posteriors` per layer, kept outside the layer so that Keras
# and SavedModel do not track the function as layer state.
_COMPILED_DRAWS = weakref.WeakKeyDictionary()


class WrapsLayer:
    """Mixin of layers that wrap another layer, `self.layer`, saved with them."""

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config["layer"] = keras.saving.serialize_keras_object(self.layer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


class StochasticLayer(keras.layers.Layer):
    """Base of layers that draw random numbers: seed and its saved state.

    The layer's `keras.random.SeedGenerator` state is saved with its weights,
    so a model reloaded from `.keras` continues the same random stream, and
    `tfp_uq.predict(seed=...)` can reseed it.

    Args:
        seed: integer seed of the layer's random draws, or None.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = _validation.optional_int("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    # ---------------------------------------------------- saving the RNG state
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[_SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        variables = self._trainable_variables + self._non_trainable_variables
        keys = [k for k in store.keys() if k != _SEED_STATE_KEY]  # noqa: SIM118 (a Keras store)
        if len(keys) != len(variables):
            raise ValueError(
                f"Layer '{self.name}' expects {len(variables)} variables, but the saved file holds {len(keys)}"
            )
        for i, variable in enumerate(variables):
            variable.assign(store[f"{i}"])
        if _SEED_STATE_KEY in store.keys():  # noqa: SIM118 (a Keras store)
            self.seed_generator.state.assign(store[_SEED_STATE_KEY])

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


class VariationalLayer(StochasticLayer):
    """Base of layers that add a KL term of the ELBO, weighted by `kl_weight`.

    Args:
        kl_weight: weight of this layer's KL term in the loss (>= 0), usually
            1 / number of training examples. None means "not set yet": the KL
            is weighted 1.0 and training warns once.
        **kwargs: `StochasticLayer` arguments.
    """

    def __init__(self, kl_weight=None, **kwargs):
        super().__init__(**kwargs)
        if kl_weight is not None:
            kl_weight = _validation.non_negative("kl_weight", kl_weight)
        self._kl_weight = kl_weight
        self.kl_weight_variable = None
        self._warned_kl_weight = False

    def build_kl_weight(self):
        """Creates the non-trainable variable holding the KL weight."""
        if self.kl_weight_variable is None:
            self.kl_weight_variable = self.add_weight(
                name="kl_weight",
                shape=(),
                initializer=keras.initializers.Constant(1.0 if self._kl_weight is None else self._kl_weight),
                trainable=False,
            )

    @property
    def kl_weight(self):
        """The configured KL weight (float), or None if it was never set."""
        return self._kl_weight

    @kl_weight.setter
    def kl_weight(self, value):
        value = _validation.non_negative("kl_weight", value)
        self._kl_weight = value
        if self.kl_weight_variable is not None:
            self.kl_weight_variable.assign(value)

    def add_kl_loss(self, kl, training=None):
        """Adds kl_weight * kl with `add_loss` (and reports it as `kl_loss`).

        A layer called several times in one model call (shared weights, as
        in a siamese network) adds its KL once, as Keras adds a weight
        regularizer once: its weights have one posterior, whatever the calls.
        """
        if self._get_own_losses():  # added already since Keras last cleared them
            return
        if training and self._kl_weight is None and not self._warned_kl_weight:
            self._warned_kl_weight = True
            warnings.warn(
                "A tfp_uq Bayesian layer's kl_weight is not set, so "
                "its KL term is weighted 1.0, which over-regularises unless the "
                "loss is summed over the whole data set. Pass "
                "kl_weight=1/num_train_examples to the layer, or call "
                "tfp_uq.set_kl_weight(model, num_examples=num_train_examples) "
                "once before fit.",
                stacklevel=3,
            )
        # In floatx: Keras sums the losses of a float64 layer in float32 and
        # fails on a float64 term (as it does for a Dense(dtype="float64")
        # with a kernel_regularizer).
        weight = self.kl_weight_variable
        weighted = ops.cast(weight * ops.cast(kl, weight.dtype), keras.backend.floatx())
        # Keras (>= 3.8) divides add_loss terms by the number of replicas under
        # tf.distribute, as it does the compiled loss: the KL counts once.
        self.add_loss(weighted)
        tracker = _kl_tracking.tracker_of(self)
        # JAX's stateless train step cannot update a metric from a layer call.
        if tracker is not None and keras.backend.backend() != "jax":
            tracker.update_state(weighted)

    def get_config(self):
        config = super().get_config()
        config["kl_weight"] = self._kl_weight
        return config


class BayesianLayer(VariationalLayer):
    """Base class of layers with mean-field Normal posteriors over weights.

    Subclasses create their weights with `add_posterior` in `build`; a call
    gets weight samples, perturbations or scales and the KL from
    `draw_posteriors` and adds the KL term with `add_kl_loss`.

    Args:
        prior: a `tfp_uq.priors.Prior`, a `tfp.distributions.Distribution` or
            None (standard Normal).
        posterior_scale_init: None (default) for the curvature parameterisation
            of the scale (`tfp_uq.layers._posterior_scale`): the posterior
            precision is the prior's plus N * (mean square of the weight's
            input) * a learned curvature, which starts tight. A number (> 0)
            instead makes the scale softplus(rho) + floor starting at that
            standard deviation, the parameterisation of models saved before.
        kl_weight: weight of the KL term, usually 1 / number of training
            examples (see `VariationalLayer`).
        seed: integer seed of the layer's random draws, or None.
        deterministic: if True, the layer uses the posterior mean instead of
            sampling (a point prediction); sampling is the Bayesian default in
            training and inference.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        prior=None,
        posterior_scale_init=None,
        kl_weight=None,
        seed=None,
        deterministic=False,
        **kwargs,
    ):
        # Variables stay float32 under mixed precision; samples are cast to the
        # compute dtype just before the linear operation, the KL never is.
        kwargs.setdefault("autocast", False)
        super().__init__(kl_weight=kl_weight, seed=seed, **kwargs)
        self.prior = priors.get(prior)
        if posterior_scale_init is not None:
            posterior_scale_init = _validation.positive_finite("posterior_scale_init", posterior_scale_init)
        self.posterior_scale_init = posterior_scale_init
        self.deterministic = _validation.boolean("deterministic", deterministic)
        self._posteriors = {}

    # ----------------------------------------------------------------- weights
    def add_posterior(self, name, shape, initializer):
        """Creates the posterior of weight `name`; returns its mean variable.

        The mean variable is called `name` (e.g. `kernel`, so `layer.kernel` is
        the posterior mean, as in the matching Keras layer) and the raw scale
        variable `{name}_rho`.
        """
        loc = self.add_weight(name=name, shape=shape, initializer=initializer)
        rho = self.add_weight(
            name=f"{name}_rho",
            shape=shape,
            initializer=keras.initializers.Constant(_posterior_scale.initial_raw(self.posterior_scale_init)),
        )
        prior_variables = self.prior.build(self, name, tuple(shape))
        self._posteriors[name] = (loc, rho, prior_variables)
        self.build_kl_weight()
        return loc

    def posterior_loc(self, name):
        """Posterior mean of weight `name` (float32 tensor)."""
        return ops.convert_to_tensor(self._posteriors[name][0])

    @property
    def uses_curvature_scale(self):
        """Whether the scales follow the curvature parameterisation (`_posterior_scale`)."""
        return _posterior_scale.uses_curvature(self.posterior_scale_init)

    def posterior_energy(self, name):
        """Mean square of the inputs that multiply weight `name`, broadcastable to it.

        1 here (a bias's input, or a layer that keeps no input statistics);
        layers that track their inputs' energy override it.
        """
        del name
        return ops.ones((), "float32")

    def _scale_inputs(self):
        """What the curvature scales read besides rho: ({name: energy}, kl_weight), or None."""
        if not self.uses_curvature_scale:
            return None
        energies = {name: self.posterior_energy(name) for name in self._posteriors}
        return energies, ops.convert_to_tensor(self.kl_weight_variable)

    def _scale(self, name, rho, prior_variables, scale_inputs):
        if scale_inputs is None:
            return _posterior_scale.softplus_scale(rho)
        energies, kl_weight = scale_inputs
        return _posterior_scale.curvature_scale(rho, energies[name], kl_weight, self.prior.variance(prior_variables))

    def posterior_scale(self, name):
        """Posterior standard deviation of weight `name` (float32 tensor)."""
        _, rho, prior_variables = self._posteriors[name]
        return self._scale(name, ops.convert_to_tensor(rho), prior_variables, self._scale_inputs())

    def _draw_posteriors(self, seed, output, values, scale_inputs=None):
        drawn, kl = {}, 0.0
        for index, (name, (loc, rho, prior_variables)) in enumerate(values.items()):
            scale = self._scale(name, rho, prior_variables, scale_inputs)
            noise = None
            if output in ("sample", "perturbation"):
                noise = scale * _random.normal(ops.shape(loc), _random.substream(seed, index), loc.dtype)

            def sample(loc=loc, scale=scale, noise=noise, index=index):
                if noise is None:
                    noise = scale * _random.normal(ops.shape(loc), _random.substream(seed, 100 + index), loc.dtype)
                return loc + noise

            kl = kl + self.prior.kl_divergence(loc, scale, sample, prior_variables)
            if output == "sample":
                drawn[name] = loc + noise
            elif output == "perturbation":
                drawn[name] = noise
            elif output == "scale":
                drawn[name] = scale
        return drawn, kl

    def draw_posteriors(self, seed, output="sample", training=None):
        """One posterior draw (or scale) per weight and the KL, in one pass.

        Args:
            seed: a `[2]`-shaped integer seed tensor.
            output: what to return per weight: "sample" (loc + scale * eps),
                "perturbation" (scale * eps), "scale", or None (the KL only).
                The posterior means are the variables themselves
                (`posterior_loc`).
            training: whether the call is a training step (see below).

        Returns:
            `(drawn, kl)`: a dict of the requested tensors by weight name
            (empty when `output` is None), and the summed KL(q || p) as a
            float32 scalar.

        This work is elementwise over every weight. On TensorFlow it runs as
        one XLA-compiled function even when the model is not compiled with
        XLA: XLA fuses it into a single pass, while plain TensorFlow launches
        a kernel per operation (measured: 2x faster for a 784x256 kernel).
        Training steps outside XLA with a `priors.Normal` prior use fused
        C++ kernels instead when they are built (`tfp_uq._native`): one pass
        per weight on all CPU threads, and a backward pass without a second
        draw. It returns only what the estimator needs, since every output is
        a full-size array written (and, in training, a gradient read back).
        """
        _validation.one_of("output", output, ("sample", "perturbation", "scale", None))
        # Variables go in as tensors: gradients then flow through the inputs
        # of the compiled function rather than through captured variables.
        values = {
            name: (loc, rho, dict(prior_variables)) for name, (loc, rho, prior_variables) in self._posteriors.items()
        }
        scale_inputs = self._scale_inputs()
        if keras.backend.backend() != "tensorflow":
            return self._draw_posteriors(seed, output, values, scale_inputs)
        import tensorflow as tf

        values = tf.nest.map_structure(tf.convert_to_tensor, values)
        if scale_inputs is not None:
            scale_inputs = tf.nest.map_structure(tf.convert_to_tensor, scale_inputs)
        # The compiled kernels implement the softplus scale only.
        if scale_inputs is None:
            drawn = _native.posterior_draws(values, seed, output, self.prior, training)
            if drawn is not None:
                return drawn
        compiled = _COMPILED_DRAWS.get(self)
        if compiled is None:
            compiled = tf.function(self._draw_posteriors, jit_compile=True, autograph=False)
            _COMPILED_DRAWS[self] = compiled
        return compiled(seed, output, values, scale_inputs)

    def sample_weights(self, name, seed, num_samples):
        """`num_samples` independent draws of weight `name`, stacked first."""
        loc = self.posterior_loc(name)
        noise = _random.normal((num_samples,) + tuple(loc.shape), seed, loc.dtype)
        return loc + self.posterior_scale(name) * noise

    def prior_variables(self, name):
        """The variables the prior learns for weight `name` (a dict)."""
        return self._posteriors[name][2]

    def kl_divergence(self, seed=None):
        """KL(q || p) of all this layer's weights, summed (float32 scalar).

        Priors without a closed form give a one-sample Monte Carlo estimate
        drawn with `seed` (default: the layer's seed generator).
        """
        if seed is None:
            seed = self.seed_generator.next()
        return self.draw_posteriors(seed, output=None)[1]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "prior": priors.serialize(self.prior),
                "posterior_scale_init": self.posterior_scale_init,
                "deterministic": self.deterministic,
            }
        )
        return config
