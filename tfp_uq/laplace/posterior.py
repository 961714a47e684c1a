"""`LaplacePosterior`: a Gaussian posterior over a trained network's weights, as a predictive source."""

import math
import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfp_uq import _validation
from tfp_uq import posterior as _posterior
from tfp_uq import task as _task
from tfp_uq.laplace import _blocks, _function, _likelihoods, _predictive, _structures, marglik

__all__ = ["LINKS", "PREDICTIVES", "LaplacePosterior"]

PREDICTIVES = ("glm", "nn")
LINKS = ("probit", "mc")
_LIKELIHOODS = {
    "categorical": _likelihoods.Categorical,
    "bernoulli": _likelihoods.Bernoulli,
    "gaussian": _likelihoods.Gaussian,
    "heteroscedastic_gaussian": _likelihoods.HeteroscedasticGaussian,
}
_ARRAYS_FILE = "laplace.npz"
_FORMAT_VERSION = 2
# Floats one call's weight samples may hold (64 MiB of float32), to bound max_samples_per_call.
_MAX_SAMPLE_FLOATS = 16 * 2**20
_MAX_SAMPLES_PER_CALL = 256


def likelihood_name(likelihood):
    """The saved name of a `_likelihoods.Likelihood`."""
    return next(name for name, kind in _LIKELIHOODS.items() if type(likelihood) is kind)


def layers(model):
    """The model's layers in model order, those of nested models in place of the nested model.

    (`_keras_compat.walk_layers` reaches further, into custom layers, but not in model order, which
    "last_layer" needs.)
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from layers(layer)
        else:
            yield layer


def mean_blocks(blocks):
    """The blocks' current weights as float64 `(rows, columns)` arrays."""
    return [
        np.asarray(block.matrix(block.kernel.numpy(), None if block.bias is None else block.bias.numpy()), "float64")
        for block in blocks
    ]


def _seed(seed):
    if isinstance(seed, int) and not isinstance(seed, bool):
        return tf.constant([seed, 0], tf.int64)
    return tf.cast(seed, tf.int64)  # tfp_uq.predict's seeds are int64


@keras.saving.register_keras_serializable(package="tfp_uq")
class LaplacePosterior(_posterior.Posterior):
    """The Laplace approximation N(theta*, P^-1) to the posterior over some of a trained model's weights.

    theta* are the trained weights of the covered layers, P the posterior
    precision `h GGN + diag(prior_precision)` in a Kronecker-factored,
    diagonal or full structure (Daxberger et al. 2021, "Laplace Redux").
    The predictive is either

    - "glm": the network linearised at theta*, `f(x; theta) ~ f(x; theta*) +
      J(x) (theta - theta*)` (Immer et al. 2021), whose function outputs are
      Gaussian with variance `diag(J P^-1 J^T)`; classification then uses the
      probit approximation `softmax(mu / sqrt(1 + pi / 8 var))` (MacKay 1992)
      for its probabilities (`link="probit"`) or Monte Carlo (`link="mc"`),
      regression is Gaussian with that variance (epistemic) plus the noise
      variance (aleatoric);
    - "nn": Monte Carlo over weight samples theta ~ N(theta*, P^-1) pushed
      through the network itself.

    Build one with `tfp_uq.laplace.fit`. It is a `tfp_uq.posterior.Posterior`,
    so `tfp_uq.predict`, `tfp_uq.export`, `tfp_uq.conformal.calibrate` and
    `tfp_uq.posterior.save` / `load` take it like a model; the "glm"
    predictive's closed forms (`exact_fields`) replace the Monte Carlo
    probabilities or moments there. Regression samples are `[loc, scale]` on
    the last axis: the predictive includes the noise. The covariance
    factors enter compiled functions as constants, so an export carries them.

    Attributes:
        model: the Keras model.
        prior_precision: the prior precision: a float ("scalar"), one per
            covered layer ("layerwise") or one per weight ("diag").
        noise_scale: regression with one noise scale: sigma; else None.
        hessian, predictive, link: as passed to `fit`.
        layer_names: the covered layers.

    Example:

    >>> posterior = tfp_uq.laplace.fit(model, (x_train, y_train))
    >>> posterior.prior_precision, posterior.log_marginal_likelihood()
    >>> tfp_uq.predict(posterior, x_test).probs          # probit probabilities
    >>> tfp_uq.posterior.save(posterior, "laplace_posterior")
    >>> posterior = tfp_uq.posterior.load("laplace_posterior")
    """

    def __init__(self, model, config, arrays, structure=None, function=None):
        # `structure` and `function`: those `fit` already built, so that they are not built twice.
        super().__init__(model)
        self._config = dict(config)
        self.likelihood = _LIKELIHOODS[config["likelihood"]]()
        if function is None:
            by_name = {layer.name: layer for layer in layers(model)}
            missing = [name for name in config["layers"] if name not in by_name]
            if missing:
                raise ValueError(f"model has no layers named {missing}; the posterior covers {config['layers']}")
            logits = self.likelihood.task == "classification" and not config["from_logits"]
            blocks = [_blocks.block(by_name[name]) for name in config["layers"]]
            function = _function.function_for(model, blocks, logits)
        self._function, self.blocks = function, function.blocks
        shapes = [(block.rows, block.columns) for block in self.blocks]
        curvature = {key.split(".", 1)[1]: value for key, value in arrays.items() if key.startswith("curvature.")}
        self.structure = structure or _structures.STRUCTURES[config["hessian"]](shapes, curvature)
        self._mean = np.asarray(arrays["mean"], "float64")
        self._prior_values = np.asarray(arrays["prior_precision"], "float64")
        self._arrays = {
            key.split(".", 1)[1]: np.asarray(value, "float32")
            for key, value in arrays.items()
            if key.startswith("posterior.")
        }
        size = self.structure.num_parameters
        self.max_samples_per_call = int(max(1, min(_MAX_SAMPLES_PER_CALL, _MAX_SAMPLE_FLOATS // size)))
        self._compiled = {}

    # What a user reads.

    @property
    def hessian(self):
        return self._config["hessian"]

    @property
    def predictive(self):
        return self._config["predictive"]

    @property
    def link(self):
        return self._config["link"]

    @property
    def layer_names(self):
        return list(self._config["layers"])

    @property
    def num_parameters(self):
        return self.structure.num_parameters

    @property
    def prior_precision(self):
        if self._config["prior_structure"] == "scalar":
            return float(self._prior_values[0])
        return self._prior_values.copy()

    @property
    def noise_scale(self):
        if not self.likelihood.learns_noise:
            return None
        return 1.0 / math.sqrt(self._config["noise_precision"])

    @property
    def mean(self):
        """theta*: the covered weights, flat, block after block (each a `(rows, columns)` matrix, bias last)."""
        return self._mean.copy()

    def covariance(self):
        """The dense posterior covariance `P^-1` (float64), for models of at most `FULL_MAX_PARAMETERS` weights."""
        if self.num_parameters > _structures.FULL_MAX_PARAMETERS:
            raise ValueError(
                f"the posterior covers {self.num_parameters} parameters; a dense covariance is built only for at most "
                f"FULL_MAX_PARAMETERS = {_structures.FULL_MAX_PARAMETERS}"
            )
        return self.structure.covariance(self._noise_precision(), self._prior_blocks(self._prior_values))

    def log_marginal_likelihood(self, prior_precision=None, noise_scale=None):
        """The Laplace log marginal likelihood of the training data (see `tfp_uq.laplace.marglik`).

        Args:
            prior_precision: evaluate at this prior precision instead (a
                positive float, or an array shaped like `prior_precision`).
            noise_scale: evaluate at this noise scale instead (regression
                with one noise scale only).
        """
        values = self._prior_values
        if prior_precision is not None:
            values = np.broadcast_to(np.asarray(prior_precision, "float64"), self._prior_values.shape)
            if not np.all(values > 0):
                raise ValueError(f"prior_precision must be > 0, got {prior_precision!r}")
        noise_precision = self._noise_precision()
        if noise_scale is not None:
            if not self.likelihood.learns_noise:
                raise ValueError(
                    "noise_scale applies only to regression with one noise scale (a mean squared error loss)"
                )
            noise_precision = 1.0 / _validation.positive("noise_scale", noise_scale) ** 2
        return marglik.log_marginal_likelihood(
            self.structure,
            self.likelihood,
            self._statistics(),
            self._mean_blocks(),
            self._config["prior_structure"],
            values,
            noise_precision,
        )

    def _statistics(self):
        return {key: self._config[key] for key in ("statistic", "count", "num_targets")}

    def _noise_precision(self):
        return self._config["noise_precision"] if self.likelihood.learns_noise else 1.0

    def _prior_blocks(self, values):
        return marglik.expand_prior(self._config["prior_structure"], values, self.structure.shapes)

    def _mean_blocks(self):
        sizes = np.cumsum([rows * columns for rows, columns in self.structure.shapes])[:-1]
        return [part.reshape(shape) for part, shape in zip(np.split(self._mean, sizes), self.structure.shapes)]

    # The posterior protocol.

    def output_kinds(self, count):
        """The likelihood decides: regression samples are `[loc, scale]`, classification's are a classifier's."""
        regression = self.likelihood.task == "regression"
        return [_task.OutputKind(gaussian=regression, classifier=not regression, opaque=False)] * count

    @property
    def has_exact_fields(self):
        """The "glm" predictive has closed forms: regression always, classification with the probit link."""
        return self.predictive == "glm" and (self.likelihood.task == "regression" or self.link == "probit")

    def get_config(self):
        return dict(self._config)

    def _graph_arrays(self):
        # Constants of the traced graph: an exported SavedModel carries them without tracking variables.
        return {name: tf.constant(value) for name, value in self._arrays.items()}

    def _moments(self, inputs):
        return _predictive.moments(self._function, self.structure, self.likelihood, self._graph_arrays(), inputs)

    def _eager(self, name, method, *args):
        """`method(*args)`, through a compiled function when called eagerly (one per posterior and method)."""
        if not tf.executing_eagerly():
            return method(*args)
        if name not in self._compiled:
            self._compiled[name] = tf.function(method, jit_compile=_function.default_jit_compile(), autograph=False)
        return _function.run_compiled(self._compiled[name], *args)

    def function_moments(self, inputs):
        """Mean and variance `(batch, outputs)` of the linearised function outputs (logits, or the mean)."""
        return self._eager("moments", lambda x: self._moments(x)[1:3], inputs)

    def sample_outputs(self, inputs, num_samples, seed):
        """`num_samples` samples `(S, batch, outputs)` of the model's outputs under the posterior.

        Classification samples are probabilities (logits when the model's loss
        takes logits); regression samples are `[loc, scale]` with the noise
        scale. Stateless: the same `seed` (a `[2]` int32 tensor) gives the same samples.
        """
        num_samples = _validation.positive_int("num_samples", num_samples)
        return self._eager(f"samples_{num_samples}", lambda x, s: self._samples(x, num_samples, s), inputs, _seed(seed))

    def _samples(self, inputs, num_samples, seed):
        deltas = self.structure.sample(self._graph_arrays(), seed, num_samples)
        if self.predictive == "nn":
            return self._network_samples(inputs, deltas)
        f, jacobians = self._function.jacobians(
            inputs, lambda outputs: _predictive.unit_columns(self.likelihood, outputs)
        )
        linear = self.likelihood.linearized(f)[None] + tf.add_n([j.apply(d) for j, d in zip(jacobians, deltas)])
        return self._outputs(linear, f)

    def _outputs(self, linear, f):
        """Model-output samples from linearised samples `(S, batch, outputs)`."""
        if self.likelihood.task == "classification":
            if self._config["from_logits"]:
                return linear
            return ops.sigmoid(linear) if linear.shape[-1] == 1 else ops.softmax(linear, axis=-1)
        if isinstance(self.likelihood, _likelihoods.HeteroscedasticGaussian):
            scale = ops.split(f, 2, axis=-1)[1]
        else:
            scale = ops.full_like(linear[0], 1.0 / math.sqrt(self._config["noise_precision"]))
        return ops.concatenate([linear, ops.broadcast_to(scale[None], ops.shape(linear))], axis=-1)

    def _network_samples(self, inputs, deltas):
        means = [
            block.matrix(block.kernel.value, None if block.bias is None else block.bias.value) for block in self.blocks
        ]

        def one_sample(sample_deltas):
            matrices = [mean + delta for mean, delta in zip(means, sample_deltas)]
            return _function.call_with_matrices(self.model, self.blocks, inputs, matrices)

        outputs = tf.vectorized_map(one_sample, deltas)
        if self.likelihood.learns_noise:
            scale = ops.full_like(outputs, 1.0 / math.sqrt(self._config["noise_precision"]))
            outputs = ops.concatenate([outputs, scale], axis=-1)
        return outputs

    def exact_fields(self, inputs):
        """Closed-form summaries of the "glm" predictive (None for "nn", and for classification with link "mc").

        Classification: `probs` (and `mean`) by the probit approximation.
        Regression: `mean`, `epistemic_variance` (`diag(J P^-1 J^T)`),
        `aleatoric_variance` (the noise variance) and their sum `variance`.
        """
        if not self.has_exact_fields:
            return None
        return self._eager("exact_fields", self._exact_fields, inputs)

    def _exact_fields(self, inputs):
        f, mean, variance, _ = self._moments(inputs)
        return [_predictive.fields(self.likelihood, f, mean, variance, self._noise_precision())]

    # Persistence.

    def _state_arrays(self):
        arrays = {"mean": self._mean, "prior_precision": self._prior_values}
        arrays.update({f"curvature.{key}": value for key, value in self.structure.statistics.items()})
        arrays.update({f"posterior.{key}": value for key, value in self._arrays.items()})
        return arrays

    def save_state(self, folder):
        """Writes the curvature and covariance factors to `folder/laplace.npz`; returns the config."""
        np.savez(os.path.join(folder, _ARRAYS_FILE), **self._state_arrays())
        return {"format_version": _FORMAT_VERSION, **self._config}

    @classmethod
    def from_state(cls, model, folder, config):
        """The posterior `save_state` wrote to `folder`, for `model` (with the weights it was fitted at)."""
        config = dict(config)
        if config.pop("format_version", None) != _FORMAT_VERSION:
            raise ValueError(f"{folder!r} holds a LaplacePosterior written by another version of tfp_uq.laplace")
        path = os.path.join(folder, _ARRAYS_FILE)
        if not os.path.isfile(path):
            raise ValueError(
                f"{folder!r} holds no {_ARRAYS_FILE}: not a LaplacePosterior saved by tfp_uq.posterior.save"
            )
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
        posterior = cls(model, config, arrays)
        current = np.concatenate([theta.reshape(-1) for theta in mean_blocks(posterior.blocks)])
        if current.shape != posterior._mean.shape or not np.array_equal(current, posterior._mean):
            raise ValueError(
                "model's weights in layers " + ", ".join(config["layers"]) + " differ from those the posterior was "
                "fitted at: load the weights it was fitted at, or fit it again"
            )
        return posterior

    def save(self, path):
        """`tfp_uq.posterior.save(self, path)`: the model and the posterior, in the folder `path`."""
        return _posterior.save(self, path)

    @classmethod
    def load(cls, path):
        """`tfp_uq.posterior.load(path)`, checked to be a `LaplacePosterior`."""
        loaded = _posterior.load(path)
        if not isinstance(loaded, cls):
            raise ValueError(f"{os.fspath(path)!r} holds a {type(loaded).__name__}, not a {cls.__name__}")
        return loaded
