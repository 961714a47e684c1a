"""`tfp_uq.laplace.fit`: a Laplace posterior for a Keras model that is already trained."""

import keras
import numpy as np

from tfp_uq import _validation
from tfp_uq import task as _task_rule
from tfp_uq.laplace import _blocks, _data, _function, _likelihoods, _structures, curvature, gridsearch, marglik
from tfp_uq.laplace.posterior import LINKS, PREDICTIVES, LaplacePosterior, layers, likelihood_name, mean_blocks
from tfp_uq.layers.heads import GaussianHead
from tfp_uq.losses import GaussianNLL

__all__ = ["LIKELIHOODS", "PRIOR_METHODS", "SUBSETS", "fit"]

SUBSETS = ("last_layer", "all")
PRIOR_METHODS = ("marglik", "gridsearch")
LIKELIHOODS = ("auto", "classification", "regression")
_SQUARED_ERRORS = {"mse", "meansquarederror"}


def _loss_task(model):
    """ "classification", "regression" or None: what the model's compiled loss says."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, GaussianNLL):
        return "regression"
    if _task_rule._compiled_for_classification(model):  # the cross-entropies the task rule knows
        return "classification"
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(loss, "__name__", None)
    return "regression" if isinstance(name, str) and name.replace("_", "").lower() in _SQUARED_ERRORS else None


def _task(model, likelihood):
    _validation.one_of("likelihood", likelihood, LIKELIHOODS)
    from_loss = _loss_task(model)
    if likelihood == "auto":
        if from_loss is None:
            raise ValueError(
                f"likelihood='auto' reads the model's compiled loss, but the loss {getattr(model, 'loss', None)!r} "
                "is neither a cross-entropy nor mean squared error / tfp_uq.losses.GaussianNLL: pass "
                "likelihood='classification' or 'regression'"
            )
        return from_loss
    if from_loss is not None and from_loss != likelihood:
        raise ValueError(
            f"likelihood={likelihood!r} does not match the model's compiled loss {model.loss!r}, "
            f"which is a {from_loss} loss"
        )
    return likelihood


def _has_gaussian_head(model, function):
    producer = getattr(function, "producer", None) or (model.layers[-1] if model.layers else None)
    return isinstance(producer, GaussianHead) or isinstance(getattr(model, "loss", None), GaussianNLL)


def _subset_layers(model, subset):
    candidates = list(layers(model))
    supported = [layer for layer in candidates if _blocks.is_supported(layer)]
    if isinstance(subset, str):
        _validation.one_of("subset", subset, SUBSETS)
        if not supported:
            raise ValueError(
                f"subset={subset!r}: model {model.name!r} has no {_blocks.SUPPORTED_NAMES} layer whose weights a "
                "Laplace posterior could cover"
            )
        return supported[-1:] if subset == "last_layer" else supported
    if not isinstance(subset, (list, tuple)) or not all(isinstance(name, str) for name in subset):
        raise TypeError(f"subset must be 'last_layer', 'all' or a list of layer names, got {subset!r}")
    if not subset:
        raise ValueError("subset must name at least one layer, got an empty list")
    if len(set(subset)) != len(subset):
        raise ValueError(f"subset names a layer twice: {list(subset)}")
    by_name = {layer.name: layer for layer in candidates}
    chosen = []
    for name in subset:
        if name not in by_name:
            raise ValueError(
                f"subset names {name!r}, which is not a layer of model {model.name!r}; its "
                f"{_blocks.SUPPORTED_NAMES} layers are {[layer.name for layer in supported]}"
            )
        if not _blocks.is_supported(by_name[name]):
            raise ValueError(
                f"subset names {name!r}, a {type(by_name[name]).__name__}; a Laplace posterior covers only "
                f"{_blocks.SUPPORTED_NAMES} layers"
            )
        chosen.append(by_name[name])
    # Model order, so that "all" and the same names in any order give the same posterior.
    return [layer for layer in supported if layer in chosen]


def _prior_arguments(prior_precision, prior_structure, hessian, validation_data):
    """The fixed prior precision (None when it is to be tuned), checked."""
    _validation.one_of("prior_structure", prior_structure, marglik.PRIOR_STRUCTURES)
    if prior_structure == "diag" and hessian == "kron":
        raise ValueError(
            "prior_structure='diag' needs hessian='diag' or 'full': a Kronecker-factored precision "
            "takes one prior precision per layer at most"
        )
    searching = isinstance(prior_precision, str) and prior_precision == "gridsearch"
    if searching != (validation_data is not None):
        raise ValueError(
            "prior_precision='gridsearch' and validation_data go together: the search scores each "
            "prior precision on the validation data"
        )
    if searching and prior_structure != "scalar":
        raise ValueError(f"prior_precision='gridsearch' searches one scalar; got prior_structure={prior_structure!r}")
    if isinstance(prior_precision, str):
        if prior_precision not in PRIOR_METHODS:
            raise ValueError(
                f"prior_precision must be 'marglik', 'gridsearch' or a positive float, got {prior_precision!r}"
            )
        return None
    if isinstance(prior_precision, (list, tuple, np.ndarray)):
        values = np.asarray(prior_precision, dtype="float64")
        if not np.all(values > 0):
            raise ValueError(f"prior_precision must be > 0, got {prior_precision!r}")
        return values
    return _validation.positive("prior_precision", prior_precision)


def _hyperparameters(
    structure, likelihood, statistics, means, prior_precision, prior_structure, fixed_prior, noise_scale
):
    """`(prior precisions, noise precision)`: given, or by marginal likelihood (noise precision 1 without noise)."""
    learn_noise = likelihood.learns_noise and noise_scale is None
    if noise_scale is not None:
        noise_precision = 1.0 / noise_scale**2
    elif learn_noise:
        noise_precision = statistics["num_targets"] / max(statistics["statistic"], 1e-12)  # the maximum likelihood
    else:
        noise_precision = 1.0
    prior_values, noise_precision = marglik.optimize(
        structure,
        likelihood,
        statistics,
        means,
        prior_structure,
        prior_values=fixed_prior,
        noise_precision=noise_precision,
        learn_prior=fixed_prior is None,
        learn_noise=learn_noise,
    )
    return prior_values, float(noise_precision)


def fit(
    model,
    data,
    subset="last_layer",
    hessian="kron",
    likelihood="auto",
    prior_precision="marglik",
    prior_structure="scalar",
    noise_scale=None,
    predictive="glm",
    link="probit",
    batch_size=128,
    verbose="auto",
    jit_compile=None,
    validation_data=None,
):
    """Fits a Laplace approximation to the posterior of a trained Keras model.

    One pass over the training data accumulates the generalised Gauss-Newton
    matrix (GGN) of the likelihood in the covered weights theta (see
    `tfp_uq.laplace.curvature`); the posterior is
    `N(theta*, (h GGN + diag(prior_precision))^-1)` at the trained weights
    theta* (Daxberger et al. 2021, "Laplace Redux", whose defaults these are:
    last-layer KFAC, prior precision by marginal likelihood, GLM predictive
    with the probit link). The model is not changed.

    Args:
        model: a trained, built Keras model (Sequential, Functional or
            subclassed) with one output `(batch, outputs)`, whose covered
            weights sit in Dense, EinsumDense or Conv1D/2D/3D layers.
        data: the training data: a tuple `(x, y)` of arrays (x may be a list
            or dict), a batched `tf.data.Dataset` or a `keras.utils.PyDataset`
            of `(x, y)` batches.
        subset: "last_layer" (the last supported layer), "all" (every
            supported layer) or a list of layer names.
        hessian: "kron" (Kronecker factors per layer; Sequential and
            Functional models), "diag" or "full" (at most
            `FULL_MAX_PARAMETERS` weights).
        likelihood: "auto" (from the compiled loss: cross-entropy ->
            classification; mean squared error or `tfp_uq.losses.GaussianNLL`
            -> regression), "classification" or "regression". Regression
            with a final `tfp_uq.layers.GaussianHead` takes the head's scale
            as the noise; otherwise one noise scale is learned by marginal
            likelihood unless `noise_scale` is given.
        prior_precision: "marglik" (maximise the marginal likelihood),
            "gridsearch" (the scalar of `tfp_uq.laplace.gridsearch.GRID` whose
            GLM predictive has the least NLL on `validation_data`) or a
            positive float (or array for "layerwise" / "diag"). The evidence
            assumes the trained weights are a MAP under the prior: for a
            network trained without weight decay to near-zero loss it can
            prefer far too wide a posterior (laplace-torch alike); there the
            grid search is the safer choice (see `benchmarks/RESULTS.md`).
        prior_structure: "scalar", "layerwise" or "diag" (one per weight;
            not with "kron").
        noise_scale: regression without a GaussianHead: a fixed noise
            standard deviation, or None to learn it by marginal likelihood.
        predictive: "glm" (the linearised network) or "nn" (Monte Carlo over
            weight samples through the network).
        link: classification with "glm": "probit" (closed-form probabilities)
            or "mc" (Monte Carlo over the linearised logits).
        batch_size: examples per batch of the curvature pass (arrays only).
        verbose: progress bar: 0, 1 or "auto" (1).
        jit_compile: compile the curvature pass with XLA. None (default): when
            a GPU is visible (on a CPU compiling takes longer than the pass
            over a small data set; see `benchmarks/laplace.py`).
        validation_data: held-out data for prior_precision="gridsearch", in
            the forms `data` takes.

    Returns:
        A `LaplacePosterior`.

    Example:

    >>> model.fit(x_train, y_train, epochs=20)
    >>> posterior = tfp_uq.laplace.fit(model, (x_train, y_train))
    >>> posterior.prior_precision, posterior.log_marginal_likelihood()
    >>> tuned = tfp_uq.laplace.fit(model, (x_train, y_train), prior_precision="gridsearch",
    ...                            validation_data=(x_val, y_val))
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"tfp_uq.laplace needs the TensorFlow backend; Keras runs {keras.backend.backend()!r}")
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: train it (or call it on a batch) first")
    _validation.one_of("hessian", hessian, curvature.HESSIANS)
    _validation.one_of("predictive", predictive, PREDICTIVES)
    _validation.one_of("link", link, LINKS)
    verbose = 1 if verbose == "auto" else _validation.one_of("verbose", verbose, (0, 1, 2))
    jit_compile = (
        _function.default_jit_compile() if jit_compile is None else _validation.boolean("jit_compile", jit_compile)
    )
    fixed_prior = _prior_arguments(prior_precision, prior_structure, hessian, validation_data)
    if noise_scale is not None:
        noise_scale = _validation.positive("noise_scale", noise_scale)
    task = _task(model, likelihood)
    if link == "mc" and task == "regression":
        raise ValueError("link='mc' applies to classification; regression's GLM predictive is Gaussian in closed form")
    blocks = [_blocks.block(layer) for layer in _subset_layers(model, subset)]
    size = sum(block.size for block in blocks)
    if hessian == "full" and size > _structures.FULL_MAX_PARAMETERS:
        raise ValueError(
            f"hessian='full' covers {size} parameters, more than FULL_MAX_PARAMETERS = "
            f"{_structures.FULL_MAX_PARAMETERS} (its matrices hold parameters^2 numbers); use hessian='kron' "
            "or 'diag', or a smaller subset"
        )
    from_logits = _task_rule.resolve_from_logits(model, None)
    function = _function.function_for(model, blocks, logits=task == "classification" and not from_logits)
    if hessian == "kron" and isinstance(function, _function.StatelessFunction):
        raise ValueError(
            f"hessian='kron' needs each covered layer's inputs, which model {model.name!r} does not expose (a "
            "subclassed model, a layer inside a nested model or a layer called more than once): use hessian='diag' "
            "or 'full', or build the model with the Functional API"
        )
    batches = _data.Batches(data, batch_size)
    first_x, _ = next(iter(batches))
    # Symbolically: some layers (channels-first convolutions on a CPU) run only compiled.
    spec = keras.tree.map_structure(lambda leaf: keras.KerasTensor((None,) + leaf.shape[1:], leaf.dtype), first_x)
    outputs = model.compute_output_spec(spec)
    if keras.tree.is_nested(outputs) or len(outputs.shape) != 2:
        raise ValueError(f"model must have one output of shape (batch, outputs), got {outputs}")
    gaussian_head = task == "regression" and _has_gaussian_head(model, function)
    if gaussian_head and noise_scale is not None:
        raise ValueError("noise_scale is given, but the model ends in a GaussianHead, whose scale is the noise")
    likelihood_object = _likelihoods.for_outputs(task, outputs.shape[-1], gaussian_head)
    totals = curvature.accumulate(
        hessian, function, likelihood_object, batches, verbose=verbose, jit_compile=jit_compile
    )
    count = float(totals.pop("count"))
    statistics = {
        "statistic": float(totals.pop("statistic")),
        "count": count,
        "num_targets": count * (outputs.shape[-1] if likelihood_object.learns_noise else 1),
    }
    structure = _structures.STRUCTURES[hessian]([(block.rows, block.columns) for block in blocks], totals)
    means = mean_blocks(blocks)
    prior_values, noise_precision = _hyperparameters(
        structure, likelihood_object, statistics, means, prior_precision, prior_structure, fixed_prior, noise_scale
    )
    if isinstance(prior_precision, str) and prior_precision == "gridsearch":
        validation = _data.Batches(validation_data, batch_size)
        searched = gridsearch.search(
            function, structure, likelihood_object, validation, noise_precision, jit_compile=jit_compile
        )
        prior_values = np.array([searched])
    config = {
        "layers": [block.name for block in blocks],
        "hessian": hessian,
        "likelihood": likelihood_name(likelihood_object),
        "from_logits": bool(from_logits),
        "predictive": predictive,
        "link": link,
        "prior_structure": prior_structure,
        "noise_precision": noise_precision if likelihood_object.learns_noise else None,
        **statistics,
    }
    prior_values = np.broadcast_to(prior_values, (marglik.num_prior_values(prior_structure, structure.shapes),))
    prior_blocks = marglik.expand_prior(prior_structure, prior_values, structure.shapes)
    arrays = {
        "mean": np.concatenate([theta.reshape(-1) for theta in means]),
        "prior_precision": prior_values.astype("float64"),
        **{f"curvature.{key}": value for key, value in totals.items()},
        **{
            f"posterior.{key}": value
            for key, value in structure.posterior_arrays(noise_precision, prior_blocks).items()
        },
    }
    return LaplacePosterior(model, config, arrays, structure, function)
