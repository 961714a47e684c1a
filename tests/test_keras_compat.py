"""The private Keras APIs of `tfp_uq._keras_compat` still mean what tfp_uq needs.

Each test fails, naming the API, when a Keras release changes it.
"""

import keras
import numpy as np

from tfp_uq import _keras_compat, layers


def test_walk_layers_reaches_nested_models_wrappers_and_custom_sublayers():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(2, name="held_by_a_custom_layer")

        def call(self, x):
            return self.inner(x)

    nested = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="in_nested")], name="nested")
    wrapped = layers.MCDropoutWrapper(keras.layers.Dense(3, name="wrapped"), rate=0.1)
    model = keras.Sequential([keras.Input((3,)), nested, wrapped, Block(name="block")])
    names = [layer.name for layer in _keras_compat.walk_layers(model)]
    assert names[0] == model.name
    assert {"nested", "in_nested", "wrapped", "block", "held_by_a_custom_layer"} <= set(names)
    assert model.name not in [layer.name for layer in _keras_compat.walk_layers(model, include_self=False)]


def test_own_losses_are_a_layers_own_add_loss_terms_of_the_current_call():
    class Adds(keras.layers.Layer):
        def call(self, x):
            self.add_loss(keras.ops.sum(x))
            return x

    outer = keras.Sequential([keras.Input((2,)), Adds(name="adds")])
    layer = outer.layers[0]
    outer(np.ones((1, 2), "float32"))
    assert len(_keras_compat.own_losses(layer)) == 1
    assert float(_keras_compat.own_losses(layer)[0]) == 2.0
    outer(np.ones((1, 2), "float32"))  # Keras clears them at each outer call
    assert len(_keras_compat.own_losses(layer)) == 1


def test_history_of_a_symbolic_tensor_names_the_layer_that_made_it():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2, name="maker")
    outputs = dense(inputs)
    layer, node_index, tensor_index = _keras_compat.history_of(outputs)
    assert layer is dense and node_index == 0 and tensor_index == 0
    assert _keras_compat.history_of(np.zeros(2)) == (None, 0, 0)


def test_state_unlocked_lets_a_built_subclassed_model_take_a_metric_and_locks_it_again():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 2), "float32"))
    metric = keras.metrics.Mean(name="attached")
    with _keras_compat.state_unlocked(model):
        model.attached = metric
    assert metric in model.metrics or any(m is metric for m in model._metrics)
    try:
        model.late = keras.metrics.Mean(name="late")
    except ValueError:
        pass  # locked again, as Keras locks a built model
    else:
        raise AssertionError("the model's state should be locked again after state_unlocked")
