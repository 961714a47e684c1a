"""The posterior protocol: what prediction, export, the callbacks and the CLI ask of a predictive source.

A predictive source is anything that gives Monte Carlo samples of a Keras
model's outputs: a model with Bayesian or MC-dropout layers (or none), a
`DeepEnsemble`, HMC's `PosteriorSamples`, a Laplace or IVON posterior, a
conformal calibrator around any of these. Each is a `Posterior`;
`tfp_uq.predict`, `tfp_uq.export`, `CalibrationLogger`, the `tfp-uq` command
and `UncertaintyMonitor` talk only to this interface, so a new kind of
posterior is one new subclass and no edit anywhere else. (As TFP's
`TransitionKernel` declares `one_step` and `bootstrap_results`.)

A subclass implements `sample_outputs`; everything else has a default it may
override. `as_posterior` turns what a user passes into a `Posterior`.

Example:

>>> class Shifted(tfp_uq.posterior.Posterior):
...     '''A point model whose outputs are shifted by N(0, 0.1^2) noise.'''
...
...     def sample_outputs(self, inputs, num_samples, seed):
...         outputs = self.model(inputs, training=False)
...         noise = keras.random.normal((num_samples,) + tuple(outputs.shape[1:]), seed=seed)
...         return outputs[None] + 0.1 * noise[:, None]
>>> tfp_uq.predict(Shifted(model), x, num_samples=50, seed=0).std
"""

import abc
import json
import os
import threading
import zlib

import keras
import numpy as np
from keras import ops

from tfp_uq import _keras_compat, _random, _sampling, task
from tfp_uq.layers._base import StochasticLayer

__all__ = ["ModelPosterior", "Posterior", "as_posterior", "load", "save"]

_FRESH_LOCK = threading.Lock()
_FRESH = np.random.default_rng()


class Posterior(abc.ABC):
    """A predictive source: Monte Carlo samples of a Keras model's outputs.

    Args:
        model: the Keras model whose outputs are predicted. Prediction and
            export read its input shapes, its output structure, its output
            layers and compiled loss (the task rule, `tfp_uq.task`) and track
            its variables in a SavedModel.

    Attributes:
        deterministic: every sample is the same (one pass is computed and
            repeated).
        random_samples: the samples are random draws, so more calls with new
            seeds give new ones; False for a fixed set (ensemble members,
            stored MCMC draws), always computed in one call.
        max_samples_per_call: an upper bound on the samples of one compiled
            call (a model whose graph unrolls a loop over samples), or None.
    """

    deterministic = False
    random_samples = True
    max_samples_per_call = None

    def __init__(self, model):
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
        self.model = model

    @abc.abstractmethod
    def sample_outputs(self, inputs, num_samples, seed):
        """`num_samples` samples of the model's outputs for one batch of inputs.

        Must be stateless and traceable: it runs inside `tf.function` (and
        XLA), inside a SavedModel's serving function (TensorFlow ops only, no
        tfp_uq) and from several threads at once, so it may not update any
        variable or Python state; all randomness comes from `seed`.

        Args:
            inputs: one batch, in the structure the model takes (a tensor, or
                a list or dict of tensors).
            num_samples: the number of samples S (a Python int).
            seed: a `[2]`-shaped integer seed tensor: same seed, same samples.

        Returns:
            Per model output, a `(S, batch, ...)` tensor, in the structure the
            model returns its outputs in. Classification samples are
            probabilities (or logits, when `from_logits`); regression samples
            are the outputs, or `[loc, scale]` on the last axis for a
            Gaussian output (`OutputKind.gaussian`).
        """

    def resolve_num_samples(self, requested):
        """The number of samples a request for `requested` gives (an ensemble: its members)."""
        return requested

    def output_kinds(self, count):
        """Per flattened output (`count` of them), its `tfp_uq.task.OutputKind`."""
        return task.output_kinds(self.model, count)

    def resolve_from_logits(self, from_logits):
        """`from_logits` checked; None: whether the outputs are logits (by default, as the compiled loss says)."""
        return task.resolve_from_logits(self.model, from_logits)

    @property
    def input_tensors(self):
        """The model's symbolic inputs (for shape checks and serving signatures), or None."""
        try:
            return self.model.inputs or None
        except (AttributeError, ValueError):
            return None

    @property
    def has_exact_fields(self):
        """Whether `exact_fields` gives closed forms (a wrapper forwards its posterior's answer)."""
        return type(self).exact_fields is not Posterior.exact_fields

    def exact_fields(self, inputs):
        """Closed-form summaries that replace the Monte Carlo ones, or None.

        Returns None, or a list with, per flattened output, a dict of
        `(batch, ...)` tensors named as `PredictionResult` fields ("mean", "probs", "variance",
        "aleatoric_variance", "epistemic_variance"). Stateless and traceable
        like `sample_outputs` (it runs in the serving graph too).
        """
        del inputs
        return None

    def extra_fields(self, fields, kind, seed):
        """Further per-input tensors computed from one output's summaries.

        Args:
            fields: the summary tensors of one output by `PredictionResult`
                field name (batch first).
            kind: "classification" or "regression".
            seed: a `[2]` seed tensor for any randomness (e.g. a randomized
                conformal set), folded from the call's seed.

        Returns:
            A dict of tensors (keras.ops), added to the `PredictionResult` and
            to the serving signature (e.g. conformal `lower` and `upper`).
        """
        del fields, kind, seed
        return {}

    def fresh_seed(self):
        """A new `[2]` seed for a call without one (thread-safe; advances this posterior's streams)."""
        with _FRESH_LOCK:
            return _FRESH.integers(0, 2**31, size=2).astype("int64")

    @property
    def cache_owner(self):
        """The object compiled functions are cached on; `as_posterior(cache_owner)` rebuilds this posterior."""
        return self

    # -------------------------------------------------------------- persistence
    def get_config(self):
        """A JSON-able description (Keras's registration asks for one; `save` uses `save_state`)."""
        return {}

    def save_state(self, folder):
        """Saves what the posterior holds beyond its model into `folder` (see `save`); returns a JSON-able config."""
        del folder
        return {}

    @classmethod
    def from_state(cls, model, folder, config):
        """The posterior of `model` from what `save_state` wrote."""
        del folder, config
        return cls(model)


MODEL_FILE, POSTERIOR_FILE = "model.keras", "posterior.json"
# What `extra_fields` draws from: the call's seed folded with this (never a layer index).
EXTRA_FIELDS_STREAM = 2**31 - 1


def save(posterior, folder):
    """Writes any posterior to `folder`: its model (`model.keras`), `posterior.json`, and its own state.

    `load(folder)` reads it back, whatever its kind: a subclass saves what it
    holds beyond the model in `save_state` and is registered with
    `keras.saving.register_keras_serializable`, so `load` finds it by name.

    Example:

    >>> tfp_uq.posterior.save(laplace_posterior, "served_posterior")
    >>> posterior = tfp_uq.posterior.load("served_posterior")
    """
    posterior = as_posterior(posterior)
    folder = os.fspath(folder)
    name = keras.saving.get_registered_name(type(posterior))
    if keras.saving.get_registered_object(name) is not type(posterior):
        raise TypeError(
            f"{type(posterior).__name__} cannot be saved: register it with "
            "@keras.saving.register_keras_serializable() so load() can find it"
        )
    os.makedirs(folder, exist_ok=True)
    posterior.model.save(os.path.join(folder, MODEL_FILE))
    config = posterior.save_state(folder)
    with open(os.path.join(folder, POSTERIOR_FILE), "w") as handle:
        json.dump({"class": name, "config": config}, handle)
    return folder


def load(folder):
    """A posterior saved by `Posterior.save` (or a folder holding only a `model.keras`)."""
    folder = os.fspath(folder)
    path = os.path.join(folder, MODEL_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{folder!r} holds no {MODEL_FILE}: not a folder written by Posterior.save")
    model = keras.models.load_model(path)
    description = os.path.join(folder, POSTERIOR_FILE)
    if not os.path.exists(description):
        return as_posterior(model)
    with open(description) as handle:
        saved = json.load(handle)
    cls = keras.saving.get_registered_object(saved["class"])
    if cls is None or not issubclass(cls, Posterior):
        raise ValueError(f"{folder!r} holds a {saved['class']!r}, which is not a registered tfp_uq posterior")
    return cls.from_state(model, folder, saved["config"])


def _layers(model):
    return [layer for layer in _keras_compat.walk_layers(model) if isinstance(layer, StochasticLayer)]


# Samples per call for models whose layers unroll a loop over samples
# (convolutions, LoRA): bounds the size of the traced graph.
MAX_UNROLLED_SAMPLES = 16


@keras.saving.register_keras_serializable(package="tfp_uq")
class ModelPosterior(Posterior):
    """A Keras model's own predictive: its stochastic tfp_uq layers sample, others are fixed.

    Inputs are tiled `num_samples` times and the model is traced in the
    vectorised mode (`tfp_uq._sampling`): each weight-sampling layer applies
    its own weight sample to each tile, so a sample costs the FLOPs of one
    plain forward pass. Each stochastic layer draws with
    `fold_in(seed, its index)`, and never with its seed generator, so
    predictions are reentrant. A model without stochastic layers is
    deterministic.
    """

    _lock = threading.Lock()  # the layers' seed generators, advanced by calls without a seed

    def __init__(self, model):
        super().__init__(model)
        self.layers = _layers(model)
        self._index = {id(layer): i for i, layer in enumerate(self.layers)}
        if any(getattr(layer, "unrolls_samples", False) for layer in self.layers):
            self.max_samples_per_call = MAX_UNROLLED_SAMPLES

    @property
    def deterministic(self):
        return not self.layers

    @property
    def cache_owner(self):
        return self.model

    def _layer_seed(self, seed, layer):
        index = self._index.get(id(layer))
        if index is None:  # a layer made after this posterior: keyed by its name
            index = len(self._index) + zlib.crc32(layer.name.encode())
        return _random.fold_in(seed, index)

    def sample_outputs(self, inputs, num_samples, seed):
        tiled = keras.tree.map_structure(lambda x: ops.tile(x, (num_samples,) + (1,) * (len(x.shape) - 1)), inputs)
        with _sampling.vectorized(num_samples, lambda layer: self._layer_seed(seed, layer)):
            outputs = self.model(tiled, training=False)
        return keras.tree.map_structure(
            lambda output: ops.reshape(output, (num_samples, -1) + tuple(output.shape[1:])), outputs
        )

    @classmethod
    def from_state(cls, model, folder, config):
        return as_posterior(model)  # a DeepEnsemble is its own kind

    def fresh_seed(self):
        """Advances each stochastic layer's seed generator once; returns a seed mixed from their states."""
        if not self.layers:
            return np.zeros(2, "int64")
        with self._lock:
            states = [np.asarray(keras.ops.convert_to_numpy(layer.seed_generator.next())) for layer in self.layers]
        words = [int(word) % 2**32 for state in states for word in state.ravel()]
        return (np.random.SeedSequence(words).generate_state(2) & 0x7FFFFFFF).astype("int64")


def as_posterior(source):
    """The `Posterior` of what a user passes: a `Posterior` itself, or a Keras model.

    A Keras model that is a kind of posterior of its own (`DeepEnsemble`)
    says so by defining `as_posterior()`; a model trained by an optimizer
    that learns a posterior over its weights (`tfp_uq.optimizers.IVON`)
    gets that optimizer's `posterior(model)`; any other model is a
    `ModelPosterior`.

    Raises:
        TypeError: `source` is neither.
    """
    if isinstance(source, Posterior):
        return source
    if isinstance(source, keras.Model):
        own = getattr(source, "as_posterior", None)
        if callable(own):
            return own()
        # An optimizer that learns a posterior over the weights it trains (IVON) gives it.
        optimizer = getattr(source, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
        learned = getattr(optimizer, "posterior", None)
        if callable(learned) and getattr(optimizer, "built", False):
            return learned(source)
        return ModelPosterior(source)
    raise TypeError(
        "expected a keras.Model or a tfp_uq.posterior.Posterior (DeepEnsemble, PosteriorSamples, a Laplace or "
        f"IVON posterior, a conformal calibrator), got {type(source).__name__}"
    )
