"""What every stochastic tfp_uq layer shares: seed, point outputs, KL term, posteriors.

A `BayesianLayer` holds, for each Bayesian weight, a mean-field Normal
posterior q(w) = N(loc, scale^2) whose scale comes from a raw variable `rho`
(`tfp_uq._parameterization`: by default the posterior precision is the prior's
plus N times the input's mean square times exp(rho)). Its KL to the prior enters the loss through
`add_loss`, multiplied by the layer's `kl_weight`, which lives in a
non-trainable variable that callbacks may change during `fit`
(`tfp_uq.callbacks.KLAnnealing`).

`model.fit` averages the data loss over a batch, so the negative ELBO per
example is  mean NLL + KL / N  for N training examples: set
`kl_weight = 1 / N` on each layer, or once for a whole model with
`tfp_uq.set_kl_weight(model, num_examples=N)`.
"""

import collections
import functools
import warnings

import keras
from keras import ops

from tfp_uq import _caches, _keras_compat, _kl_tracking, _native, _parameterization, _random, _sampling, _validation
from tfp_uq import priors as priors_lib

__all__ = ["BayesianLayer", "StochasticLayer", "VariationalLayer", "WeightPosterior"]

_SEED_STATE_KEY = "seed_state"

WeightPosterior = collections.namedtuple("WeightPosterior", ["loc", "rho", "prior_variables"])
WeightPosterior.__doc__ = (
    """One weight's posterior: mean variable, raw scale variable, the prior's variables (a dict)."""
)


class WrapsLayer:
    """Mixin of layers that wrap another layer, `self.layer`, saved with them.

    An unbuilt wrapped layer takes the wrapper's dtype policy when built, so
    the pair computes in one dtype (`mixed_float16` included).
    """

    def _wrap(self, layer):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"layer must be a keras.layers.Layer, got {type(layer).__name__}")
        self.layer = layer

    def _build_wrapped(self, input_shape):
        if not self.layer.built:
            self.layer.dtype_policy = self.dtype_policy
            self.layer.build(input_shape)

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


class _WithoutKey:
    """A read-only view of a Keras variable store without one key."""

    def __init__(self, store, key):
        self._store, self._key = store, key

    def keys(self):
        return [k for k in self._store.keys() if k != self._key]  # noqa: SIM118

    def __getitem__(self, key):
        return self._store[key]


class StochasticLayer(keras.layers.Layer):
    """Base of layers that draw random numbers: seed, its saved state, point outputs.

    The layer's `keras.random.SeedGenerator` state is saved with its weights,
    so a model reloaded from `.keras` continues the same random stream.
    `tfp_uq.predict` never touches that state: it passes each layer a
    stateless seed for its call (`next_seed`).

    Args:
        seed: integer seed of the layer's random draws, or None.
        deterministic: if True, the layer gives point outputs (posterior
            means, no dropout) instead of sampling.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(self, seed=None, deterministic=False, **kwargs):
        super().__init__(**kwargs)
        self.seed = _validation.optional_int("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.deterministic = _validation.boolean("deterministic", deterministic)

    def next_seed(self):
        """The `[2]` seed of this call: `tfp_uq.predict`'s stateless one, else the layer's next."""
        seed = _sampling.layer_seed(self)
        return self.seed_generator.next() if seed is None else seed

    # ---------------------------------------------------- saving the RNG state
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[_SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        if _SEED_STATE_KEY in store.keys():  # noqa: SIM118 (a Keras store has keys(), not `in`)
            self.seed_generator.state.assign(store[_SEED_STATE_KEY])
        super().load_own_variables(_WithoutKey(store, _SEED_STATE_KEY))

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed, "deterministic": self.deterministic})
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
        if _keras_compat.own_losses(self):  # added already since Keras last cleared them
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
        _kl_tracking.report(self, weighted)

    def get_config(self):
        config = super().get_config()
        config["kl_weight"] = self._kl_weight
        return config


def _draw_with(layer, seed, output, values, scale_inputs):
    """`layer()._draw_posteriors(...)` for a weak reference `layer` (the compiled draw's body)."""
    return layer()._draw_posteriors(seed, output, values, scale_inputs)


class BayesianLayer(VariationalLayer):
    """Base class of layers with mean-field Normal posteriors over weights.

    Subclasses create their weights with `add_posterior` in `build` and
    provide the hooks `_mean_outputs`, `_sample_outputs` (an estimator mixin
    of `tfp_uq.layers._estimators` does) and `_vectorized_outputs`; `call`
    chooses between them:

    - in `tfp_uq.predict`'s vectorised mode (`tfp_uq._sampling`), one weight
      sample per tiled block of the batch, and no KL term;
    - with `deterministic=True`, the posterior means;
    - otherwise one stochastic pass, and its KL through `add_kl_loss`.

    Args:
        prior: a `tfp_uq.priors.Prior`, a `tfp.distributions.Distribution` or
            None (standard Normal).
        posterior_scale_init: None (default) for the curvature parameterisation
            of the scale (`tfp_uq._parameterization`): the posterior precision
            is the prior's plus N * (mean square of the weight's input) * a
            learned curvature, which starts tight. A number (> 0) instead makes
            the scale softplus(rho) + floor starting at that standard
            deviation, the parameterisation of models saved before.
        kl_weight: weight of the KL term, usually 1 / number of training
            examples (see `VariationalLayer`).
        seed: integer seed of the layer's random draws, or None.
        deterministic: if True, the layer uses the posterior mean instead of
            sampling (a point prediction); sampling is the Bayesian default in
            training and inference.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    # Whether the estimator's noise is already independent per example, so
    # vectorised prediction needs no per-sample weights.
    independent_per_example = False
    # Whether vectorised prediction loops over samples in the graph
    # (`tfp_uq.predict` then bounds the samples per call).
    unrolls_samples = False

    def __init__(self, prior=None, posterior_scale_init=None, kl_weight=None, seed=None, deterministic=False, **kwargs):
        # Variables stay float32 under mixed precision; samples are cast to the
        # compute dtype just before the linear operation, the KL never is.
        kwargs.setdefault("autocast", False)
        super().__init__(kl_weight=kl_weight, seed=seed, deterministic=deterministic, **kwargs)
        self.prior = priors_lib.get(prior)
        if posterior_scale_init is not None:
            posterior_scale_init = _validation.positive_finite("posterior_scale_init", posterior_scale_init)
        self.posterior_scale_init = posterior_scale_init
        self._posteriors = {}

    # ----------------------------------------------------------------- weights
    def add_posterior(self, name, shape, initializer):
        """Creates the posterior of weight `name`; returns its mean variable.

        The mean variable is called `name` (e.g. `kernel`, so `layer.kernel` is
        the posterior mean, as in the matching Keras layer) and the raw scale
        variable `{name}_rho`.
        """
        loc = self.add_weight(name=name, shape=shape, initializer=initializer)
        if self.uses_curvature_scale:
            raw = _parameterization.initial_curvature_raw()
        else:
            raw = float(_parameterization.raw_scale(self.posterior_scale_init))
        rho = self.add_weight(name=f"{name}_rho", shape=shape, initializer=keras.initializers.Constant(raw))
        self._posteriors[name] = WeightPosterior(loc, rho, self.prior.build(self, name, tuple(shape)))
        self.build_kl_weight()
        return loc

    @property
    def posteriors(self):
        """The `WeightPosterior` of each Bayesian weight, by name, in creation order."""
        return dict(self._posteriors)

    def posterior_loc(self, name):
        """Posterior mean of weight `name` (float32 tensor)."""
        return ops.convert_to_tensor(self._posteriors[name].loc)

    @property
    def uses_curvature_scale(self):
        """Whether the scales follow the curvature parameterisation (`posterior_scale_init=None`)."""
        return self.posterior_scale_init is None

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
            return _parameterization.positive_scale(rho)
        energies, kl_weight = scale_inputs
        variance = self.prior.variance(prior_variables)
        return _parameterization.curvature_scale(rho, energies[name], kl_weight, variance)

    def posterior_scale(self, name):
        """Posterior standard deviation of weight `name` (float32 tensor)."""
        posterior = self._posteriors[name]
        rho = ops.convert_to_tensor(posterior.rho)
        return self._scale(name, rho, posterior.prior_variables, self._scale_inputs())

    def prior_variables(self, name):
        """The variables the prior learns for weight `name` (a dict)."""
        return self._posteriors[name].prior_variables

    def weight_stream(self, name, purpose=_random.Stream.WEIGHT):
        """The sub-stream number of weight `name` for `purpose` (a `tfp_uq._random.Stream`)."""
        return _random.stream(purpose, list(self._posteriors).index(name))

    # ------------------------------------------------------------------- draws
    def _draw_posteriors(self, seed, output, values, scale_inputs=None):
        drawn, kl = {}, 0.0
        for index, (name, (loc, rho, prior_variables)) in enumerate(values.items()):
            scale = self._scale(name, rho, prior_variables, scale_inputs)
            noise = None
            if output in ("sample", "perturbation"):
                stream = _random.substream(seed, _random.stream(_random.Stream.WEIGHT, index))
                noise = scale * _random.normal(ops.shape(loc), stream, loc.dtype)

            def sample(loc=loc, scale=scale, noise=noise, index=index):
                if noise is None:
                    stream = _random.substream(seed, _random.stream(_random.Stream.KL_SAMPLE, index))
                    noise = scale * _random.normal(ops.shape(loc), stream, loc.dtype)
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

        This work is elementwise over every weight. On TensorFlow, in a
        traced training step (`model.fit`) it runs as one XLA-compiled
        function even when the model is not compiled with XLA: XLA fuses it
        and its gradient into single passes, while plain TensorFlow launches a
        kernel per operation. Eager calls and calls that do not train
        (`predict`, `evaluate`) run it op by op rather than compile a function
        per layer; their random numbers are still drawn by XLA-compiled
        functions (`tfp_uq._random`), shared by draws of similar sizes.
        Training steps outside XLA with a `priors.Normal` prior use fused
        C++ kernels instead when they are built (`tfp_uq._native`): one pass
        per weight on all CPU threads, and a backward pass without a second
        draw. It returns only what the estimator needs, since every output is
        a full-size array written (and, in training, a gradient read back).
        """
        _validation.one_of("output", output, ("sample", "perturbation", "scale", None))
        # Variables go in as tensors: gradients then flow through the inputs
        # of the compiled function rather than through captured variables.
        values = {name: WeightPosterior(loc, rho, dict(prior)) for name, (loc, rho, prior) in self._posteriors.items()}
        scale_inputs = self._scale_inputs()
        if keras.backend.backend() != "tensorflow":
            return self._draw_posteriors(seed, output, values, scale_inputs)
        import tensorflow as tf

        values = tf.nest.map_structure(tf.convert_to_tensor, values)
        if scale_inputs is not None:
            scale_inputs = tf.nest.map_structure(tf.convert_to_tensor, scale_inputs)
        drawn = _native.posterior_draws(values, seed, output, self.prior, training, scale_inputs)
        if drawn is not None:
            return drawn
        if tf.executing_eagerly() or training is not True or _native.in_xla_context():
            # Op by op: an eager call (a model's first call, a user's layer(x)) is no hot loop; a call
            # that is not training (predict, evaluate) runs no backward pass, and op by op it is as
            # fast as one compiled function (measured up to 1024 x 1024 weights) without ~0.6 s of
            # compiling per layer (36 s for a MobileNetV3Small); inside XLA it is fused anyway.
            return self._draw_posteriors(seed, output, values, scale_inputs)

        def make(layer):
            # A partial, not a closure: TensorFlow counts traces per code object, and
            # one trace per layer of a large model would read as retracing.
            return tf.function(functools.partial(_draw_with, layer), jit_compile=True, autograph=False)

        return _caches.compiled(self, "draw_posteriors", make)(seed, output, values, scale_inputs)

    def sample_weights(self, name, seed, num_samples):
        """`num_samples` independent draws of weight `name`, stacked first."""
        loc = self.posterior_loc(name)
        noise = _random.normal((num_samples,) + tuple(loc.shape), seed, loc.dtype)
        return loc + self.posterior_scale(name) * noise

    def kl_divergence(self, seed=None):
        """KL(q || p) of all this layer's weights, summed (float32 scalar).

        Priors without a closed form give a one-sample Monte Carlo estimate
        drawn with `seed` (default: the layer's seed generator).
        """
        if seed is None:
            seed = self.seed_generator.next()
        return self.draw_posteriors(seed, output=None)[1]

    # ------------------------------------------------------------------- call
    def call(self, inputs, training=None):
        inputs = self._cast_inputs(inputs)
        seed = self.next_seed()
        num_samples = _sampling.num_samples()
        if num_samples and not self.deterministic and not self.independent_per_example:
            # Prediction only (tfp_uq.predict): no KL term is added.
            return self._activate(self._vectorized_outputs(inputs, seed, num_samples))
        if self.deterministic:
            _, kl = self.draw_posteriors(seed, output=None)
            outputs = self._mean_outputs(inputs)
        else:
            outputs, kl = self._sample_outputs(inputs, seed, training)
        if not num_samples:
            self.add_kl_loss(kl, training)
        return self._activate(outputs)

    def _cast_inputs(self, inputs):
        """The inputs as the hooks take them: in the compute dtype (autocast is off)."""
        return ops.cast(inputs, self.compute_dtype)

    def _mean_outputs(self, inputs):
        """Outputs (before `_activate`) with every weight at its posterior mean."""
        raise NotImplementedError(f"{type(self).__name__} must implement _mean_outputs")

    def _sample_outputs(self, inputs, seed, training=None):
        """`(outputs, kl)` of one stochastic pass, outputs before `_activate` (an estimator's rule)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _sample_outputs")

    def _vectorized_outputs(self, inputs, seed, num_samples):
        """Outputs of `num_samples` weight samples, sample s on block s of the tiled batch (`tfp_uq._sampling`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _vectorized_outputs")

    def _activate(self, outputs):
        """The layer's activation, applied to every kind of outputs above."""
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update({"prior": priors_lib.serialize(self.prior), "posterior_scale_init": self.posterior_scale_init})
        return config
