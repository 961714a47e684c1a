"""Stand-in for `tfp_uq.posterior.Posterior` until it lands on main (same methods; replaced at integration)."""

import abc
import collections

OutputKind = collections.namedtuple("OutputKind", ["gaussian", "classifier"])


class Posterior(abc.ABC):
    """A predictive source: Monte Carlo samples of a Keras model's outputs."""

    deterministic = False
    max_samples_per_call = None

    def __init__(self, model):
        self.model = model

    @abc.abstractmethod
    def sample_outputs(self, inputs, num_samples, seed):
        """`num_samples` samples `(S, batch, ...)` of the model's outputs for one batch of inputs."""

    def resolve_num_samples(self, requested):
        return requested

    @abc.abstractmethod
    def output_kinds(self, from_logits):
        """Per flattened output: `OutputKind(gaussian, classifier)`."""

    def exact_fields(self, inputs):
        return None

    def extra_fields(self, fields, kind):
        return {}
