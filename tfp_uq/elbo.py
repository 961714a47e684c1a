"""Whole-model helpers for the ELBO: find Bayesian layers, set the KL weight."""

import keras

from tfp_uq import _keras_compat, _kl_tracking, _validation
from tfp_uq.layers._base import StochasticLayer, VariationalLayer

__all__ = ["bayesian_layers", "set_kl_weight", "set_deterministic"]


def bayesian_layers(model):
    """All layers of `model` that add a KL term (`VariationalLayer`s), in order.

    Example:

    >>> len(tfp_uq.bayesian_layers(model))
    2
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model must be a Keras model or layer, got {type(model).__name__}")
    if isinstance(model, VariationalLayer):
        return [model]
    return [
        layer for layer in _keras_compat.walk_layers(model, include_self=False) if isinstance(layer, VariationalLayer)
    ]


def set_kl_weight(model, kl_weight=None, *, num_examples=None):
    """Sets the KL weight of every Bayesian layer of `model`.

    `model.fit` averages the data loss over each batch, so the negative ELBO
    per example weights the KL by 1 / N for N training examples: pass
    `num_examples=N`, or an explicit `kl_weight`. Call it once before `fit`.

    It also makes `fit` report the weighted KL as `kl_loss` and, with the
    tfp_uq callbacks, the data term as `data_loss`.

    Args:
        model: a Keras model or layer.
        kl_weight: the weight (>= 0); give this or `num_examples`.
        num_examples: number of training examples N (positive integer);
            sets kl_weight = 1 / N.

    Returns:
        The weight that was set.

    Example:

    >>> tfp_uq.set_kl_weight(model, num_examples=len(x_train))
    """
    if (kl_weight is None) == (num_examples is None):
        raise ValueError("Give exactly one of kl_weight and num_examples")
    if num_examples is not None:
        kl_weight = 1.0 / _validation.positive_int("num_examples", num_examples)
    kl_weight = _validation.non_negative("kl_weight", kl_weight)
    layers = bayesian_layers(model)
    if not layers:
        raise ValueError("model has no tfp_uq Bayesian layers whose KL weight could be set")
    for layer in layers:
        layer.kl_weight = kl_weight
    if isinstance(model, keras.Model):
        _kl_tracking.attach(model, layers)
    return kl_weight


def set_deterministic(model, deterministic=True):
    """Switches every stochastic tfp_uq layer of `model` to point outputs.

    With `deterministic=True` Bayesian layers use their posterior means and
    MC dropout layers pass inputs through, giving a point prediction; `False`
    restores sampling. Compiled train, test and
    predict functions are reset so the change takes effect.

    Example:

    >>> tfp_uq.set_deterministic(model)            # point predictions
    >>> tfp_uq.set_deterministic(model, False)     # back to sampling
    """
    _validation.boolean("deterministic", deterministic)
    for layer in _keras_compat.walk_layers(model):
        if isinstance(layer, StochasticLayer):
            layer.deterministic = deterministic
    for attribute in ("train_function", "test_function", "predict_function"):
        if hasattr(model, attribute):
            setattr(model, attribute, None)
    return model
