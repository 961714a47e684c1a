"""`BayesianRecurrent`: the base of Bayesian LSTM and GRU layers, run by `keras.layers.RNN`.

A recurrent layer's weights are drawn once per call, for the whole sequence
(as Bayesian-Torch's LSTM and Fortunato et al. 2017, "Bayesian Recurrent
Neural Networks", do), never per time step: each example then follows one
weight draw along its sequence. The input projection x_t @ W + b of every
step is computed for the whole sequence before the recurrence (one large
matrix product instead of one per step); the recurrence h_{t-1} @ U runs
in `keras.layers.RNN`, which gives masking, `return_sequences`,
`return_state`, `go_backwards`, `stateful`, `unroll` and XLA their Keras
meaning.

A layer class adds its gate arithmetic (`_step`) and the split of its bias
between the input and recurrent matrices (`_split_bias`); an estimator mixin
of `tfp_uq.layers._estimators` adds `_sequence_matrices`.
"""

import collections
import threading

import keras
from keras import ops

from tfp_uq import _random, _validation
from tfp_uq.layers._base import BayesianLayer
from tfp_uq.layers._estimators import PerSampleMatrix, SharedMatrix
from tfp_uq.layers._linear import reject_replaced_options

__all__ = ["BayesianRecurrent", "Sequences"]

Sequences = collections.namedtuple("Sequences", ["sequences", "initial_state", "mask"])
Sequences.__doc__ = """What a recurrent layer's call takes, passed to its hooks as one value."""


class _StepCell(keras.layers.Layer):
    """One time step of a Bayesian recurrent layer, with the weights its layer holds for the current call.

    It owns no weights. The layer sets the step (its recurrent matrix bound
    in) for the duration of one call, per thread, so concurrent traces of
    one model do not see each other's draws.
    """

    def __init__(self, state_size, output_size, **kwargs):
        super().__init__(**kwargs)
        self.state_size, self.output_size = state_size, output_size
        self._current = threading.local()

    def call(self, inputs, states):
        return self._current.step(inputs, states)


class BayesianRecurrent(BayesianLayer):
    """Base of Bayesian recurrent layers; arguments as `keras.layers.LSTM` / `GRU`.

    Args:
        units: dimensionality of the output (positive integer).
        activation, recurrent_activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, return_sequences,
        return_state, go_backwards, stateful, unroll, zero_output_for_mask:
            as in `keras.layers.LSTM`.
        dropout, recurrent_dropout: must be 0 (see the `ValueError`).
        use_cudnn: "auto" or False (cuDNN's fused kernel takes one weight
            matrix for the whole batch, which Flipout and vectorised
            prediction do not have).
        bayesian_bias: if True the bias has a posterior and a prior like the
            kernels; if False it is an ordinary (point-estimate) weight.
        **kwargs: `BayesianLayer` arguments (prior, posterior_scale_init,
            kl_weight, seed, deterministic) and base layer arguments.
    """

    # Gates per unit (the columns of the kernels are units * gates).
    gates = None
    # The weight matrices: the input kernel, then the recurrent one.
    matrix_names = ("kernel", "recurrent_kernel")

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        dropout=0.0,
        recurrent_dropout=0.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        use_cudnn="auto",
        bayesian_bias=True,
        **kwargs,
    ):
        reject_replaced_options(self, kwargs)
        name = type(self).__name__
        if dropout:
            raise ValueError(
                f"{name} does not take dropout={dropout!r}: its uncertainty is the weight posterior. For input "
                "dropout as well, put tfp_uq.layers.MCDropout (or keras.layers.Dropout) before the layer."
            )
        if recurrent_dropout:
            raise ValueError(
                f"{name} does not take recurrent_dropout={recurrent_dropout!r}: the weights are drawn once per "
                "sequence, and the posterior of recurrent_kernel is the recurrent uncertainty. Set "
                "recurrent_dropout=0; for dropout on the inputs, put tfp_uq.layers.MCDropout before the layer."
            )
        if use_cudnn not in ("auto", False):
            raise ValueError(
                f"{name} takes use_cudnn='auto' or False, got {use_cudnn!r}: cuDNN's fused kernel needs one "
                "weight matrix for the whole batch, which Flipout and vectorised prediction do not have."
            )
        super().__init__(**kwargs)
        self.units = _validation.positive_int("units", units)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = _validation.boolean("use_bias", use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.bayesian_bias = _validation.boolean("bayesian_bias", bayesian_bias)
        self.return_sequences = _validation.boolean("return_sequences", return_sequences)
        self.return_state = _validation.boolean("return_state", return_state)
        self.go_backwards = _validation.boolean("go_backwards", go_backwards)
        self.stateful = _validation.boolean("stateful", stateful)
        self.unroll = _validation.boolean("unroll", unroll)
        self.zero_output_for_mask = _validation.boolean("zero_output_for_mask", zero_output_for_mask)
        self.bias = None
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self.cell = _StepCell(self._state_size(), self.units, dtype=self.dtype_policy, name="step_cell")
        self.rnn = keras.layers.RNN(
            self.cell,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            unroll=self.unroll,
            zero_output_for_mask=self.zero_output_for_mask,
            dtype=self.dtype_policy,
            name="rnn",
        )

    # ---------------------------------------------------------------- geometry
    def _state_size(self):
        """The cell's `state_size`, as the matching Keras cell has it."""
        raise NotImplementedError(f"{type(self).__name__} must implement _state_size")

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def _split_bias(self, bias):
        """`(input bias, recurrent bias)` of the two matrices (either may be None) from the layer's bias.

        `bias` is None, the bias, or biases stacked on a leading sample axis.
        """
        return bias, None

    def _step(self, recurrent, inputs, states):
        """`(output, new_states)` of one time step: `inputs` is x_t @ W + b, `recurrent` the map h -> h @ U (+ b)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _step")

    def _flip_shape(self, shape, side="input"):
        return shape  # (batch, features): a sign per example and feature, for the whole sequence

    # ----------------------------------------------------------------- weights
    def build(self, sequences_shape, initial_state_shape=None):
        input_dim = sequences_shape[-1]
        if input_dim is None:
            raise ValueError(f"{type(self).__name__} needs a known feature dimension, got {tuple(sequences_shape)}")
        columns = self.gates * self.units
        self.kernel = self.add_posterior("kernel", (input_dim, columns), self.kernel_initializer)
        self.recurrent_kernel = self.add_posterior(
            "recurrent_kernel", (self.units, columns), self.recurrent_initializer
        )
        if self.use_bias and self.bayesian_bias:
            self.bias = self.add_posterior("bias", self._bias_shape(), self._bias_initializer())
        elif self.use_bias:
            self.bias = self.add_weight(name="bias", shape=self._bias_shape(), initializer=self._bias_initializer())
        self.rnn.build(tuple(sequences_shape[:2]) + (columns,))
        self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: input_dim})
        self.built = True

    def _cast(self, value):
        return ops.cast(value, self.compute_dtype)

    def _cast_bias(self, bias):
        return None if bias is None else self._cast(bias)

    def _point_bias(self):
        return None if self.bias is None else ops.convert_to_tensor(self.bias)

    def _mean_bias(self):
        return self.posterior_loc("bias") if "bias" in self._posteriors else self._point_bias()

    # ------------------------------------------------------------------- call
    def call(self, sequences, initial_state=None, mask=None, training=None):
        return super().call(Sequences(sequences, initial_state, mask), training)

    def _cast_inputs(self, inputs):
        state = inputs.initial_state
        if state is not None:
            state = [self._cast(s) for s in (state if isinstance(state, (list, tuple)) else [state])]
        return Sequences(self._cast(inputs.sequences), state, inputs.mask)

    def _run(self, inputs, matrices):
        projected = matrices["kernel"](inputs.sequences)
        recurrent = matrices["recurrent_kernel"]
        self.cell._current.step = lambda x, states: self._step(recurrent, x, states)
        try:
            return self.rnn(projected, initial_state=inputs.initial_state, mask=inputs.mask)
        finally:
            del self.cell._current.step

    def _mean_outputs(self, inputs):
        biases = self._split_bias(self._cast_bias(self._mean_bias()))
        matrices = {
            name: SharedMatrix(self._cast(self.posterior_loc(name)), biases[index])
            for index, name in enumerate(self.matrix_names)
        }
        return self._run(inputs, matrices)

    def _sample_outputs(self, inputs, seed, training=None):
        matrices, kl = self._sequence_matrices(ops.shape(inputs.sequences)[0], seed, training)
        return self._run(inputs, matrices), kl

    def _vectorized_outputs(self, inputs, seed, num_samples):
        def samples(name):
            return self._cast(self.sample_weights(name, _random.substream(seed, self.weight_stream(name)), num_samples))

        if "bias" in self._posteriors:
            bias = samples("bias")
        else:
            point = self._point_bias()
            bias = None if point is None else ops.broadcast_to(self._cast(point), (num_samples,) + tuple(point.shape))
        biases = self._split_bias(bias)
        matrices = {
            name: PerSampleMatrix(samples(name), biases[index], num_samples)
            for index, name in enumerate(self.matrix_names)
        }
        return self._run(inputs, matrices)

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        return self.rnn.compute_output_shape(sequences_shape)

    def compute_mask(self, inputs, mask=None):
        return self.rnn.compute_mask(inputs, mask)

    def reset_state(self):
        """Zeroes the states of a `stateful` layer."""
        self.rnn.reset_state()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "stateful": self.stateful,
                "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask,
                "bayesian_bias": self.bayesian_bias,
            }
        )
        return config
