"""HMC and NUTS over the weights of small Keras models (TensorFlow Probability).

The log-density of the weights w of a model f is

    log p(w | x, y) = sum_n log p(y_n | f(x_n; w)) + sum_j log p(w_j) + const,

evaluated with `model.stateless_call` on the sampled weights, vectorised over
chains and compiled with XLA. Sampling runs in chunks under a progress bar.
"""

import math
import os
import time

import keras
import numpy as np

from tfp_uq import _summaries, _validation, priors
from tfp_uq.prediction import PredictionResult

__all__ = ["PosteriorSamples", "sample_posterior"]


KERNELS = ("nuts", "hmc")
LIKELIHOODS = ("gaussian", "categorical")
MAX_PARAMETERS = 100_000


def _tf():
    import tensorflow as tf

    return tf


def _tfp():
    import tensorflow_probability as tfp

    return tfp


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise ValueError("model must be built (give it an Input or call it on data)")
    stochastic = [layer.name for layer in model._flatten_layers() if hasattr(layer, "seed_generator")]
    if stochastic:
        raise ValueError(
            f"sample_posterior samples the weights of ordinary Keras layers; layers {stochastic} "
            "are stochastic tfp_uq layers, which VI trains instead"
        )
    count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"model has {count} parameters; HMC/NUTS is practical up to about {MAX_PARAMETERS}. "
            "Use the variational layers (tfp_uq.layers.DenseFlipout, tfp_uq.bayesianize) instead"
        )
    return count


def _priors_by_variable(model, prior):
    """One prior per trainable variable, from a prior or a {layer name: prior} dict."""
    chosen = []
    layer_of = {}
    for layer in model._flatten_layers(include_self=False):
        for variable in layer.trainable_variables:
            layer_of.setdefault(id(variable), layer.name)
    for variable in model.trainable_variables:
        if isinstance(prior, dict):
            name = layer_of.get(id(variable))
            if name not in prior:
                raise ValueError(f"prior: no prior given for layer {name!r}; known: {sorted(prior)}")
            item = priors.get(prior[name])
        else:
            item = priors.get(prior)
        if type(item).build is not priors.Prior.build:
            raise ValueError(
                f"prior: {type(item).__name__} learns variables, which HMC does not sample; use "
                "Normal, ScaleMixtureNormal or DistributionPrior"
            )
        chosen.append(item)
    return chosen


class _Likelihood:
    """Log-likelihood of targets given model outputs (and maybe a noise scale)."""

    def __init__(self, likelihood, noise_scale, from_logits):
        if callable(likelihood):
            self.kind, self.function = "callable", likelihood
        else:
            self.kind = _validation.one_of("likelihood", likelihood, LIKELIHOODS)
        self.noise_scale = None if noise_scale is None else _validation.positive("noise_scale", noise_scale)
        self.from_logits = _validation.boolean("from_logits", from_logits)
        # A Gaussian with unknown noise samples log(noise scale) too.
        self.samples_noise = self.kind == "gaussian" and self.noise_scale is None

    def check_shapes(self, y, output_shape):
        if self.kind == "gaussian" and tuple(y.shape) != tuple(output_shape):
            raise ValueError(f"y has shape {tuple(y.shape)} but the model outputs {tuple(output_shape)}")
        if self.kind == "categorical":
            if y.ndim != 1 or y.shape[0] != output_shape[0]:
                raise ValueError(f"y must hold {output_shape[0]} integer labels, got shape {tuple(y.shape)}")
            num_classes = max(output_shape[-1], 2)  # one unit: a binary classifier's P(class 1)
            if y.min() < 0 or y.max() >= num_classes:
                raise ValueError(f"labels must be in [0, {num_classes - 1}]")

    def log_prob(self, y, outputs, log_noise=None):
        tf = _tf()
        if self.kind == "callable":
            return tf.reduce_sum(self.function(y, outputs))
        if self.kind == "categorical":
            outputs = _summaries.two_classes(outputs, self.from_logits)  # a binary classifier's one unit
            log_p = tf.nn.log_softmax(outputs) if self.from_logits else tf.math.log(outputs + 1e-12)
            return tf.reduce_sum(tf.gather(log_p, y, axis=-1, batch_dims=1))
        log_scale = log_noise if log_noise is not None else math.log(self.noise_scale)
        z = (y - outputs) * tf.exp(-log_scale)
        count = tf.cast(tf.size(y), outputs.dtype)
        return -0.5 * tf.reduce_sum(z * z) - count * (log_scale + 0.5 * math.log(2 * math.pi))

    @staticmethod
    def noise_prior_log_prob(log_noise):
        # HalfCauchy(0, 1) on the noise scale s, in log space: + log s (Jacobian).
        tf = _tf()
        s = tf.exp(log_noise)
        return math.log(2 / math.pi) - tf.math.log1p(s * s) + log_noise


class PosteriorSamples:
    """Posterior samples of a model's weights, with predictions and diagnostics.

    Attributes:
        samples: list of arrays, one per trainable variable, each of shape
            `(num_results, num_chains) + variable.shape`.
        noise_scale: array `(num_results, num_chains)` of sampled Gaussian
            noise scales, or the fixed scale (float), or None.
        diagnostics: dict with `ess` and `rhat` (one array per variable),
            `min_ess`, `max_rhat`, `acceptance_rate`, `num_divergences`,
            `step_size`, `seconds`.
    """

    def __init__(self, model, samples, likelihood, noise_scale, diagnostics):
        self.model = model
        self.samples = samples
        self.likelihood = likelihood
        self.noise_scale = noise_scale
        self.diagnostics = diagnostics

    @property
    def num_samples(self):
        return int(self.samples[0].shape[0] * self.samples[0].shape[1])

    def _flat(self):
        return [s.reshape((-1,) + s.shape[2:]) for s in self.samples]

    def posterior_outputs(self, x, batch_size=1024):
        """Model outputs for every posterior sample: `(num_samples, n, ...)`."""
        tf = _tf()
        x = np.asarray(x, dtype="float32")
        flat = [tf.constant(s) for s in self._flat()]
        non_trainable = [v.value for v in self.model.non_trainable_variables]

        @tf.function(jit_compile=True)
        def outputs(batch):
            def one(weights):
                return self.model.stateless_call(list(weights), non_trainable, batch, training=False)[0]

            return tf.vectorized_map(one, flat)

        chunks = [outputs(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks, axis=1).astype("float64")

    def predict(self, x, task=None, batch_size=1024):
        """The posterior predictive as a `PredictionResult` (same as `tfp_uq.predict`).

        For a Gaussian likelihood the aleatoric variance is the noise
        variance (sampled or fixed), the epistemic one the variance of the
        model's output over posterior samples.
        """
        samples = self.posterior_outputs(x, batch_size)
        if task is None:
            task = "regression" if self.likelihood.kind == "gaussian" else "classification"
        _validation.one_of("task", task, ("classification", "regression"))
        if task == "classification":
            fields = _summaries.classification(samples, self.likelihood.from_logits)
            fields["mean"] = fields["probs"]
        else:
            fields = _summaries.regression(samples, gaussian=False)
            if self.likelihood.kind == "gaussian":
                noise = np.asarray(self.noise_scale, dtype="float64").reshape(-1)
                fields["aleatoric_variance"] = np.full_like(np.asarray(fields["mean"]), np.mean(noise**2))
                fields["variance"] = fields["aleatoric_variance"] + np.asarray(fields["epistemic_variance"])
        fields = {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in fields.items()}
        return PredictionResult(task=task, num_samples=samples.shape[0], **fields)

    def save(self, path):
        """Writes samples, noise scales and diagnostics to an `.npz` file."""
        arrays = {f"w{i}": s for i, s in enumerate(self.samples)}
        if self.noise_scale is not None:
            arrays["noise_scale"] = np.asarray(self.noise_scale)
        for key, value in self.diagnostics.items():
            if isinstance(value, list):
                for i, item in enumerate(value):
                    arrays[f"diag_{key}_{i}"] = np.asarray(item)
            else:
                arrays[f"diag_{key}"] = np.asarray(value)
        meta = {
            "likelihood": self.likelihood.kind,
            "from_logits": self.likelihood.from_logits,
            "noise_given": self.likelihood.noise_scale,
        }
        arrays["meta"] = np.asarray(repr(meta))
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path, model):
        """Reads samples written by `save`, for the same model architecture."""
        import ast

        data = np.load(path if os.fspath(path).endswith(".npz") else f"{os.fspath(path)}.npz")
        meta = ast.literal_eval(str(data["meta"]))
        samples = [data[f"w{i}"] for i in range(len(model.trainable_variables))]
        for variable, sample in zip(model.trainable_variables, samples):
            if tuple(sample.shape[2:]) != tuple(variable.shape):
                raise ValueError("the saved samples do not match the model's variables")
        likelihood = _Likelihood(
            meta["likelihood"] if meta["likelihood"] != "callable" else "gaussian",
            meta["noise_given"],
            meta["from_logits"],
        )
        diagnostics = {}
        for key in data.files:
            if key.startswith("diag_"):
                name = key[5:]
                head, _, tail = name.rpartition("_")
                if head in ("ess", "rhat") and tail.isdigit():
                    diagnostics.setdefault(head, []).append(data[key])
                else:
                    diagnostics[name] = data[key]
        noise = data["noise_scale"] if "noise_scale" in data.files else None
        return cls(model, samples, likelihood, noise, diagnostics)


def sample_posterior(
    model,
    x,
    y,
    likelihood="gaussian",
    noise_scale=None,
    from_logits=False,
    prior=None,
    kernel="nuts",
    num_chains=4,
    num_burnin=500,
    num_results=500,
    step_size=0.01,
    num_leapfrog_steps=10,
    max_tree_depth=10,
    target_accept=0.8,
    jitter=0.01,
    chunk_size=100,
    seed=0,
    jit_compile=True,
    progress=True,
):
    """Samples the posterior of a small Keras model's weights with NUTS or HMC.

    Chains start at the model's current weights (e.g. after MAP or VI
    training) plus Normal(0, jitter^2) noise. The step size adapts by dual
    averaging during the first 80% of burn-in.

    Args:
        model: a built Keras model of ordinary layers (up to ~100k weights).
        x, y: training inputs and targets (integer labels for "categorical").
        likelihood: "gaussian", "categorical" (a model with one output
            unit is a binary classifier: P(class 1), or its logit) or a
            callable(y, outputs) returning log-likelihoods (summed).
        noise_scale: Gaussian noise standard deviation; None samples it
            (half-Cauchy(0, 1) prior).
        from_logits: categorical outputs are logits rather than probabilities.
        prior: a `tfp_uq.priors` prior for every weight, or a dict
            {layer name: prior}; default N(0, 1).
        kernel: "nuts" or "hmc".
        num_chains, num_burnin, num_results: chains and steps per chain.
        step_size: initial leapfrog step size.
        num_leapfrog_steps: leapfrog steps per HMC proposal.
        max_tree_depth: NUTS tree depth limit.
        target_accept: acceptance rate targeted by step-size adaptation.
        jitter: standard deviation of the noise added to the starting weights.
        chunk_size: steps per compiled call (the progress bar's granularity).
        seed: integer seed.
        jit_compile: compile the sampler with XLA.
        progress: show a progress bar.

    Returns:
        `PosteriorSamples`.

    Example:

    >>> posterior = tfp_uq.inference.sample_posterior(model, x, y, noise_scale=0.1)
    >>> posterior.diagnostics["max_rhat"], posterior.predict(x_test).std
    """
    tf, tfp = _tf(), _tfp()
    _check_model(model)
    kernel = _validation.one_of("kernel", kernel, KERNELS)
    like = _Likelihood(likelihood, noise_scale, from_logits)
    num_chains = _validation.positive_int("num_chains", num_chains)
    num_burnin = _validation.positive_int("num_burnin", num_burnin)
    num_results = _validation.positive_int("num_results", num_results)
    step_size = _validation.positive("step_size", step_size)
    num_leapfrog_steps = _validation.positive_int("num_leapfrog_steps", num_leapfrog_steps)
    max_tree_depth = _validation.positive_int("max_tree_depth", max_tree_depth)
    target_accept = _validation.open_unit_interval("target_accept", target_accept)
    jitter = _validation.non_negative("jitter", jitter)
    chunk_size = _validation.positive_int("chunk_size", chunk_size)
    seed = _validation.optional_int("seed", seed) or 0

    x = np.asarray(x, dtype="float32")
    y = np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of examples, got {x.shape[0]} and {y.shape[0]}")
    output_shape = tuple(model.compute_output_shape(x.shape))
    like.check_shapes(y, output_shape)
    y = y.astype("int32") if like.kind == "categorical" else y.astype("float32")
    prior_list = _priors_by_variable(model, prior)

    x_t, y_t = tf.constant(x), tf.constant(y)
    non_trainable = [v.value for v in model.non_trainable_variables]
    num_weights = len(model.trainable_variables)

    def log_prob_one(state):
        weights, extra = list(state[:num_weights]), state[num_weights:]
        outputs = model.stateless_call(weights, non_trainable, x_t, training=False)[0]
        log_noise = extra[0] if like.samples_noise else None
        total = like.log_prob(y_t, outputs, log_noise)
        for weight, weight_prior in zip(weights, prior_list):
            total += weight_prior.log_prob(weight)
        if like.samples_noise:
            total += like.noise_prior_log_prob(log_noise)
        return total

    def target_log_prob(*state):
        if num_chains == 1:  # vectorized_map over one chain yields sparse gradients
            return log_prob_one([s[0] for s in state])[None]
        return tf.vectorized_map(log_prob_one, list(state))

    rng = np.random.default_rng(seed)
    initial = [
        (np.asarray(v.numpy())[None] + jitter * rng.normal(size=(num_chains,) + tuple(v.shape))).astype("float32")
        for v in model.trainable_variables
    ]
    if like.samples_noise:
        initial.append(
            np.full((num_chains,), math.log(0.1), "float32") + jitter * rng.normal(size=num_chains).astype("float32")
        )
    initial = [tf.constant(s) for s in initial]
    start = target_log_prob(*initial).numpy()
    if not np.all(np.isfinite(start)):
        raise ValueError(
            "the log-density is not finite at the starting weights; check the data, the "
            "likelihood (e.g. probabilities of exactly 0) and the prior"
        )

    if kernel == "nuts":
        inner = tfp.mcmc.NoUTurnSampler(target_log_prob, step_size=step_size, max_tree_depth=max_tree_depth)
    else:
        inner = tfp.mcmc.HamiltonianMonteCarlo(
            target_log_prob, step_size=step_size, num_leapfrog_steps=num_leapfrog_steps
        )
    sampler = tfp.mcmc.DualAveragingStepSizeAdaptation(
        inner, num_adaptation_steps=max(1, int(0.8 * num_burnin)), target_accept_prob=target_accept
    )

    def trace(_, results):
        inner_results = results.inner_results
        divergent = getattr(inner_results, "has_divergence", None)
        if divergent is None:  # HMC: a huge energy error counts as a divergence
            divergent = inner_results.log_accept_ratio < -1000.0
        # NUTS always "accepts" a point of its trajectory: report the mean
        # Metropolis acceptance probability, min(1, exp(log ratio)), instead.
        acceptance = tf.exp(tf.minimum(inner_results.log_accept_ratio, 0.0))
        return acceptance, divergent, results.new_step_size

    functions = {}

    def run(steps, state, results, chunk_seed):
        if steps not in functions:

            @tf.function(jit_compile=jit_compile, autograph=False)
            def chunk(state, results, chunk_seed):
                return tfp.mcmc.sample_chain(
                    steps,
                    state,
                    previous_kernel_results=results,
                    kernel=sampler,
                    trace_fn=trace,
                    return_final_kernel_results=True,
                    seed=chunk_seed,
                )

            functions[steps] = chunk
        return functions[steps](state, results, chunk_seed)

    results = sampler.bootstrap_results(initial)
    state = initial
    total = num_burnin + num_results
    bar = keras.utils.Progbar(total, unit_name="step") if progress else None
    kept, accepted, divergent, done = [], [], [], 0
    started = time.perf_counter()
    while done < total:
        # Chunks never straddle the end of burn-in, so kept samples are exact.
        boundary = num_burnin if done < num_burnin else total
        steps = min(chunk_size, boundary - done)
        out = run(steps, state, results, tf.constant([seed, done], dtype="int32"))
        chain_states, (acceptance, has_divergence, step_sizes), results = (
            out.all_states,
            out.trace,
            out.final_kernel_results,
        )
        state = [s[-1] for s in chain_states]
        if done >= num_burnin:
            kept.append([s.numpy() for s in chain_states])
            accepted.append(acceptance.numpy())
            divergent.append(has_divergence.numpy())
        done += steps
        if bar is not None:
            bar.update(done, values=[("accept", float(np.mean(acceptance.numpy())))])
    seconds = time.perf_counter() - started

    stacked = [np.concatenate([chunk[i] for chunk in kept], axis=0) for i in range(len(initial))]
    weights, noise = stacked[:num_weights], None
    if like.samples_noise:
        noise = np.exp(stacked[num_weights])
    elif like.kind == "gaussian":
        noise = like.noise_scale
    diagnostics = _diagnostics(stacked, accepted, divergent, float(np.mean(step_sizes.numpy())), seconds)
    return PosteriorSamples(model, weights, like, noise, diagnostics)


def _diagnostics(stacked, accepted, divergent, step_size, seconds):
    tfp = _tfp()
    ess = [
        np.asarray(tfp.mcmc.effective_sample_size(s, cross_chain_dims=1 if s.shape[1] > 1 else None)) for s in stacked
    ]
    if stacked[0].shape[1] > 1:
        rhat = [np.asarray(tfp.mcmc.potential_scale_reduction(s, split_chains=True)) for s in stacked]
    else:
        rhat = [np.full(s.shape[2:], np.nan) for s in stacked]
    return {
        "ess": ess,
        "rhat": rhat,
        "min_ess": float(min(np.min(e) for e in ess)),
        "max_rhat": float(max(np.max(r) for r in rhat)),
        "acceptance_rate": float(np.mean(np.concatenate(accepted))),
        "num_divergences": int(np.sum(np.concatenate(divergent))),
        "step_size": step_size,
        "seconds": seconds,
    }
