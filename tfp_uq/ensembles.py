"""Deep ensembles (Lakshminarayanan et al. 2017) as one Keras model."""

import inspect

import keras
from keras import ops

from tfp_uq import _validation, task
from tfp_uq.posterior import Posterior

__all__ = ["DeepEnsemble", "EnsemblePosterior"]


def _takes_an_argument(function):
    """Whether `function` can be called with one positional argument."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters)


@keras.saving.register_keras_serializable(package="tfp_uq")
class DeepEnsemble(keras.Model):
    """M independently initialised members trained side by side.

    All members see the same batches and train in one compiled step (their
    graphs run together, so XLA and the thread pool overlap them); the loss
    is the mean of the members' losses, i.e. each member minimises its own.
    Calling the ensemble (or `ensemble.predict`) returns the members'
    outputs stacked on axis 1, `(batch, num_members, ...)`; `tfp_uq.predict` and `tfp_uq.export` treat
    the members as the Monte Carlo samples, so the epistemic part is the
    between-member variance. Compiled metrics see the members' mean output.

    Args:
        build_fn: callable(seed) -> a Keras model (one member), or a
            callable of no arguments; its inputs and outputs must match
            across seeds.
        num_members: M >= 2.
        seed: member m is built with seed + m (and Keras's global seed set
            to it, so initialisers differ).
        members: already built member models (used when loading).

    Example:

    >>> def member(seed):
    ...     return keras.Sequential([keras.Input((8,)), keras.layers.Dense(50, activation="relu"),
    ...                              keras.layers.Dense(2), tfp_uq.layers.GaussianHead()])
    >>> ensemble = tfp_uq.ensembles.DeepEnsemble(member, num_members=5)
    >>> ensemble.compile("adam", tfp_uq.losses.GaussianNLL())
    >>> ensemble.fit(x, y, epochs=40)
    >>> tfp_uq.predict(ensemble, x_test).std
    """

    def __init__(self, build_fn=None, num_members=5, seed=0, members=None, **kwargs):
        super().__init__(**kwargs)
        if members is None:
            if not callable(build_fn):
                raise TypeError(f"build_fn must be a callable(seed) -> keras.Model, got {build_fn!r}")
            takes_seed = _takes_an_argument(build_fn)
            num_members = _validation.positive_int("num_members", num_members)
            if num_members < 2:
                raise ValueError(f"num_members must be >= 2 for an ensemble, got {num_members}")
            seed = _validation.optional_int("seed", seed) or 0
            members = []
            for m in range(num_members):
                keras.utils.set_random_seed(seed + m)
                member = build_fn(seed + m) if takes_seed else build_fn()
                if not isinstance(member, keras.Model):
                    raise TypeError(f"build_fn must return a keras.Model, got {type(member).__name__}")
                members.append(member)
        self.members = list(members)
        self.num_members = len(self.members)
        self.seed = seed

    def call(self, inputs, training=None):
        return ops.stack([member(inputs, training=training) for member in self.members], axis=1)

    def as_posterior(self):
        """The ensemble as a `tfp_uq.posterior.Posterior`: its members are the samples."""
        return EnsemblePosterior(self)

    def _per_member(self, value):
        shape = tuple(ops.shape(value))
        return ops.broadcast_to(ops.expand_dims(value, 1), shape[:1] + (self.num_members,) + shape[1:])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y = None if y is None else self._per_member(y)
        sample_weight = None if sample_weight is None else self._per_member(sample_weight)
        return super().compute_loss(x, y, y_pred, sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, ops.mean(y_pred, axis=1), sample_weight)

    def get_config(self):
        return {
            "members": [keras.saving.serialize_keras_object(member) for member in self.members],
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(member) for member in config.pop("members")]
        return cls(members=members, **config)


@keras.saving.register_keras_serializable(package="tfp_uq")
class EnsemblePosterior(Posterior):
    """A `DeepEnsemble`'s predictive: each member's output is one Monte Carlo sample.

    The number of samples is the number of members, whatever is asked; the
    members' structure (inputs, output layers) and the ensemble's compiled
    loss feed the task rule.
    """

    random_samples = False

    def __init__(self, ensemble):
        if not isinstance(ensemble, DeepEnsemble):
            raise TypeError(f"ensemble must be a DeepEnsemble, got {type(ensemble).__name__}")
        super().__init__(ensemble)

    @property
    def cache_owner(self):
        return self.model

    def resolve_num_samples(self, requested):
        return self.model.num_members

    def resolve_from_logits(self, from_logits):
        return task.resolve_from_logits(self.model, from_logits)

    def output_kinds(self, count):
        return task.output_kinds(self.model.members[0], count, compiled_model=self.model)

    @property
    def input_tensors(self):
        try:
            return self.model.members[0].inputs or None
        except (AttributeError, ValueError):
            return None

    def sample_outputs(self, inputs, num_samples, seed):
        del num_samples, seed  # the members are the samples
        return ops.moveaxis(self.model(inputs, training=False), 1, 0)
