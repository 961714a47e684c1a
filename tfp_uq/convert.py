"""`bayesianize`: turn a trained Keras model into a Bayesian one."""

import keras
import numpy as np

from tfp_uq import _keras_compat, _parameterization, _validation, priors
from tfp_uq.elbo import set_kl_weight
from tfp_uq.layers import _linear, conv, dense, dropout
from tfp_uq.layers._base import BayesianLayer
from tfp_uq.layers.lora import BayesianLoRA

__all__ = ["bayesianize"]


METHODS = ("flipout", "reparameterization", "local_reparameterization", "mc_dropout", "lora")
_DENSE = {
    "flipout": dense.DenseFlipout,
    "reparameterization": dense.DenseReparameterization,
    "local_reparameterization": dense.DenseLocalReparameterization,
}
_CONV = {
    ("flipout", 1): conv.Conv1DFlipout,
    ("flipout", 2): conv.Conv2DFlipout,
    ("flipout", 3): conv.Conv3DFlipout,
    ("reparameterization", 1): conv.Conv1DReparameterization,
    ("reparameterization", 2): conv.Conv2DReparameterization,
    ("reparameterization", 3): conv.Conv3DReparameterization,
}
_CONV_TYPES = {keras.layers.Conv1D: 1, keras.layers.Conv2D: 2, keras.layers.Conv3D: 3}
# Options of the Keras layers that the Bayesian layers do not carry over, and why.
_UNSUPPORTED = {**_linear.REPLACED_OPTIONS, "activity_regularizer": "bayesianize does not carry it over"}


def _is_convertible(layer, method):
    if method == "lora":
        return type(layer) in (keras.layers.Dense, keras.layers.EinsumDense)
    return type(layer) is keras.layers.Dense or type(layer) in _CONV_TYPES


def _check_options(layer):
    config = layer.get_config()
    for option, reason in _UNSUPPORTED.items():
        if config.get(option) is not None:
            raise ValueError(
                f"bayesianize cannot convert layer {layer.name!r}: option {option}="
                f"{config[option]!r} is not supported ({reason}); remove it "
                "or exclude the layer with layer_filter"
            )


def _bayesian_twin(layer, method, options):
    config = layer.get_config()
    common = {
        "name": layer.name,
        "activation": config["activation"],
        "use_bias": config["use_bias"],
        "dtype": config.get("dtype"),
        **options,
    }
    if type(layer) is keras.layers.Dense:
        return _DENSE[method](config["units"], **common)
    rank = _CONV_TYPES[type(layer)]
    if (method, rank) not in _CONV:
        raise ValueError(f"method={method!r} supports Dense layers only; layer {layer.name!r} is a convolution")
    return _CONV[(method, rank)](
        config["filters"],
        config["kernel_size"],
        strides=config["strides"],
        padding=config["padding"],
        data_format=config["data_format"],
        dilation_rate=config["dilation_rate"],
        groups=config.get("groups", 1),
        **common,
    )


def _moped_rho(weight, delta, scale_init):
    if delta is None:
        scale = np.full_like(weight, scale_init)
    else:
        scale = np.maximum(delta * np.abs(weight), 2 * _parameterization.SCALE_FLOOR)
    return _parameterization.raw_scale(scale).astype(weight.dtype)


def bayesianize(
    model,
    method="flipout",
    prior=None,
    layer_filter=None,
    moped_delta=0.1,
    posterior_scale_init=1e-3,
    num_examples=None,
    dropout_rate=0.1,
    lora_rank=4,
    lora_alpha=None,
    seed=None,
):
    """Returns a Bayesian copy of a Sequential or Functional model.

    Dense and Conv1D/2D/3D layers (chosen by `layer_filter`) are replaced by
    their Bayesian twins with the same name, units, activation and shapes;
    every other layer is kept with its weights; nested models are converted
    too. The original model is not changed.

    Posterior means start at the trained weights. With `moped_delta` the
    posterior scales start at delta * |w| (MOPED, Krishnan et al. 2020), so a
    small delta reproduces the original predictions and training refines the
    uncertainty; with `moped_delta=None` they start at `posterior_scale_init`.
    Either way the converted layers keep the softplus scale parameterisation
    (a number for `posterior_scale_init`), in which these starts are exact.

    Args:
        model: a Sequential or Functional Keras model (built).
        method: "flipout", "reparameterization", "local_reparameterization"
            (Dense only) or "mc_dropout" (wraps each chosen layer in
            `MCDropoutWrapper`, dropping its inputs with `dropout_rate`) or
            "lora" (wraps each chosen Dense/EinsumDense layer in
            `BayesianLoRA`: the pretrained kernel is frozen and only a
            Bayesian low-rank update trains).
        prior: the prior of the Bayesian layers (see `tfp_uq.priors.get`).
        layer_filter: callable(layer) -> bool choosing layers among the Dense
            and convolution layers; default all of them.
        moped_delta: MOPED scale factor (> 0), or None.
        posterior_scale_init: posterior scale when `moped_delta` is None.
        num_examples: if given, sets kl_weight = 1 / num_examples.
        dropout_rate: rate for method "mc_dropout".
        lora_rank, lora_alpha: rank and scale for method "lora"; a layer
            with fewer inputs or units than `lora_rank` gets rank
            min(fan_in, units).
        seed: base integer seed; layer i gets seed + i.

    Returns:
        A new Keras model.

    Example:

    >>> bnn = tfp_uq.bayesianize(trained_model, method="flipout", num_examples=len(x_train))
    >>> bnn.compile("adam", "sparse_categorical_crossentropy")
    >>> bnn.fit(x_train, y_train, epochs=5)
    """
    _validation.one_of("method", method, METHODS)
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not (isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"):
        raise TypeError(
            f"bayesianize cannot rewrite the subclassed model {type(model).__name__}: its "
            "computation lives in Python code. Build it with tfp_uq layers instead (e.g. "
            "tfp_uq.layers.DenseFlipout where it creates keras.layers.Dense), or express it "
            "as a Sequential or Functional model."
        )
    if not model.built:
        raise ValueError("model must be built (call it on data or give it an Input) before bayesianize")
    if layer_filter is not None and not callable(layer_filter):
        raise TypeError(f"layer_filter must be a callable(layer) -> bool, got {layer_filter!r}")
    if moped_delta is not None:
        moped_delta = _validation.positive("moped_delta", moped_delta)
    seed = _validation.optional_int("seed", seed)
    prior = priors.get(prior)

    chosen = [
        layer
        for layer in _keras_compat.walk_layers(model, include_self=False)
        if _is_convertible(layer, method) and (layer_filter is None or layer_filter(layer))
    ]
    if not chosen:
        raise ValueError(
            "bayesianize found nothing to convert: the model has no Dense or Conv1D/2D/3D "
            "layers that layer_filter accepts"
        )
    if method == "lora":
        lora_rank = _validation.positive_int("lora_rank", lora_rank)
    for layer in chosen:
        _check_options(layer)
    chosen_ids = {id(layer): i for i, layer in enumerate(chosen)}

    def clone(layer):
        if id(layer) not in chosen_ids:
            return layer.__class__.from_config(layer.get_config())
        layer_seed = None if seed is None else seed + chosen_ids[id(layer)]
        if method in ("mc_dropout", "lora"):
            inner = layer.__class__.from_config(layer.get_config())
            if method == "lora":
                # A small layer (an output layer of a few units) takes the largest rank it has.
                kernel_shape = tuple(layer.kernel.shape)
                rank = min(lora_rank, int(np.prod(kernel_shape[:-1])), kernel_shape[-1])
                return BayesianLoRA(
                    inner,
                    rank=rank,
                    alpha=lora_alpha,
                    prior=prior,
                    posterior_scale_init=posterior_scale_init,
                    seed=layer_seed,
                    name=layer.name,
                )
            return dropout.MCDropoutWrapper(inner, rate=dropout_rate, seed=layer_seed, name=layer.name)
        options = {"prior": prior, "posterior_scale_init": posterior_scale_init, "seed": layer_seed}
        return _bayesian_twin(layer, method, options)

    converted = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(model, converted, chosen_ids, moped_delta, posterior_scale_init)
    if num_examples is not None and method != "mc_dropout":
        set_kl_weight(converted, num_examples=num_examples)
    return converted


def _leaves(model, prefix=()):
    """{path of layer names: layer} for the layers that own weights."""
    leaves = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + (layer.name,)
        if isinstance(layer, (dropout.MCDropoutWrapper, BayesianLoRA)):
            leaves[path] = layer.layer
        elif isinstance(layer, keras.Model):
            leaves.update(_leaves(layer, path))
        else:
            leaves[path] = layer
    return leaves


def _copy_weights(original, converted, chosen_ids, delta, scale_init):
    new_layers = _leaves(converted)
    for path, old in _leaves(original).items():
        new = new_layers[path]
        weights = old.get_weights()
        if id(old) not in chosen_ids or not isinstance(new, BayesianLayer):
            new.set_weights(weights)  # kept layers, and the layers MC dropout wraps
            continue
        new.kernel.assign(weights[0])
        new.posteriors["kernel"].rho.assign(_moped_rho(weights[0], delta, scale_init))
        if old.use_bias:
            new.bias.assign(weights[1])
            new.posteriors["bias"].rho.assign(_moped_rho(weights[1], delta, scale_init))
