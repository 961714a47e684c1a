"""IVON: a Gaussian posterior over every weight, learned by swapping the optimizer.

IVON, the Improved Variational Online Newton method (Shen et al., ICML 2024,
"Variational Learning is Effective for Large Deep Networks"), keeps a mean
m, a diagonal Hessian estimate h and a momentum g_bar per weight. With the
per-example training loss L (the Keras loss, averaged over the batch), the
effective sample size lambda (`ess`, the training-set size), the weight
decay delta and one step t:

    theta   = m + eps / sqrt(lambda (h + delta)),   eps ~ N(0, I)
    g       = grad L(theta),   h_hat = eps sqrt(lambda (h + delta)) * g        ("price")
                                  or   lambda g^2                              ("gradsq")
    g_bar  <- beta1 g_bar + (1 - beta1) g
    h      <- beta2 h + (1 - beta2) h_hat + (1 - beta2)^2 / 2 (h - h_hat)^2 / (h + delta)
    m      <- m - alpha clip((g_bar / (1 - beta1^t) + delta m) / (h + delta), radius)

with alpha = learning_rate (hess_init + delta) under `rescale_lr`. The last
term of the h update keeps h positive. The posterior is q(theta) = N(m,
1 / (lambda (h + delta))): for a Gaussian likelihood (a quadratic L with
Hessian H) its fixed point is the exact posterior mean under the prior
N(0, 1 / (lambda delta)) and the mean-field variances 1 / (lambda (H_ii +
delta)).

How the gradient is taken at a sample inside plain `model.fit`: the model's
variables hold the sample theta, not the mean, while training. Each update
step (a Keras `update_step`, once per variable) takes the gradient Keras
computed at the variable's value, recovers the mean as theta - noise (the
noise is an optimizer variable, zero when the variable holds the mean),
updates m, h and g_bar, draws the next step's noise and writes m + noise
back into the variable. The gradient of step t + 1 is then taken at the
sample drawn by step t, which is the reference rule (team-approx-bayes/ivon,
`ivon/_ivon.py`), whose step t samples from the h of step t - 1. Nothing
but the optimizer changes, so every model and every training feature that
goes through `optimizer.apply` works unchanged: Sequential, Functional and
subclassed models (a custom `train_step` too), `jit_compile=True`,
`tf.distribute` strategies (the update runs in Keras's per-variable update
context, and the noise is drawn from a stateless seed of the step counter,
so every replica draws the same), mixed precision (`LossScaleOptimizer`
wraps IVON like any optimizer), `steps_per_execution`, and checkpoints: the
sample, noise, h, g_bar and step counter are all variables, so
`BackupAndRestore` and a `.keras` round trip continue the same stream.

At the end of `fit`, Keras calls `finalize_variable_values` (as it does for
its own moving-average weights), which writes the means into the variables
and zeroes the noise: after training the model is its posterior mean, the
point prediction. Consequences a user should know:

- A `fit` that starts from the means (the first, and each later one) takes
  its first gradient at the mean: the noise is zero for that step, so its
  Price estimate is zero (h moves by a factor beta2, 1e-5 at the default).
- During `fit`, the model's own predictions (validation metrics, callbacks
  that evaluate or save the model's weights, `EarlyStopping`'s restored
  weights) are those of the current sample, one draw from q; the posterior
  from `IVON.posterior` reads the means and is right at any time.
- `mc_samples = S > 1` averages the gradients (and Hessian estimates) of S
  draws, one per batch, over S consecutive batches, and updates m, h and
  g_bar once per S batches, as Keras's `gradient_accumulation_steps` does;
  the reference averages S draws on one batch, which needs S forward and
  backward passes per batch that `fit` does not make.

Variables chosen by `var_names` (default: all trainable ones) are
variational; the other trainable variables take the same mean step with h
held at `hess_init` and no noise, which is SGD with (debiased) momentum and
weight decay delta at learning rate `learning_rate` (with `rescale_lr`).
Variables with `trainable=False` are not the optimizer's and stay frozen.
For variational LoRA, freeze the pretrained model and give IVON only the
adapters (e.g. `var_names=["lora_a$", "lora_b$"]` on a model from
`tfp_uq.bayesianize(model, method="lora")`, deterministic, kl_weight 0).
"""

import random
import re

import keras
from keras import ops

from tfp_uq import _random, _validation
from tfp_uq.posterior import Posterior

__all__ = ["IVON", "IVONPosterior"]

HESSIAN_APPROXIMATIONS = ("price", "gradsq")
# Keras optimizer arguments IVON has its own version of.
_REPLACED_OPTIONS = {
    "use_ema": "IVON's posterior mean is already an average; use IVON.posterior",
    "gradient_accumulation_steps": "IVON averages over steps itself: use mc_samples",
}
# Keys of keras.optimizers.Optimizer.get_config that IVON does not take.
_DROPPED_CONFIG = ("use_ema", "ema_momentum", "ema_overwrite_frequency", "gradient_accumulation_steps")


def _as_learning_rate(value):
    if callable(value):  # a LearningRateSchedule or a callable of no arguments
        return value
    return _validation.positive("learning_rate", value)


def _as_patterns(var_names):
    if var_names is None:
        return None
    if isinstance(var_names, str) or not all(isinstance(name, str) for name in var_names):
        raise TypeError(f"var_names must be a list of regular expressions (strings) or None, got {var_names!r}")
    return tuple(var_names)


def _read(variable):
    """A variable's value, read once: a Keras variable used in several expressions is read at each."""
    return ops.copy(variable)


def _seed_dtype():
    # tfp_uq._random's compiled kernels take int64 seeds; JAX's random keys are uint32.
    return "int64" if keras.backend.backend() == "tensorflow" else "uint32"


@keras.saving.register_keras_serializable(package="tfp_uq")
class IVON(keras.optimizers.Optimizer):
    """Improved Variational Online Newton: a posterior over every weight, trained like Adam.

    See the module docstring for the update rule (Shen et al., ICML 2024) and
    how training samples the weights. It keeps three values per weight
    (Adam: two) and draws one Normal per weight and step; on a 2-core CPU
    its update of a 26k-weight MLP took ~240 us against Adam's ~40 us under
    XLA (~520 against ~170 without), the draw ~100 of them
    (benchmarks/RESULTS.md). Defaults are the reference's; the
    published settings use `learning_rate` 0.2 (CIFAR ResNets, `hess_init`
    0.5, `weight_decay` 2e-4) to 2.5 (ImageNet, `hess_init` 0.05), `ess` the
    training-set size and `clip_radius` 1e-3 for GPT-2.

    Args:
        learning_rate: a float > 0, a `keras.optimizers.schedules`
            schedule or a callable of no arguments.
        ess: effective sample size lambda > 0 (the number of training
            examples: it scales the per-example loss into the likelihood).
        hess_init: initial Hessian estimate h > 0.
        beta1: momentum decay in [0, 1).
        beta2: Hessian decay in [0, 1).
        weight_decay: delta >= 0, the prior precision per example (prior
            N(0, 1 / (ess delta))).
        mc_samples: weight samples S >= 1 averaged per update, one per batch
            (see the module docstring).
        hess_approx: "price" (Price's theorem, the reference default) or
            "gradsq" (squared gradients).
        clip_radius: bound on each coordinate of the preconditioned step
            (> 0), or None for no clipping.
        rescale_lr: multiply the learning rate by hess_init + delta.
        debias: divide the momentum by 1 - beta1^t.
        var_names: regular expressions; the trainable variables whose path
            (`variable.path`, e.g. "dense/kernel") matches one of them are
            variational, the others take the plain mean step. None: all.
        seed: integer seed of the weight noise; None draws one from Python's
            `random` (seeded by `keras.utils.set_random_seed`), which
            `get_config` then reports, so a reloaded optimizer continues the
            same stream.
        **kwargs: `keras.optimizers.Optimizer` arguments (`name`, `clipnorm`,
            `clipvalue`, `global_clipnorm`, `loss_scale_factor`).

    Example:

    >>> optimizer = tfp_uq.optimizers.IVON(learning_rate=0.1, ess=len(x_train))
    >>> model.compile(optimizer, "sparse_categorical_crossentropy")
    >>> model.fit(x_train, y_train, epochs=10)  # afterwards the model holds the posterior mean
    >>> tfp_uq.predict(optimizer.posterior(model), x_test, num_samples=50).mutual_information
    """

    def __init__(
        self,
        learning_rate,
        ess,
        hess_init=1.0,
        beta1=0.9,
        beta2=0.99999,
        weight_decay=1e-4,
        mc_samples=1,
        hess_approx="price",
        clip_radius=None,
        rescale_lr=True,
        debias=True,
        var_names=None,
        seed=None,
        name="ivon",
        **kwargs,
    ):
        for option, reason in _REPLACED_OPTIONS.items():
            if kwargs.get(option):
                raise ValueError(f"{option}={kwargs[option]!r} is not supported by IVON: {reason}")
            kwargs.pop(option, None)
        # Keras's decoupled weight decay stays off (its `weight_decay` is None): IVON's delta is in its step.
        super().__init__(learning_rate=_as_learning_rate(learning_rate), weight_decay=None, name=name, **kwargs)
        self.ess = _validation.positive("ess", ess)
        self.hess_init = _validation.positive("hess_init", hess_init)
        self.beta1 = _validation.unit_interval("beta1", beta1)
        self.beta2 = _validation.unit_interval("beta2", beta2)
        self.delta = _validation.non_negative("weight_decay", weight_decay)
        self.mc_samples = _validation.positive_int("mc_samples", mc_samples)
        self.hess_approx = _validation.one_of("hess_approx", hess_approx, HESSIAN_APPROXIMATIONS)
        if clip_radius is not None:
            clip_radius = _validation.positive("clip_radius", clip_radius)
            clip_radius = None if clip_radius == float("inf") else clip_radius
        self.clip_radius = clip_radius
        self.rescale_lr = _validation.boolean("rescale_lr", rescale_lr)
        self.debias = _validation.boolean("debias", debias)
        self.var_names = _as_patterns(var_names)
        seed = _validation.optional_int("seed", seed)
        self.seed = random.randint(1, 10**9) if seed is None else seed

    # ------------------------------------------------------------------ state
    def build(self, var_list):
        """Creates the momentum of every variable and the noise and Hessian of the variational ones."""
        if self.built:
            return
        super().build(var_list)
        sampled = [self._is_variational(variable) for variable in var_list]
        if self.var_names is not None and not any(sampled):
            paths = [variable.path for variable in var_list]
            raise ValueError(f"var_names {list(self.var_names)} match none of the trainable variables {paths}")
        self._variational = sampled
        self._momentums, self._noises, self._hessians = [], [], []
        self._gradient_sums, self._estimate_sums = [], []
        hessian_init = keras.initializers.Constant(self.hess_init)
        for variable, variational in zip(var_list, sampled):
            self._momentums.append(self.add_variable_from_reference(variable, "momentum"))
            self._noises.append(self.add_variable_from_reference(variable, "noise") if variational else None)
            self._hessians.append(
                self.add_variable_from_reference(variable, "hessian", hessian_init) if variational else None
            )
            if self.mc_samples > 1:
                self._gradient_sums.append(self.add_variable_from_reference(variable, "gradient_sum"))
                self._estimate_sums.append(
                    self.add_variable_from_reference(variable, "hessian_estimate_sum") if variational else None
                )

    def _is_variational(self, variable):
        if self.var_names is None:
            return True
        return any(re.search(pattern, variable.path) for pattern in self.var_names)

    def _index(self, variable):
        """The optimizer's index of a model variable, or None for one it was not built with."""
        try:
            return self._get_variable_index(variable)
        except KeyError:
            return None

    def slots(self, variable):
        """The optimizer variables of one model variable, by name.

        "momentum" (g_bar), and for a variational variable "noise" (theta - m
        of the sample the variable holds) and "hessian" (h); with
        `mc_samples > 1` also the running sums "gradient_sum" and
        "hessian_estimate_sum".
        """
        if not self.built or self._index(variable) is None:
            raise ValueError(f"variable {getattr(variable, 'path', variable)!r} is not one this optimizer updates")
        index = self._index(variable)
        slots = {"momentum": self._momentums[index]}
        if self._variational[index]:
            slots.update(noise=self._noises[index], hessian=self._hessians[index])
        if self.mc_samples > 1:
            slots["gradient_sum"] = self._gradient_sums[index]
            if self._variational[index]:
                slots["hessian_estimate_sum"] = self._estimate_sums[index]
        return slots

    def posterior_mean(self, variable):
        """The posterior mean m of a model variable (its value minus the noise of the sample it holds)."""
        noise = self.slots(variable).get("noise")
        value = ops.convert_to_tensor(variable)
        return value if noise is None else value - ops.convert_to_tensor(noise)

    def posterior_std(self, variable):
        """The posterior standard deviation 1 / sqrt(ess (h + delta)) of a variational variable, else None."""
        hessian = self.slots(variable).get("hessian")
        if hessian is None:
            return None
        return ops.rsqrt(self.ess * (ops.convert_to_tensor(hessian) + self.delta))

    # ----------------------------------------------------------------- update
    def _hessian_estimate(self, gradient, noise, shifted_hessian):
        """h_hat of one sample; `shifted_hessian` is h + delta, the sample's precision / ess."""
        if self.hess_approx == "price":
            return (noise * gradient) * (shifted_hessian * self.ess)
        return ops.square(gradient) * self.ess

    def _new_hessian(self, hessian, shifted_hessian, estimate):
        # beta2 h + (1 - beta2) h_hat + (1 - beta2)^2 / 2 (h - h_hat)^2 / (h + delta), in fewer operations.
        difference = hessian - estimate
        positivity = 0.5 * (1.0 - self.beta2) ** 2
        return hessian + difference * (positivity * difference / shifted_hessian - (1.0 - self.beta2))

    def _mean_step(self, momentum, mean, shifted_hessian, learning_rate, step):
        """alpha clip((momentum / (1 - beta1^t) + delta m) / (h + delta)), the learning rates folded in first."""
        dtype = mean.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        if self.rescale_lr:
            learning_rate = learning_rate * (self.hess_init + self.delta)
        momentum_rate = learning_rate / (1.0 - ops.power(self.beta1, step)) if self.debias else learning_rate
        numerator = momentum * momentum_rate
        if self.delta:
            numerator = numerator + mean * (learning_rate * self.delta)
        mean_step = numerator / shifted_hessian
        if self.clip_radius is not None:
            bound = learning_rate * self.clip_radius
            mean_step = ops.clip(mean_step, -bound, bound)
        return mean_step

    def _noise_seed(self, index, iterations):
        step = ops.cast(iterations, _seed_dtype())
        base = ops.stack([ops.convert_to_tensor(self.seed % 2**31, _seed_dtype()), step])
        return _random.substream(base, index)

    def _accumulate(self, index, gradient, estimate, calls):
        """With mc_samples S > 1: whether this call updates, and the averages of the last S calls' terms."""
        update = ops.equal(calls % self.mc_samples, 0)
        averages = []
        for sums, term in ((self._gradient_sums, gradient), (self._estimate_sums, estimate)):
            if term is None:
                averages.append(None)
                continue
            total = sums[index] + term
            self.assign(sums[index], ops.where(update, ops.zeros_like(total), total))
            averages.append(total / self.mc_samples)
        return update, calls // self.mc_samples, averages[0], averages[1]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        momentum_slot, noise_slot, hessian_slot = self._momentums[index], self._noises[index], self._hessians[index]
        value, momentum, iterations = _read(variable), _read(momentum_slot), _read(self.iterations)
        if noise_slot is None:
            mean, hessian, estimate, shifted = value, None, None, self.hess_init + self.delta
        else:
            noise, hessian = _read(noise_slot), _read(hessian_slot)
            mean, shifted = value - noise, hessian + self.delta
            estimate = self._hessian_estimate(gradient, noise, shifted)

        if self.mc_samples == 1:
            update, step = None, iterations + 1
        else:
            update, step, gradient, estimate = self._accumulate(index, gradient, estimate, iterations + 1)
        new_momentum = self.beta1 * momentum + (1.0 - self.beta1) * gradient
        if hessian is not None:
            new_hessian = self._new_hessian(hessian, shifted, estimate)
            shifted = new_hessian + self.delta
        new_mean = mean - self._mean_step(new_momentum, mean, shifted, learning_rate, ops.cast(step, dtype))
        if update is not None:  # between updates only the sample changes
            new_momentum = ops.where(update, new_momentum, momentum)
            new_mean = ops.where(update, new_mean, mean)
            if hessian is not None:
                new_hessian = ops.where(update, new_hessian, hessian)
                shifted = new_hessian + self.delta

        self.assign(momentum_slot, new_momentum)
        if noise_slot is None:
            self.assign(variable, new_mean)
            return
        self.assign(hessian_slot, new_hessian)
        # training=True: outside XLA, tfp_uq's compiled kernels draw the same numbers faster.
        eps = _random.normal(tuple(variable.shape), self._noise_seed(index, iterations), dtype, training=True)
        new_noise = eps * ops.rsqrt(shifted * self.ess)
        self.assign(noise_slot, new_noise)
        self.assign(variable, new_mean + new_noise)

    def finalize_variable_values(self, var_list):
        """Writes the posterior means into the variables (Keras calls this at the end of `fit`)."""
        super().finalize_variable_values(var_list)
        if not self.built:
            return
        for variable in var_list:
            index = self._index(variable)
            if index is None or self._noises[index] is None:
                continue
            noise = self._noises[index]
            variable.assign(ops.convert_to_tensor(variable) - ops.convert_to_tensor(noise))
            noise.assign(ops.zeros(noise.shape, noise.dtype))

    # -------------------------------------------------------------- posterior
    def posterior(self, model):
        """The posterior q(theta) = N(m, 1 / (ess (h + delta))) of `model`'s weights, as an `IVONPosterior`."""
        return IVONPosterior(model, self)

    def get_config(self):
        config = super().get_config()
        for key in _DROPPED_CONFIG:
            config.pop(key, None)
        config.update(
            {
                "ess": self.ess,
                "hess_init": self.hess_init,
                "beta1": self.beta1,
                "beta2": self.beta2,
                "weight_decay": self.delta,
                "mc_samples": self.mc_samples,
                "hess_approx": self.hess_approx,
                "clip_radius": self.clip_radius,
                "rescale_lr": self.rescale_lr,
                "debias": self.debias,
                "var_names": None if self.var_names is None else list(self.var_names),
                "seed": self.seed,
            }
        )
        return config


def _ivon_of(optimizer):
    """The IVON inside `optimizer` (a `LossScaleOptimizer` wraps it under mixed precision), or None."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return inner if isinstance(inner, IVON) else None


@keras.saving.register_keras_serializable(package="tfp_uq")
class IVONPosterior(Posterior):
    """IVON's posterior over a model's weights: a predictive source of the posterior protocol.

    Each Monte Carlo sample draws every variational weight from N(m, 1 /
    (ess (h + delta))) and runs the model on it (`model.stateless_call`,
    vectorised over samples); the other weights keep their values. It reads
    m and h from the optimizer when it samples, so it follows training
    (mid-`fit` too, when the model's variables hold a sample), and it is
    stateless: the draws come from the `seed` tensor only.

    Saving: the posterior is the model plus the optimizer's state, which a
    `.keras` file holds when the model was compiled with the IVON optimizer:
    `save` writes one, `load` reads it back.

    Args:
        model: a Keras model whose trainable variables `optimizer` updates.
        optimizer: the `IVON` that trained it (built).

    Example:

    >>> posterior = optimizer.posterior(model)
    >>> samples = posterior.sample_outputs(x_test, 50, tf.constant([0, 1]))  # (50, batch, classes)
    """

    def __init__(self, model, optimizer):
        super().__init__(model)
        if not isinstance(optimizer, IVON):
            raise TypeError(f"optimizer must be a tfp_uq.optimizers.IVON, got {type(optimizer).__name__}")
        unknown = [v.path for v in model.trainable_variables if not optimizer.built or optimizer._index(v) is None]
        if unknown:
            raise ValueError(
                f"the optimizer does not update the model's variables {unknown}: train the model with it "
                "(model.compile(optimizer=...) and fit) or build it on model.trainable_variables"
            )
        self.optimizer = optimizer

    def sample_outputs(self, inputs, num_samples, seed):
        """`(num_samples, batch, ...)` outputs, one weight draw per sample (see the class docstring)."""
        num_samples = _validation.positive_int("num_samples", num_samples)
        seed = ops.cast(seed, _seed_dtype())
        weights = [self.optimizer.posterior_mean(v) for v in self.model.trainable_variables]
        drawn = {}
        for index, variable in enumerate(self.model.trainable_variables):
            std = self.optimizer.posterior_std(variable)
            if std is not None:
                stream = _random.substream(seed, _random.stream(_random.Stream.WEIGHT, index))
                eps = _random.normal((num_samples,) + tuple(variable.shape), stream)
                drawn[index] = weights[index] + ops.cast(std, eps.dtype) * eps
        non_trainable = [ops.convert_to_tensor(v) for v in self.model.non_trainable_variables]
        positions = sorted(drawn)

        def one_sample(sampled):
            values = list(weights)
            for position, value in zip(positions, sampled):
                values[position] = value
            return self.model.stateless_call(values, non_trainable, inputs, training=False)[0]

        if not positions:  # nothing variational: every sample is the mean's output
            outputs = one_sample([])
            return keras.tree.map_structure(lambda o: ops.repeat(o[None], num_samples, axis=0), outputs)
        return ops.vectorized_map(one_sample, [drawn[p] for p in positions])

    def save(self, path):
        """Writes the model with its IVON optimizer state to a `.keras` file."""
        if _ivon_of(getattr(self.model, "optimizer", None)) is not self.optimizer:
            raise ValueError(
                "save writes the model's own optimizer state: compile the model with this IVON optimizer "
                "(model.compile(optimizer=...)) before saving"
            )
        self.model.save(path)

    def save_state(self, folder):
        # The model.keras that tfp_uq.posterior.save writes holds the optimizer's state too.
        if _ivon_of(getattr(self.model, "optimizer", None)) is not self.optimizer:
            raise ValueError("tfp_uq.posterior.save: compile the model with this IVON optimizer before saving")
        return {}

    @classmethod
    def from_state(cls, model, folder, config):
        optimizer = _ivon_of(getattr(model, "optimizer", None))
        if optimizer is None:
            raise ValueError(f"the model in {folder!r} was not compiled with tfp_uq.optimizers.IVON")
        return cls(model, optimizer)

    @classmethod
    def load(cls, path):
        """Reads a `.keras` file written by `save` (or `model.save` of a model trained with IVON)."""
        model = keras.models.load_model(path)
        optimizer = _ivon_of(getattr(model, "optimizer", None))
        if optimizer is None:
            raise ValueError(f"the model in {path!r} was not compiled with tfp_uq.optimizers.IVON")
        return cls(model, optimizer)
