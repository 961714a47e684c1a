"""The network function f(x; theta) a Laplace posterior linearises, and its Jacobians per block.

f is the model's output before its link: logits for a classifier (the
pre-activation of a final softmax / sigmoid layer when the model has one),
the output itself for regression (`[loc, scale]` for a `GaussianHead`).

Two readings of a model:

- `GraphFunction` (Sequential and Functional models) reads each block's
  inputs and outputs from the layer graph in one forward pass, and the
  gradients of f with respect to each block's pre-activation by
  vector-Jacobian products, one per cotangent column, vectorised (pfor).
  The Jacobian of f in a block's weights is then the outer product of the
  two (summed over locations), which is what KFAC needs separately.
- `StatelessFunction` (any model, subclassed included) calls
  `model.stateless_call` with the block weights as tensors and takes the
  per-example Jacobian in them by vectorised vector-Jacobian products; it
  gives each block's Jacobian as a dense `(batch, cotangents, rows, columns)`
  tensor, enough for the diagonal and full GGN.

Per block, the Jacobian of `sum_k f_nk M_nkc` (cotangent column c of example
n) in the block's matrix W is one of

- `Factored(patches, grads)`: `sum_t patches[n, t, :] outer grads[n, c, t, :]`;
- `Identity(patches)`: f is this block's pre-activation (the output layer), so
  the gradient at location 0 is the cotangent itself;
- `Dense(jacobian)`: the `(batch, cotangents, rows, columns)` tensor.
"""

import dataclasses
import inspect

import keras
import tensorflow as tf
from keras import ops

from tfp_uq.laplace import _blocks

_PROBABILITY_ACTIVATIONS = (keras.activations.softmax, keras.activations.sigmoid)
# Logits of probabilities that can round to 0 or 1 in float32 are clipped at this level.
_PROBABILITY_FLOOR = 1e-7


@dataclasses.dataclass
class Factored:
    patches: object  # (batch, locations, rows)
    grads: object  # (batch, cotangents, locations, columns)

    def dense(self):
        return ops.einsum("nti,nctj->ncij", self.patches, self.grads)

    def apply(self, deltas):
        """`(samples, batch, cotangents)`: J times each of the `(samples, rows, columns)` weight deltas."""
        return ops.einsum("nti,sij,nctj->snc", self.patches, deltas, self.grads)


@dataclasses.dataclass
class Identity:
    patches: object  # (batch, 1, rows)

    def dense(self, cotangents):
        return ops.einsum("ni,njc->ncij", self.patches[:, 0], cotangents)

    def apply(self, deltas):
        return ops.einsum("ni,sij->snj", self.patches[:, 0], deltas)


@dataclasses.dataclass
class Dense:
    jacobian: object  # (batch, cotangents, rows, columns)

    def dense(self):
        return self.jacobian

    def apply(self, deltas):
        return ops.einsum("ncij,sij->snc", self.jacobian, deltas)


def run_compiled(function, *args):
    """Calls the `tf.function` `function` through its concrete function for `args`.

    TensorFlow traces once per input signature either way; the concrete call
    leaves out the frequent-retracing warning, which counts traces of every
    `tf.function` made from the same code (each posterior and each fit makes
    its own).
    """
    return function.get_concrete_function(*args)(*args)


def default_jit_compile():
    """XLA when a GPU is visible, plain TensorFlow graphs on a CPU, as `tfp_uq.predict` decides.

    On a CPU compiling dominates: on 2 cores XLA took 2-5 s to compile a
    curvature step or a sampler of a small MLP, a plain graph 0.5-1 s.
    """
    return bool(tf.config.list_logical_devices("GPU"))


def _watch(tape, variables):
    for variable in variables:
        tape.watch(variable.value)


def _logits_of_probabilities(outputs):
    """Logits of a model's probability outputs (a softmax's up to a constant, which the GGN ignores)."""
    probs = ops.clip(outputs, _PROBABILITY_FLOOR, 1.0 - _PROBABILITY_FLOOR)
    if outputs.shape[-1] == 1:
        return ops.log(probs) - ops.log1p(-probs)
    return ops.log(probs)


def graph_input(model):
    """The model's symbolic input structure, or None for a subclassed model."""
    if isinstance(model, keras.Sequential):
        inputs = getattr(model, "inputs", None)
        return inputs[0] if inputs and len(inputs) == 1 else None
    try:
        return model.input
    except (AttributeError, ValueError):
        return None


def _replay(model):
    """`(inputs, output, calls)`: the model's graph built again on new inputs from its own layers.

    `calls` maps each layer's id to its `(inputs, outputs)` in that graph,
    one pair per call. Reading `layer.input` instead would be wrong for a
    layer called in several graphs (a loaded Sequential model calls its
    layers more than once while it is built).
    """
    calls = {}

    def record(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        calls.setdefault(id(layer), []).append((args[0] if args else None, outputs))
        return outputs

    if isinstance(model, keras.Sequential):
        spec = model.inputs[0]
        inputs = output = keras.Input(shape=spec.shape[1:], dtype=spec.dtype)
        for layer in model.layers:
            output = record(layer, output)
        return inputs, output, calls
    clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=record)
    return clone.input, keras.tree.flatten(clone.output)[0], calls


def _producer(model, output, calls):
    for layer in model.layers:
        if any(outputs is output for _, outputs in calls.get(id(layer), ())):
            return layer
    return None


class GraphFunction:
    """f and its per-block Jacobians from a Sequential or Functional model's layer graph.

    Args:
        model: the model (one output of shape `(batch, outputs)`).
        blocks: `_blocks.Block`s of layers at the model's top level, each called once.
        logits: whether f is the logits of the model's probability outputs (classification
            without `from_logits`).
        replay: `_replay(model)`, if already built.
    """

    def __init__(self, model, blocks, logits, replay=None):
        self.model, self.blocks = model, list(blocks)
        inputs, output, calls = replay or _replay(model)
        self.producer = producer = _producer(model, output, calls)

        def call_of(layer):
            return calls[id(layer)][0]

        self._head = None  # a final layer with a softmax / sigmoid activation, whose pre-activation is f
        self._source = "output"
        taps = {"source": output}
        if logits:
            activation = getattr(producer, "activation", None)
            if isinstance(producer, keras.layers.Softmax) or (
                isinstance(producer, keras.layers.Activation) and activation in _PROBABILITY_ACTIVATIONS
            ):
                self._source = "producer_input"
                taps["source"] = call_of(producer)[0]
            elif activation in _PROBABILITY_ACTIVATIONS and _blocks.is_supported(producer):
                self._head = next((b for b in self.blocks if b.layer is producer), None) or _blocks.block(producer)
                self._source = "head"
                taps["source"] = call_of(producer)[0]
            else:
                self._source = "log_probabilities"
        # A block is the identity when f is its pre-activation: its gradient in f needs no pass back.
        self.identity = [
            (self._source == "head" and b.layer is producer)
            or (
                self._source in ("output", "producer_input")
                and call_of(b.layer)[1] is taps["source"]
                and b.layer.activation is keras.activations.linear
            )
            for b in self.blocks
        ]
        taps["inputs"] = [call_of(b.layer)[0] for b in self.blocks]
        taps["outputs"] = [call_of(b.layer)[1] for b, identity in zip(self.blocks, self.identity) if not identity]
        self._taps = keras.Model(inputs, taps)

    def _f(self, taps):
        source = taps["source"]
        if self._source == "head":
            return self._head.pre_activation(source, self._head.kernel, self._head.bias)
        if self._source == "log_probabilities":
            return _logits_of_probabilities(source)
        return source

    def jacobians(self, inputs, cotangents):
        """`(f, [per-block Jacobian])` for cotangent columns `cotangents(f) -> (batch, outputs, columns)`.

        Identity blocks come back as `Identity` (their gradient is the
        cotangent itself), the others as `Factored`.
        """
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            _watch(tape, [v for b in self.blocks for v in b.variables])
            taps = self._taps(inputs, training=False)
            f = self._f(taps)
            outputs = taps["outputs"]
            if outputs:  # only then are the cotangents needed (for 1000 classes they are 10^6 floats per example)
                projected = ops.einsum("nk,nkc->c", f, ops.stop_gradient(cotangents(f)))
        grads = iter(tape.jacobian(projected, outputs, experimental_use_pfor=True) if outputs else [])
        jacobians = []
        for block, identity, block_inputs in zip(self.blocks, self.identity, taps["inputs"]):
            patches = block.patches(block_inputs)
            if identity:
                jacobians.append(Identity(patches))
                continue
            grad = _through_activation(block, block_inputs, next(grads))
            jacobians.append(Factored(patches, ops.moveaxis(block.locations(grad), 0, 1)))
        return f, jacobians


def _through_activation(block, inputs, output_grads):
    """Gradients `(cotangents, batch, ...)` at a block's pre-activation from those at its output."""
    activation = block.layer.activation
    if activation is keras.activations.linear:
        return output_grads
    pre_activation = block.pre_activation(inputs, block.kernel, block.bias)
    tiled = ops.broadcast_to(pre_activation[None], ops.shape(output_grads))
    with tf.GradientTape() as tape:
        tape.watch(tiled)
        outputs = activation(tiled)
    return tape.gradient(outputs, tiled, output_gradients=output_grads)


class StatelessFunction:
    """f and its per-block Jacobians through `model.stateless_call`, for any model.

    Args:
        model: the model (one output of shape `(batch, outputs)`).
        blocks: `_blocks.Block`s of the model's layers.
        logits: whether f is the logits of the model's probability outputs.
    """

    def __init__(self, model, blocks, logits):
        self.model, self.blocks, self._logits = model, list(blocks), logits
        self.identity = [False] * len(self.blocks)

    def _f(self, outputs):
        return _logits_of_probabilities(outputs) if self._logits else outputs

    def jacobians(self, inputs, cotangents):
        """`(f, [Dense per block])`; see `GraphFunction.jacobians`."""
        matrices = [b.matrix(b.kernel.value, None if b.bias is None else b.bias.value) for b in self.blocks]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(matrices)
            f = self._f(call_with_matrices(self.model, self.blocks, inputs, matrices))
            columns = ops.stop_gradient(cotangents(f))
            projected = ops.einsum("nk,nkc->nc", f, columns)
        jacobians = tape.jacobian(projected, matrices, experimental_use_pfor=True)
        return f, [Dense(jacobian) for jacobian in jacobians]


def call_with_matrices(model, blocks, inputs, matrices=None):
    """`model(inputs)` (inference mode) with each block's weights replaced by `matrices` (None: its own)."""
    if matrices is None:
        return model(inputs, training=False)
    replaced = {}
    for block, matrix in zip(blocks, matrices):
        kernel, bias = block.weights(matrix)
        replaced[id(block.kernel)] = kernel
        if bias is not None:
            replaced[id(block.bias)] = bias
    trainable = [replaced.get(id(v), v.value) for v in model.trainable_variables]
    non_trainable = [replaced.get(id(v), v.value) for v in model.non_trainable_variables]
    # stateless_call hands its keyword arguments to `call` as they are, unlike `__call__`.
    kwargs = {"training": False} if _takes_training(model) else {}
    outputs, _ = model.stateless_call(trainable, non_trainable, inputs, **kwargs)
    return outputs


def _takes_training(model):
    parameters = inspect.signature(model.call).parameters
    return "training" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def function_for(model, blocks, logits):
    """`GraphFunction` when the model's layer graph holds every block, called once; else `StatelessFunction`."""
    if graph_input(model) is not None:
        replay = _replay(model)
        if all(len(replay[2].get(id(b.layer), ())) == 1 for b in blocks):
            return GraphFunction(model, blocks, logits, replay)
    return StatelessFunction(model, blocks, logits)
