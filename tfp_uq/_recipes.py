"""Ready-made MLPs for the demo, the `tfp-uq` command and the benchmarks."""

import keras

METHODS = (
    "plain",
    "mc_dropout",
    "flipout",
    "reparameterization",
    "local_reparameterization",
    "ensemble",
    "ivon",
    "laplace",
)
_BAYESIAN = {
    "flipout": "DenseFlipout",
    "reparameterization": "DenseReparameterization",
    "local_reparameterization": "DenseLocalReparameterization",
}


def mlp(method, input_dim, task, num_outputs, num_train, hidden=(50,), dropout_rate=0.05, seed=0):
    """An MLP whose Dense layers follow `method`, with the task's output head.

    Regression ends in a `GaussianHead` (loc and scale per target), so the
    noise is learned; classification ends in softmax.
    """
    from tfp_uq import layers

    outputs = 2 * num_outputs if task == "regression" else num_outputs
    activation = None if task == "regression" else "softmax"
    stack = [keras.Input((input_dim,))]
    for i, units in enumerate(hidden):
        if method in _BAYESIAN:
            stack.append(getattr(layers, _BAYESIAN[method])(units, activation="relu", seed=seed + i))
        else:
            stack.append(keras.layers.Dense(units, activation="relu"))
            if method == "mc_dropout":
                stack.append(layers.MCDropout(dropout_rate, seed=seed + i))
    if method in _BAYESIAN:
        stack.append(getattr(layers, _BAYESIAN[method])(outputs, activation=activation, seed=seed + 99))
    else:
        stack.append(keras.layers.Dense(outputs, activation=activation))
    if task == "regression":
        stack.append(layers.GaussianHead())
    model = keras.Sequential(stack)
    if method in _BAYESIAN:
        from tfp_uq import set_kl_weight

        set_kl_weight(model, num_examples=num_train)
    return model


def loss(task, method="plain"):
    """The training loss of `method` for `task`.

    Regression: beta-NLL with beta 0.5 for point-estimate networks (plain,
    MC dropout, ensembles), which fits the mean better than the plain NLL
    (UCI concrete, MC dropout, 3 splits at Adam 1e-3: RMSE 5.82 -> 5.28,
    test LL -3.05 -> -3.00); the exact NLL for variational methods, whose
    ELBO needs the true likelihood next to the KL (beta-NLL there shrinks
    the data term against the KL: Flipout on UCI energy, same optimiser,
    test LL -2.18 with beta 0.5 on 3 splits, -0.93 with the exact NLL on
    20). Classification: cross-entropy.
    """
    from tfp_uq import losses

    if task != "regression":
        return "sparse_categorical_crossentropy"
    return losses.GaussianNLL(beta=0.0 if method in _BAYESIAN or method == "ivon" else 0.5)


def optimizer(task, learning_rate=None, decay_steps=None):
    """Adam; learning rate 1e-2 for regression, 1e-3 for classification by
    default, cosine-decayed to 0 over `decay_steps` when given (the small
    tabular regressors underfit at a constant 1e-3)."""
    if learning_rate is None:
        learning_rate = 1e-2 if task == "regression" else 1e-3
    if decay_steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    return keras.optimizers.Adam(learning_rate)


def ivon_optimizer(task, num_train, decay_steps=None, learning_rate=None):
    """IVON (`tfp_uq.optimizers.IVON`) with ess = the training-set size and the task's settings.

    Classification: the published CIFAR settings (learning rate 0.2,
    hess_init 0.5, weight decay 2e-4). Regression (small tabular sets, chosen
    on validation fifths of UCI training data, never on test sets): 0.05
    cosine-decayed to 0, beta2 0.9995, weight decay 5e-3, clip radius 0.1.
    """
    import keras

    from tfp_uq.optimizers import IVON

    if task == "classification":
        rate = 0.2 if learning_rate is None else learning_rate
        if decay_steps:
            rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps)
        return IVON(learning_rate=rate, ess=float(num_train), hess_init=0.5, weight_decay=2e-4)
    rate = 0.05 if learning_rate is None else learning_rate
    if decay_steps:
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps)
    return IVON(learning_rate=rate, ess=float(num_train), beta2=0.9995, weight_decay=5e-3, clip_radius=0.1)


def decay_steps(num_train, epochs, batch_size):
    """Optimizer steps of `epochs` epochs over `num_train` examples."""
    return epochs * -(-num_train // batch_size)


def build(
    method,
    input_dim,
    task,
    num_outputs,
    num_train,
    hidden=(50,),
    dropout_rate=0.05,
    seed=0,
    learning_rate=None,
    decay_steps=None,
    num_members=5,
    jit_compile=True,
):
    """A compiled model (or `DeepEnsemble` for method "ensemble"); see
    `optimizer` (and `ivon_optimizer` for method "ivon", a plain MLP trained
    by IVON) for `learning_rate` and `decay_steps`. Method "laplace" is the
    plain model; `after_training` then fits its posterior. `jit_compile` is
    `Model.compile`'s (XLA by default, as the CLI and demo train)."""
    if method == "ensemble":
        from tfp_uq.ensembles import DeepEnsemble

        def member(member_seed):
            return mlp("plain", input_dim, task, num_outputs, num_train, hidden, dropout_rate, member_seed)

        ensemble = DeepEnsemble(member, num_members=num_members, seed=seed)
        ensemble.compile(optimizer(task, learning_rate, decay_steps), loss(task, method), jit_compile=jit_compile)
        return ensemble
    if method == "ivon":
        model = mlp("plain", input_dim, task, num_outputs, num_train, hidden, dropout_rate, seed)
        model.compile(
            ivon_optimizer(task, num_train, decay_steps, learning_rate), loss(task, method), jit_compile=jit_compile
        )
        return model
    trained = "plain" if method == "laplace" else method
    model = mlp(trained, input_dim, task, num_outputs, num_train, hidden, dropout_rate, seed)
    model.compile(optimizer(task, learning_rate, decay_steps), loss(task, trained), jit_compile=jit_compile)
    return model


def after_training(method, model, x_train, y_train, batch_size=128):
    """What `method` predicts with once `model` is trained on `(x_train, y_train)`.

    "laplace": the last-layer KFAC Laplace posterior with its prior precision
    by marginal likelihood (`tfp_uq.laplace.fit`'s defaults); any other
    method: the model itself.
    """
    if method != "laplace":
        return model
    from tfp_uq import laplace

    return laplace.fit(model, (x_train, y_train), batch_size=batch_size, verbose=0)


def num_predict_samples(method, requested=100):
    """One pass for a deterministic model, `requested` samples otherwise."""
    return 1 if method == "plain" else requested
