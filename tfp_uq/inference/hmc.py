"""HMC and NUTS over the weights of small Keras models (TensorFlow Probability).

The log-density of the weights w of a model f is

    log p(w | x, y) = sum_n log p(y_n | f(x_n; w)) + sum_j log p(w_j) + const,

evaluated with `model.stateless_call` on the sampled weights, vectorised over
chains and compiled with XLA. `sample_posterior` runs in named steps: check
the model and priors, build the log-density, start the chains, then run the
sampler in chunks under a progress bar (saving each chunk to
`checkpoint_dir`, so a killed run continues where it stopped), and collect
the draws and their diagnostics into `PosteriorSamples`, a
`tfp_uq.posterior.Posterior`.
"""

import json
import math
import os
import time

import keras
import numpy as np

from tfp_uq import _keras_compat, _summaries, _validation, priors, task
from tfp_uq.layers._base import StochasticLayer
from tfp_uq.posterior import Posterior

__all__ = ["PosteriorSamples", "sample_posterior"]


KERNELS = ("nuts", "hmc")
LIKELIHOODS = ("gaussian", "categorical")
MAX_PARAMETERS = 100_000
_FORMAT = "tfp_uq.PosteriorSamples/2"


def _tf():
    import tensorflow as tf

    return tf


def _tfp():
    import tensorflow_probability as tfp

    return tfp


def _check_backend():
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(
            "tfp_uq.inference runs TensorFlow Probability's TensorFlow MCMC and needs the TensorFlow backend; the "
            f"Keras backend is {keras.backend.backend()!r}. Sample in a process with KERAS_BACKEND=tensorflow, or "
            "use the variational layers (tfp_uq.layers) on this backend."
        )


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise ValueError("model must be built (give it an Input or call it on data)")
    stochastic = [layer.name for layer in _keras_compat.walk_layers(model) if isinstance(layer, StochasticLayer)]
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
    for layer in _keras_compat.walk_layers(model, include_self=False):
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
            self.kind, self.function = _validation.one_of("likelihood", likelihood, LIKELIHOODS), None
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

    def get_config(self):
        """A JSON-able description; a callable likelihood by Keras serialisation (registered functions)."""
        function = None
        if self.kind == "callable":
            if keras.saving.get_registered_object(keras.saving.get_registered_name(self.function)) is None:
                raise ValueError(
                    "PosteriorSamples.save: the callable likelihood "
                    f"{getattr(self.function, '__name__', self.function)!r} cannot be saved; register it with "
                    "@keras.saving.register_keras_serializable() so it is saved by name, or save the samples "
                    "yourself (posterior.samples)"
                )
            function = keras.saving.serialize_keras_object(self.function)
        return {
            "kind": self.kind,
            "function": function,
            "noise_scale": self.noise_scale,
            "from_logits": self.from_logits,
        }

    @classmethod
    def from_config(cls, config):
        if config["kind"] == "callable":
            likelihood = keras.saving.deserialize_keras_object(config["function"])
        else:
            likelihood = config["kind"]
        return cls(likelihood, config["noise_scale"], config["from_logits"])


@keras.saving.register_keras_serializable(package="tfp_uq")
class PosteriorSamples(Posterior):
    """Posterior samples of a model's weights, with predictions and diagnostics.

    A `tfp_uq.posterior.Posterior`: `tfp_uq.predict(posterior, x)` and
    `tfp_uq.export(posterior, path)` use up to `num_samples` of the draws,
    evenly spread over all chains, each as one Monte Carlo sample. With a
    Gaussian likelihood each sample is `[output, noise scale]` (the noise
    sampled with it, or the fixed one), so the aleatoric variance is the mean
    squared noise scale and the epistemic one the variance of the outputs.

    Attributes:
        samples: list of arrays, one per trainable variable, each of shape
            `(num_results, num_chains) + variable.shape`.
        noise_scale: array `(num_results, num_chains)` of sampled Gaussian
            noise scales, or the fixed scale (float), or None.
        diagnostics: dict with `ess` and `rhat` (one array per variable),
            `min_ess`, `max_rhat`, `acceptance_rate`, `num_divergences`,
            `step_size`, `seconds`.
    """

    random_samples = False

    def __init__(self, model, samples, likelihood, noise_scale, diagnostics):
        super().__init__(model)
        self.samples = samples
        self.likelihood = likelihood
        self.noise_scale = noise_scale
        self.diagnostics = diagnostics

    @property
    def num_samples(self):
        return int(self.samples[0].shape[0] * self.samples[0].shape[1])

    def _flat(self):
        return [s.reshape((-1,) + s.shape[2:]) for s in self.samples]

    def _thinned(self, num_samples):
        """Indices of `num_samples` draws evenly spread over all chains."""
        return np.linspace(0, self.num_samples - 1, num_samples).round().astype(int)

    # ------------------------------------------------------------ the protocol
    def resolve_num_samples(self, requested):
        return min(requested, self.num_samples)

    def resolve_from_logits(self, from_logits):
        return self.likelihood.from_logits if from_logits is None else _validation.boolean("from_logits", from_logits)

    def output_kinds(self, count):
        if self.likelihood.kind == "gaussian":
            return [task.OutputKind(gaussian=True, classifier=False, opaque=False)] * count
        if self.likelihood.kind == "categorical":
            return [task.OutputKind(gaussian=False, classifier=True, opaque=False)] * count
        return task.output_kinds(self.model, count)

    def _outputs(self, inputs, weights):
        tf = _tf()
        non_trainable = [v.value for v in self.model.non_trainable_variables]

        def one(drawn):
            return self.model.stateless_call(list(drawn), non_trainable, inputs, training=False)[0]

        return tf.vectorized_map(one, weights)

    def sample_outputs(self, inputs, num_samples, seed):
        del seed  # the draws are fixed
        tf = _tf()
        index = self._thinned(num_samples)
        outputs = self._outputs(inputs, [tf.constant(w[index]) for w in self._flat()])
        if self.likelihood.kind != "gaussian":
            return outputs
        noise = np.broadcast_to(np.asarray(self.noise_scale, "float32"), self.samples[0].shape[:2]).reshape(-1)
        scale = tf.reshape(tf.constant(noise[index]), [-1] + [1] * (len(outputs.shape) - 1))
        return tf.concat([outputs, tf.ones_like(outputs) * tf.cast(scale, outputs.dtype)], axis=-1)

    # ------------------------------------------------------------- conveniences
    def posterior_outputs(self, x, batch_size=1024):
        """Model outputs for every posterior sample: `(num_samples, n, ...)`."""
        tf = _tf()
        x = np.asarray(x, dtype="float32")
        flat = [tf.constant(s) for s in self._flat()]
        outputs = tf.function(lambda batch: self._outputs(batch, flat), jit_compile=True)
        chunks = [outputs(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks, axis=1).astype("float64")

    def predict(self, x, task=None, batch_size=1024):
        """The posterior predictive over all draws: `tfp_uq.predict(self, x, num_samples=self.num_samples)`.

        For a Gaussian likelihood the aleatoric variance is the noise
        variance (sampled or fixed), the epistemic one the variance of the
        model's output over posterior samples.
        """
        from tfp_uq.prediction import predict

        return predict(self, x, num_samples=self.num_samples, task=task or "auto", batch_size=batch_size)

    # -------------------------------------------------------------- persistence
    def get_config(self):
        """The JSON-able description saved with the draws."""
        scalars = {k: v for k, v in self.diagnostics.items() if k not in ("ess", "rhat")}
        return {
            "format": _FORMAT,
            "likelihood": self.likelihood.get_config(),
            "noise_scale": self.noise_scale if isinstance(self.noise_scale, float) else None,
            "diagnostics": {k: float(v) if isinstance(v, (float, np.floating)) else int(v) for k, v in scalars.items()},
            "num_variables": len(self.samples),
        }

    def save(self, path):
        """Writes the draws (arrays) and a JSON config to one `.npz` file.

        A callable likelihood is saved by Keras serialisation, so it must be
        registered (`keras.saving.register_keras_serializable`); else saving
        raises a ValueError that says so.
        """
        config = self.get_config()
        arrays = {f"w{i}": s for i, s in enumerate(self.samples)}
        if isinstance(self.noise_scale, np.ndarray):
            arrays["noise_scale"] = self.noise_scale
        for name in ("ess", "rhat"):
            arrays.update({f"{name}{i}": np.asarray(v) for i, v in enumerate(self.diagnostics.get(name, []))})
        np.savez(path, config=np.asarray(json.dumps(config)), **arrays)

    def save_state(self, folder):
        self.save(os.path.join(folder, "samples.npz"))
        return {}

    @classmethod
    def from_state(cls, model, folder, config):
        return cls.load(os.path.join(folder, "samples.npz"), model)

    @classmethod
    def load(cls, path, model):
        """Reads draws written by `save`, for the same model architecture."""
        path = os.fspath(path)
        with np.load(path if path.endswith(".npz") else f"{path}.npz") as data:
            if "config" not in data.files:
                raise ValueError(f"{path} was not written by PosteriorSamples.save (no config)")
            config = json.loads(str(data["config"]))
            if config.get("format") != _FORMAT:
                raise ValueError(f"{path} holds format {config.get('format')!r}; this version reads {_FORMAT!r}")
            count = config["num_variables"]
            if count != len(model.trainable_variables):
                raise ValueError(
                    f"the saved samples are of {count} variables; the model has {len(model.trainable_variables)}"
                )
            samples = [data[f"w{i}"] for i in range(count)]
            diagnostics = dict(config["diagnostics"])
            for name in ("ess", "rhat"):
                diagnostics[name] = [data[f"{name}{i}"] for i in range(count) if f"{name}{i}" in data.files]
            noise = data["noise_scale"] if "noise_scale" in data.files else config["noise_scale"]
        for variable, sample in zip(model.trainable_variables, samples):
            if tuple(sample.shape[2:]) != tuple(variable.shape):
                raise ValueError("the saved samples do not match the model's variables")
        return cls(model, samples, _Likelihood.from_config(config["likelihood"]), noise, diagnostics)


# ------------------------------------------------------------ sample_posterior's steps
def _target_log_prob(model, x, y, likelihood, prior_list, num_chains):
    """The log-density of a state (weights, and log noise when sampled), vectorised over chains."""
    tf = _tf()
    x_t, y_t = tf.constant(x), tf.constant(y)
    non_trainable = [v.value for v in model.non_trainable_variables]
    num_weights = len(model.trainable_variables)

    def log_prob_one(state):
        weights, extra = list(state[:num_weights]), state[num_weights:]
        outputs = model.stateless_call(weights, non_trainable, x_t, training=False)[0]
        log_noise = extra[0] if likelihood.samples_noise else None
        total = likelihood.log_prob(y_t, outputs, log_noise)
        for weight, weight_prior in zip(weights, prior_list):
            total += weight_prior.log_prob(weight)
        if likelihood.samples_noise:
            total += likelihood.noise_prior_log_prob(log_noise)
        return total

    def target_log_prob(*state):
        if num_chains == 1:  # vectorized_map over one chain yields sparse gradients
            return log_prob_one([s[0] for s in state])[None]
        return tf.vectorized_map(log_prob_one, list(state))

    return target_log_prob


def _initial_state(model, likelihood, num_chains, jitter, seed):
    """The chains' start: the model's weights (and log noise 0.1) plus N(0, jitter^2) noise."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    initial = [
        (np.asarray(v.numpy())[None] + jitter * rng.normal(size=(num_chains,) + tuple(v.shape))).astype("float32")
        for v in model.trainable_variables
    ]
    if likelihood.samples_noise:
        start = np.full((num_chains,), math.log(0.1), "float32")
        initial.append(start + jitter * rng.normal(size=num_chains).astype("float32"))
    return [tf.constant(s) for s in initial]


def _sampler(target_log_prob, kernel, step_size, num_leapfrog_steps, max_tree_depth, num_burnin, target_accept):
    """The transition kernel: NUTS or HMC, with dual-averaging step-size adaptation in the first 80% of burn-in."""
    tfp = _tfp()
    if kernel == "nuts":
        inner = tfp.mcmc.NoUTurnSampler(target_log_prob, step_size=step_size, max_tree_depth=max_tree_depth)
    else:
        inner = tfp.mcmc.HamiltonianMonteCarlo(
            target_log_prob, step_size=step_size, num_leapfrog_steps=num_leapfrog_steps
        )
    return tfp.mcmc.DualAveragingStepSizeAdaptation(
        inner, num_adaptation_steps=max(1, int(0.8 * num_burnin)), target_accept_prob=target_accept
    )


def _trace(_, results):
    """What each step records: acceptance probability, divergence, step size."""
    tf = _tf()
    inner_results = results.inner_results
    divergent = getattr(inner_results, "has_divergence", None)
    if divergent is None:  # HMC: a huge energy error counts as a divergence
        divergent = inner_results.log_accept_ratio < -1000.0
    # NUTS always "accepts" a point of its trajectory: report the mean
    # Metropolis acceptance probability, min(1, exp(log ratio)), instead.
    acceptance = tf.exp(tf.minimum(inner_results.log_accept_ratio, 0.0))
    return acceptance, divergent, results.new_step_size


class _Checkpoint:
    """The sampler's state after each chunk, in `folder`: a killed run resumes from the last one."""

    def __init__(self, folder, fingerprint):
        self.folder, self.fingerprint = folder, fingerprint
        if folder is not None:
            os.makedirs(folder, exist_ok=True)

    def _path(self):
        return os.path.join(self.folder, "sampler_state.npz")

    def load(self, state, results):
        """`(done, state, results, kept)` from the last chunk, or None when there is none."""
        if self.folder is None or not os.path.exists(self._path()):
            return None
        tf = _tf()
        with np.load(self._path()) as data:
            meta = json.loads(str(data["meta"]))
            if meta["fingerprint"] != self.fingerprint:
                raise ValueError(
                    f"checkpoint_dir {self.folder!r} holds a run with other arguments or data; use an empty folder"
                )
            flat_results = [tf.constant(data[f"r{i}"]) for i in range(meta["num_results"])]
            state = [tf.constant(data[f"s{i}"]) for i in range(len(state))]
            kept = [[data[f"k{c}_{i}"] for i in range(meta["num_kept"])] for c in range(meta["chunks"])]
            trace = [[data[f"t{c}_{i}"] for i in range(3)] for c in range(meta["chunks"])]
        results = tf.nest.pack_sequence_as(results, flat_results)
        return meta["done"], state, results, kept, trace

    def save(self, done, state, results, kept, trace):
        if self.folder is None:
            return
        tf = _tf()
        flat = tf.nest.flatten(results)
        arrays = {f"r{i}": np.asarray(r) for i, r in enumerate(flat)}
        arrays.update({f"s{i}": np.asarray(s) for i, s in enumerate(state)})
        for c, chunk in enumerate(kept):
            arrays.update({f"k{c}_{i}": a for i, a in enumerate(chunk)})
        for c, chunk in enumerate(trace):
            arrays.update({f"t{c}_{i}": a for i, a in enumerate(chunk)})
        meta = {
            "fingerprint": self.fingerprint,
            "done": done,
            "num_results": len(flat),
            "num_kept": len(kept[0]) if kept else 0,
            "chunks": len(kept),
        }
        temporary = os.path.join(self.folder, "sampler_state.tmp.npz")
        np.savez(temporary, meta=np.asarray(json.dumps(meta)), **arrays)
        os.replace(temporary, self._path())  # atomic: a kill mid-write leaves the previous chunk


def _fingerprint(model, x, y, arguments):
    import hashlib

    digest = hashlib.sha256()
    for array in [x, y] + [np.asarray(v.numpy()) for v in model.trainable_variables]:
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps(arguments, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _run_chunks(sampler, initial, num_burnin, num_results, chunk_size, seed, jit_compile, progress, checkpoint):
    """Runs the chains in compiled chunks; returns the kept states and their traces."""
    tf, tfp = _tf(), _tfp()
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
                    trace_fn=_trace,
                    return_final_kernel_results=True,
                    seed=chunk_seed,
                )

            functions[steps] = chunk
        return functions[steps](state, results, chunk_seed)

    results, state, done, kept, traces = sampler.bootstrap_results(initial), initial, 0, [], []
    resumed = checkpoint.load(state, results)
    if resumed is not None:
        done, state, results, kept, traces = resumed
    total = num_burnin + num_results
    bar = keras.utils.Progbar(total, unit_name="step") if progress else None
    if bar is not None and done:
        bar.update(done)
    while done < total:
        # Chunks never straddle the end of burn-in, so kept samples are exact.
        boundary = num_burnin if done < num_burnin else total
        steps = min(chunk_size, boundary - done)
        out = run(steps, state, results, tf.constant([seed, done], dtype="int32"))
        chain_states, (acceptance, divergent, step_sizes), results = (
            out.all_states,
            out.trace,
            out.final_kernel_results,
        )
        state = [s[-1] for s in chain_states]
        if done >= num_burnin:
            kept.append([s.numpy() for s in chain_states])
            traces.append([acceptance.numpy(), divergent.numpy(), step_sizes.numpy()])
        done += steps
        checkpoint.save(done, state, results, kept, traces)
        if bar is not None:
            bar.update(done, values=[("accept", float(np.mean(acceptance.numpy())))])
    return kept, traces


def _diagnostics(stacked, traces, seconds):
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
        "acceptance_rate": float(np.mean(np.concatenate([t[0].ravel() for t in traces]))),
        "num_divergences": int(np.sum(np.concatenate([t[1].ravel() for t in traces]))),
        "step_size": float(np.mean(traces[-1][2])),
        "seconds": seconds,
    }


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
    checkpoint_dir=None,
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
        checkpoint_dir: a folder where the sampler's state is saved after
            each chunk; a run started again with the same arguments, data and
            starting weights continues from the last saved chunk, with the
            draws of an uninterrupted run.

    Returns:
        `PosteriorSamples`.

    Example:

    >>> posterior = tfp_uq.inference.sample_posterior(model, x, y, noise_scale=0.1)
    >>> posterior.diagnostics["max_rhat"], posterior.predict(x_test).std
    """
    _check_backend()
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
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(f"checkpoint_dir must be a folder path or None, got {type(checkpoint_dir).__name__}")

    x = np.asarray(x, dtype="float32")
    y = np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of examples, got {x.shape[0]} and {y.shape[0]}")
    like.check_shapes(y, tuple(model.compute_output_shape(x.shape)))
    y = y.astype("int32") if like.kind == "categorical" else y.astype("float32")
    prior_list = _priors_by_variable(model, prior)

    target_log_prob = _target_log_prob(model, x, y, like, prior_list, num_chains)
    initial = _initial_state(model, like, num_chains, jitter, seed)
    if not np.all(np.isfinite(target_log_prob(*initial).numpy())):
        raise ValueError(
            "the log-density is not finite at the starting weights; check the data, the "
            "likelihood (e.g. probabilities of exactly 0) and the prior"
        )
    sampler = _sampler(
        target_log_prob, kernel, step_size, num_leapfrog_steps, max_tree_depth, num_burnin, target_accept
    )
    arguments = dict(
        likelihood=like.kind, noise_scale=noise_scale, from_logits=from_logits, prior=repr(prior), kernel=kernel,
        num_chains=num_chains, num_burnin=num_burnin, num_results=num_results, step_size=step_size,
        num_leapfrog_steps=num_leapfrog_steps, max_tree_depth=max_tree_depth, target_accept=target_accept,
        jitter=jitter, chunk_size=chunk_size, seed=seed,
    )  # fmt: skip
    checkpoint = _Checkpoint(
        None if checkpoint_dir is None else os.fspath(checkpoint_dir), _fingerprint(model, x, y, arguments)
    )
    started = time.perf_counter()
    kept, traces = _run_chunks(
        sampler, initial, num_burnin, num_results, chunk_size, seed, jit_compile, progress, checkpoint
    )
    seconds = time.perf_counter() - started

    stacked = [np.concatenate([chunk[i] for chunk in kept], axis=0) for i in range(len(initial))]
    num_weights = len(model.trainable_variables)
    weights, noise = stacked[:num_weights], None
    if like.samples_noise:
        noise = np.exp(stacked[num_weights])
    elif like.kind == "gaussian":
        noise = like.noise_scale
    return PosteriorSamples(model, weights, like, noise, _diagnostics(stacked, traces, seconds))
