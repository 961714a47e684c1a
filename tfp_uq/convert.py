"""`bayesianize`: turn a trained Keras model into a Bayesian one.

Two ways to replace a layer, one rule for which (`layer_filter`):

- Layers of a Sequential or Functional graph (nested models included) are
  replaced in a copy built with `keras.models.clone_model`.
- Layers held as attributes of custom layers (a `MultiHeadAttention`'s
  projections, a keras-hub `TransformerEncoder`'s dense layers), and every
  layer of a model that is not a plain Sequential or Functional one (a
  subclassed model, a keras-hub backbone or task), are replaced in place:
  the attribute (or list item, dict value) that holds the layer is set to
  its Bayesian twin, and Keras's records of the parent's sublayers and graph
  are updated (`tfp_uq._keras_compat.replace_sublayer`), so the parent's own
  `call` runs the twin without being rebuilt. The model's class then saves
  the replacements with its config (`Bayesianized`), so `.keras` files load
  back Bayesian.
"""

import keras
import numpy as np

from tfp_uq import _keras_compat, _parameterization, _validation, priors
from tfp_uq.elbo import set_kl_weight
from tfp_uq.layers import (
    _linear,
    conv,
    conv_transpose,
    dense,
    depthwise_conv,
    dropout,
    einsum_dense,
    embedding,
    gru,
    lstm,
    separable_conv,
)
from tfp_uq.layers._base import BayesianLayer, StochasticLayer
from tfp_uq.layers.lora import BayesianLoRA

__all__ = ["Bayesianized", "bayesianize"]


METHODS = ("flipout", "reparameterization", "local_reparameterization", "mc_dropout", "lora")


def _estimators(flipout, reparameterization):
    return {"flipout": flipout, "reparameterization": reparameterization}


# The Bayesian twin of each Keras parameter layer, by method. An embedding has
# no Flipout form; it takes its row-wise draw under either method.
_TWINS = {
    keras.layers.Dense: {
        **_estimators(dense.DenseFlipout, dense.DenseReparameterization),
        "local_reparameterization": dense.DenseLocalReparameterization,
    },
    keras.layers.Conv1D: _estimators(conv.Conv1DFlipout, conv.Conv1DReparameterization),
    keras.layers.Conv2D: _estimators(conv.Conv2DFlipout, conv.Conv2DReparameterization),
    keras.layers.Conv3D: _estimators(conv.Conv3DFlipout, conv.Conv3DReparameterization),
    keras.layers.Conv1DTranspose: _estimators(
        conv_transpose.Conv1DTransposeFlipout, conv_transpose.Conv1DTransposeReparameterization
    ),
    keras.layers.Conv2DTranspose: _estimators(
        conv_transpose.Conv2DTransposeFlipout, conv_transpose.Conv2DTransposeReparameterization
    ),
    keras.layers.Conv3DTranspose: _estimators(
        conv_transpose.Conv3DTransposeFlipout, conv_transpose.Conv3DTransposeReparameterization
    ),
    keras.layers.DepthwiseConv1D: _estimators(
        depthwise_conv.DepthwiseConv1DFlipout, depthwise_conv.DepthwiseConv1DReparameterization
    ),
    keras.layers.DepthwiseConv2D: _estimators(
        depthwise_conv.DepthwiseConv2DFlipout, depthwise_conv.DepthwiseConv2DReparameterization
    ),
    keras.layers.SeparableConv1D: _estimators(
        separable_conv.SeparableConv1DFlipout, separable_conv.SeparableConv1DReparameterization
    ),
    keras.layers.SeparableConv2D: _estimators(
        separable_conv.SeparableConv2DFlipout, separable_conv.SeparableConv2DReparameterization
    ),
    keras.layers.EinsumDense: _estimators(einsum_dense.EinsumDenseFlipout, einsum_dense.EinsumDenseReparameterization),
    keras.layers.Embedding: _estimators(embedding.EmbeddingReparameterization, embedding.EmbeddingReparameterization),
    keras.layers.LSTM: _estimators(lstm.LSTMFlipout, lstm.LSTMReparameterization),
    keras.layers.GRU: _estimators(gru.GRUFlipout, gru.GRUReparameterization),
}
_LORA_TYPES = (keras.layers.Dense, keras.layers.EinsumDense)
# Options of the Keras layers that the Bayesian layers do not carry over, and why.
_UNSUPPORTED = {**_linear.REPLACED_OPTIONS, "activity_regularizer": "bayesianize does not carry it over"}
# Config entries of the Keras layers that the twins set themselves: the seed
# of an LSTM's dropout (the twin's seed is bayesianize's).
_NOT_CARRIED = ("seed",)


def _is_convertible(layer, method):
    """Whether `layer` is a parameter layer `method` replaces (exact Keras types: a subclass may compute otherwise)."""
    if method == "lora":
        return type(layer) in _LORA_TYPES
    if method == "mc_dropout":
        return type(layer) in _TWINS and type(layer) is not keras.layers.Embedding  # no dropout of indices
    return type(layer) in _TWINS


def _check_options(layer, method):
    if method in _TWINS.get(type(layer), {}) or method in ("mc_dropout", "lora"):
        config = layer.get_config()
        for option, reason in _UNSUPPORTED.items():
            if config.get(option) is not None:
                raise ValueError(
                    f"bayesianize cannot convert layer {layer.name!r}: option {option}="
                    f"{config[option]!r} is not supported ({reason}); remove it "
                    "or exclude the layer with layer_filter"
                )
        return
    raise ValueError(
        f"method={method!r} supports Dense layers only; layer {layer.name!r} is a {type(layer).__name__}: "
        "exclude it with layer_filter or choose method='flipout' or 'reparameterization'"
    )


def _bayesian_twin(layer, method, options):
    """The Bayesian layer of `method` with `layer`'s configuration (unbuilt, no weights yet)."""
    config = {
        key: value for key, value in layer.get_config().items() if key not in _UNSUPPORTED and key not in _NOT_CARRIED
    }
    try:
        return _TWINS[type(layer)][method](**config, **options)
    except ValueError as error:
        raise ValueError(f"bayesianize cannot convert layer {layer.name!r}: {error}") from None


def _moped_rho(weight, delta, scale_init):
    if delta is None:
        scale = np.full_like(weight, scale_init)
    else:
        scale = np.maximum(delta * np.abs(weight), 2 * _parameterization.SCALE_FLOOR)
    return _parameterization.raw_scale(scale).astype(weight.dtype)


def _fill_twin(old, new, delta, scale_init):
    """Sets `new`'s posterior means to `old`'s weights of the same names, and its scales by MOPED."""
    values = {variable.name: np.asarray(keras.ops.convert_to_numpy(variable)) for variable in old.weights}
    for name, posterior in new.posteriors.items():
        posterior.loc.assign(values[name])
        posterior.rho.assign(_moped_rho(values[name], delta, scale_init))
    point_bias = getattr(new, "bias", None)  # bayesian_bias=False
    if point_bias is not None and "bias" not in new.posteriors:
        point_bias.assign(values["bias"])


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
    """Returns a Bayesian version of a trained Keras model.

    Every parameter layer (chosen by `layer_filter`) is replaced by its
    Bayesian twin with the same name, configuration and shapes: Dense,
    Conv1D/2D/3D, Conv1D/2D/3DTranspose, DepthwiseConv1D/2D,
    SeparableConv1D/2D, EinsumDense, LSTM, GRU (Flipout or
    reparameterization) and Embedding (`EmbeddingReparameterization` under
    either method). Only these exact Keras classes are replaced: a subclass
    may compute differently (keras-hub's `ReversibleEmbedding` and
    `PositionEmbedding` stay plain). BatchNormalization and
    LayerNormalization stay plain by design: their scale and shift
    normalise activations and carry little of the model's epistemic
    uncertainty, and a posterior over them would fight the normalisation.
    Every other layer is kept with its weights.

    A Sequential or Functional model is copied (`keras.models.clone_model`;
    the original is not changed). Layers held by custom layers (attention
    projections inside `MultiHeadAttention`, keras-hub transformer blocks)
    and all layers of any other model (subclassed, keras-hub backbones and
    tasks) are replaced in place, in the copy or in `model` itself, which is
    then returned: Keras cannot rebuild those models from a graph. An
    in-place conversion is saved with the model (`Bayesianized`), so a
    `.keras` file loads back Bayesian.

    Posterior means start at the trained weights. With `moped_delta` the
    posterior scales start at delta * |w| (MOPED, Krishnan et al. 2020), so a
    small delta reproduces the original predictions and training refines the
    uncertainty; with `moped_delta=None` they start at `posterior_scale_init`.
    Either way the converted layers keep the softplus scale parameterisation
    (a number for `posterior_scale_init`), in which these starts are exact.

    Args:
        model: a built Keras model.
        method: "flipout", "reparameterization", "local_reparameterization"
            (Dense only) or "mc_dropout" (wraps each chosen layer in
            `MCDropoutWrapper`, dropping its inputs with `dropout_rate`) or
            "lora" (wraps each chosen Dense/EinsumDense layer in
            `BayesianLoRA`: the pretrained kernel is frozen and only a
            Bayesian low-rank update trains).
        prior: the prior of the Bayesian layers (see `tfp_uq.priors.get`).
        layer_filter: callable(layer) -> bool choosing among the parameter
            layers (e.g. only the attention projections, or only a
            classifier head); default all of them.
        moped_delta: MOPED scale factor (> 0), or None.
        posterior_scale_init: posterior scale when `moped_delta` is None.
        num_examples: if given, sets kl_weight = 1 / num_examples.
        dropout_rate: rate for method "mc_dropout".
        lora_rank, lora_alpha: rank and scale for method "lora"; a layer
            with fewer inputs or units than `lora_rank` gets rank
            min(fan_in, units).
        seed: base integer seed; layer i gets seed + i.

    Returns:
        The Bayesian model: a new one for a Sequential or Functional model,
        else `model` itself, converted in place.

    Raises:
        ValueError: a chosen layer has an option its twin cannot honour, or
            is held where it cannot be replaced in place (the error names
            the layer and why).

    Example:

    >>> bnn = tfp_uq.bayesianize(trained_model, method="flipout", num_examples=len(x_train))
    >>> bnn.compile("adam", "sparse_categorical_crossentropy")
    >>> bnn.fit(x_train, y_train, epochs=5)
    >>> backbone = tfp_uq.bayesianize(keras_hub_backbone, method="lora", lora_rank=8)  # in place
    """
    _validation.one_of("method", method, METHODS)
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise ValueError("model must be built (call it on data or give it an Input) before bayesianize")
    if layer_filter is not None and not callable(layer_filter):
        raise TypeError(f"layer_filter must be a callable(layer) -> bool, got {layer_filter!r}")
    if moped_delta is not None:
        moped_delta = _validation.positive("moped_delta", moped_delta)
    seed = _validation.optional_int("seed", seed)
    if method == "lora":
        lora_rank = _validation.positive_int("lora_rank", lora_rank)
    conversion = _Conversion(
        method, priors.get(prior), layer_filter, moped_delta, posterior_scale_init, dropout_rate, lora_rank, lora_alpha
    )
    chosen = conversion.choose(model)
    if not chosen:
        raise ValueError(
            "bayesianize found nothing to convert: the model has no parameter layers (Dense, convolutions, "
            "EinsumDense, Embedding, LSTM, GRU) that layer_filter accepts"
        )
    seeds = {id(layer): None if seed is None else seed + i for i, layer in enumerate(chosen)}
    if _is_graph_model(model):
        converted = conversion.clone(model, seeds)
        held = conversion.choose(converted)  # layers of custom layers, which the clone kept plain
        seeds = {id(layer): None if seed is None else seed + len(chosen) + i for i, layer in enumerate(held)}
    else:
        converted, held = model, chosen
    if held:
        conversion.in_place(converted, held, seeds)
    if num_examples is not None and method != "mc_dropout":
        set_kl_weight(converted, num_examples=num_examples)
    return converted


def _is_graph_model(model):
    return isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"


class _Conversion:
    """What one `bayesianize` call does to a layer: which it chooses, the twin it makes, the weights it copies."""

    def __init__(self, method, prior, layer_filter, delta, scale_init, dropout_rate, lora_rank, lora_alpha):
        self.method, self.prior, self.layer_filter = method, prior, layer_filter
        self.delta, self.scale_init = delta, scale_init
        self.dropout_rate, self.lora_rank, self.lora_alpha = dropout_rate, lora_rank, lora_alpha

    @property
    def wraps(self):
        """Whether the replacement wraps the layer (MC dropout, LoRA) rather than being its twin."""
        return self.method in ("mc_dropout", "lora")

    def choose(self, model):
        """The parameter layers of `model` to convert, in walk order (not those inside tfp_uq layers)."""
        inside_ours = {
            id(inner)
            for layer in _keras_compat.walk_layers(model)
            if isinstance(layer, StochasticLayer)
            for inner in _keras_compat.walk_layers(layer, include_self=False)
        }
        chosen = [
            layer
            for layer in _keras_compat.walk_layers(model, include_self=False)
            if id(layer) not in inside_ours
            and _is_convertible(layer, self.method)
            and (self.layer_filter is None or self.layer_filter(layer))
        ]
        for layer in chosen:
            _check_options(layer, self.method)
        return chosen

    def replacement(self, layer, seed, inner):
        """The layer that takes `layer`'s place; wrappers wrap `inner` (a copy, or `layer` itself in place)."""
        if self.method == "mc_dropout":
            return dropout.MCDropoutWrapper(inner, rate=self.dropout_rate, seed=seed, name=layer.name)
        if self.method == "lora":
            # A small layer (an output layer of a few units) takes the largest rank it has.
            kernel_shape = tuple(layer.kernel.shape)
            rank = min(self.lora_rank, int(np.prod(kernel_shape[:-1])), kernel_shape[-1])
            return BayesianLoRA(
                inner,
                rank=rank,
                alpha=self.lora_alpha,
                prior=self.prior,
                posterior_scale_init=self.scale_init,
                seed=seed,
                name=layer.name,
                dtype=layer.dtype_policy,
            )
        options = {"prior": self.prior, "posterior_scale_init": self.scale_init, "seed": seed}
        return _bayesian_twin(layer, self.method, options)

    def fill(self, old, new):
        """Copies `old`'s weights into a twin `new` (wrappers keep their wrapped layer's)."""
        if isinstance(new, BayesianLayer) and not isinstance(new, BayesianLoRA):
            _fill_twin(old, new, self.delta, self.scale_init)

    # ---------------------------------------------------------------- a copy
    def clone(self, model, seeds):
        def copy(layer):
            return layer.__class__.from_config(layer.get_config())

        def clone_layer(layer):
            if id(layer) not in seeds:
                return copy(layer)
            return self.replacement(layer, seeds[id(layer)], copy(layer) if self.wraps else None)

        converted = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
        new_layers = _leaves(converted)
        for path, old in _leaves(model).items():
            new = new_layers[path]
            if id(old) in seeds and isinstance(new, BayesianLayer):
                self.fill(old, new)
            else:
                new.set_weights(old.get_weights())  # kept layers, and the layers wrappers wrap
        return converted

    # -------------------------------------------------------------- in place
    def in_place(self, model, chosen, seeds):
        """Replaces each chosen layer of `model` where its parents hold it; records it for saving."""
        walk = _keras_compat.walk_layers(model, include_self=False)
        index = {id(layer): i for i, layer in enumerate(walk)}
        record = {"indices": [], "layers": []}
        for layer in chosen:
            build_config = layer.get_build_config()
            if not layer.built or build_config is None:
                raise ValueError(
                    f"bayesianize cannot convert layer {layer.name!r} in place: it is not built, so there are "
                    "no input shapes to build its Bayesian twin with; call the model on data first"
                )
            new = self.replacement(layer, seeds[id(layer)], layer if self.wraps else None)
            new.build_from_config(build_config)  # a wrapper keeps `layer`, built, with its weights
            self.fill(layer, new)
            replace_layer(model, layer, new)
            record["indices"].append(index[id(layer)])
            record["layers"].append(keras.saving.serialize_keras_object(new))  # with its build config
        Bayesianized.mark(model, record)


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


# ------------------------------------------------------------ replacing a layer
_MAX_NESTING = 6  # lists of lists of layers: how deep an attribute's containers are searched


def _substituted(value, old, new, skip, depth=0):
    """`(value with old replaced by new, whether it was)`: lists and dicts in place, tuples rebuilt."""
    if value is old:
        return new, True
    if depth > _MAX_NESTING or id(value) in skip or isinstance(value, keras.layers.Layer):
        return value, False
    changed = False
    if isinstance(value, list):
        for i, item in enumerate(value):
            item, hit = _substituted(item, old, new, skip, depth + 1)
            if hit:
                list.__setitem__(value, i, item)  # the tracker already holds `new` (replace_sublayer)
                changed = True
    elif isinstance(value, dict):
        for key, item in list(value.items()):
            item, hit = _substituted(item, old, new, skip, depth + 1)
            if hit:
                dict.__setitem__(value, key, item)
                changed = True
    elif isinstance(value, tuple):
        items = [_substituted(item, old, new, skip, depth + 1) for item in value]
        if any(hit for _, hit in items):
            rebuilt = [item for item, _ in items]
            return (value._make(rebuilt) if hasattr(value, "_fields") else type(value)(rebuilt)), True
    return value, changed


def _contains(value, old, skip, depth=0):
    if value is old:
        return True
    if depth > _MAX_NESTING or id(value) in skip or isinstance(value, keras.layers.Layer):
        return False
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, (list, tuple)) and any(_contains(item, old, skip, depth + 1) for item in value)


def replace_layer(root, old, new):
    """Puts `new` wherever a layer of `root` holds `old`: attributes, their lists, tuples and dicts, graphs.

    Raises:
        ValueError: a layer holds `old` somewhere else (a set, another
            object), where the replacement would not reach its `call`; the
            error names both. Nothing is changed then.
    """
    parents = []
    for parent in _keras_compat.walk_layers(root):
        skip = _keras_compat.bookkeeping(parent)
        names = [
            name
            for name, value in parent.__dict__.items()
            if name != "_tracker" and id(value) not in skip and _contains(value, old, skip)
        ]
        tracked = any(child is old for child in _keras_compat.sublayers(parent))
        if tracked and not names and not _keras_compat.in_graph(parent, old):
            raise ValueError(
                f"bayesianize cannot convert layer {old.name!r} in place: {type(parent).__name__} {parent.name!r} "
                "holds it other than as an attribute, list, tuple or dict item, so its call would not see the "
                "replacement; exclude the layer with layer_filter"
            )
        if tracked or names:
            parents.append((parent, names, skip))
    for parent, names, skip in parents:
        _keras_compat.replace_sublayer(parent, old, new)  # first: the tracker keeps the layers' order
        for name in names:
            value, _ = _substituted(parent.__dict__[name], old, new, skip)
            if parent.__dict__[name] is not value:
                with _keras_compat.state_unlocked(parent):
                    setattr(parent, name, value)


# ------------------------------------------------------------------- saving it
_CLASSES = {}


def _plain_class(cls):
    return next(base for base in cls.__mro__ if not issubclass(base, Bayesianized))


@keras.saving.register_keras_serializable(package="tfp_uq")
class Bayesianized:
    """Mixin of a model whose layers `bayesianize` replaced in place: saves and restores the replacements.

    A converted model's class becomes a subclass of this mixin and of its
    own class (`BertBackbone`, `Functional`...), with the same name. Its
    config is the original config plus, per `bayesianize` call, which
    layers (by position in Keras's walk of the model's layers) were
    replaced, and by what (each replacement's config and build config). Loading rebuilds the
    original model from its config, replaces those layers again and lets
    Keras load the weights into the Bayesian layers, so
    `keras.saving.load_model` needs only `import tfp_uq`.
    """

    _tfp_uq_conversions = ()

    @classmethod
    def mark(cls, model, record):
        """Makes `model`'s class Bayesianized and records one conversion on it."""
        base = _plain_class(type(model))
        if base not in _CLASSES:
            _CLASSES[base] = type(base.__name__, (Bayesianized, base), {"__module__": base.__module__})
            _CLASSES[base].__qualname__ = base.__qualname__
            # Serialised under this mixin's registered name, so loading comes back here.
            _keras_compat.register_name(_CLASSES[base], keras.saving.get_registered_name(Bayesianized))
        model.__class__ = _CLASSES[base]
        model._tfp_uq_conversions = list(model._tfp_uq_conversions) + [record]

    def get_config(self):
        base = _plain_class(type(self))
        plain = {
            "module": base.__module__,
            "class_name": base.__name__,
            "registered_name": keras.saving.get_registered_name(base),
            "config": base.get_config(self),
        }
        build_config = base.get_build_config(self)
        if build_config is not None:
            plain["build_config"] = build_config
        return {"model": plain, "conversions": [dict(record) for record in self._tfp_uq_conversions]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = keras.saving.deserialize_keras_object(config["model"], custom_objects=custom_objects)
        for record in config["conversions"]:
            walk = _keras_compat.walk_layers(model, include_self=False)
            olds = [walk[i] for i in record["indices"]]
            for old, layer_config in zip(olds, record["layers"]):
                replace_layer(
                    model, old, keras.saving.deserialize_keras_object(layer_config, custom_objects=custom_objects)
                )
            cls.mark(model, record)
        return model
