"""Ready-made MLPs for the demo, the `tfp-uq` command and the benchmarks."""

import keras

METHODS = ("plain", "mc_dropout", "flipout", "reparameterization", "local_reparameterization", "ensemble")
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


def loss(task):
    from tfp_uq import losses

    return losses.GaussianNLL() if task == "regression" else "sparse_categorical_crossentropy"


def build(method, input_dim, task, num_outputs, num_train, hidden=(50,), dropout_rate=0.05, seed=0,
          learning_rate=1e-3, num_members=5):
    """A compiled model (or `DeepEnsemble` for method "ensemble")."""
    if method == "ensemble":
        from tfp_uq.ensembles import DeepEnsemble

        def member(member_seed):
            return mlp("plain", input_dim, task, num_outputs, num_train, hidden, dropout_rate, member_seed)

        ensemble = DeepEnsemble(member, num_members=num_members, seed=seed)
        ensemble.compile(keras.optimizers.Adam(learning_rate), loss(task), jit_compile=True)
        return ensemble
    model = mlp(method, input_dim, task, num_outputs, num_train, hidden, dropout_rate, seed)
    model.compile(keras.optimizers.Adam(learning_rate), loss(task), jit_compile=True)
    return model


def num_predict_samples(method, requested=100):
    """One pass for a deterministic model, `requested` samples otherwise."""
    return 1 if method == "plain" else requested
