"""Bayesian LoRA: a pretrained MLP gains uncertainty on a shifted task (about 40 s).

Pretrains a plain MLP on y = sin(x) for x in [-3, 0], then adapts it with a
rank-2 Bayesian LoRA update to a shifted task, y = sin(x) + 0.5 for x in
[0, 1.5]. Only the adapters train. Prints the parameter counts next to a
full Bayesian conversion, and the epistemic uncertainty on inputs like the
fine-tuning data versus inputs unlike them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parse(__doc__.split("\n")[0], argv)
    import keras
    import numpy as np

    import tfp_uq

    rng = np.random.default_rng(0)
    x_pre = rng.uniform(-3, 0, (400, 1)).astype("float32")
    x_new = rng.uniform(0, 1.5, (100, 1)).astype("float32")
    y_pre = np.sin(x_pre).astype("float32")
    y_new = (np.sin(x_new) + 0.5).astype("float32")
    keras.utils.set_random_seed(0)
    pretrained = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(128, activation="tanh"),
            keras.layers.Dense(128, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    pretrained.compile(keras.optimizers.Adam(3e-3), "mse")
    pretrained.fit(x_pre, y_pre, epochs=5 if args.quick else 200, batch_size=64, verbose=0)

    # The first and last layers have one input or output, too few for rank 2.
    adapted = tfp_uq.bayesianize(
        pretrained,
        method="lora",
        lora_rank=2,
        posterior_scale_init=0.01,
        prior=tfp_uq.priors.Normal(0.0, 0.1),
        layer_filter=lambda layer: min(layer.kernel.shape) >= 2,
        num_examples=len(x_new),
        seed=0,
    )
    for layer in adapted.layers:  # fine-tune the adapters only
        layer.trainable = isinstance(layer, tfp_uq.layers.BayesianLoRA)
    adapted.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=True)
    adapted.fit(x_new, y_new, epochs=5 if args.quick else 300, batch_size=32, verbose=0)

    full = tfp_uq.bayesianize(pretrained, method="flipout")
    lora_count = sum(int(np.prod(v.shape)) for v in adapted.trainable_weights)
    full_count = sum(int(np.prod(v.shape)) for v in full.trainable_weights)
    print(
        f"trainable parameters: Bayesian LoRA {lora_count}, full Bayesian conversion {full_count} "
        f"({lora_count / full_count:.1%})"
    )
    grid = np.linspace(-3, 4, 141)[:, None].astype("float32")
    result = tfp_uq.predict(adapted, grid, num_samples=100, seed=0, task="regression")
    std = np.sqrt(result.epistemic_variance[:, 0])
    near = (grid[:, 0] >= 0) & (grid[:, 0] <= 1.5)
    far = grid[:, 0] > 2.5
    print(f"epistemic std: like the fine-tuning data {std[near].mean():.4f}, beyond it (x > 2.5) {std[far].mean():.4f}")
    fitted = tfp_uq.predict(adapted, x_new, num_samples=50, seed=0).mean
    print(f"fine-tuning RMSE {np.sqrt(np.mean((fitted - y_new) ** 2)):.3f}")
    tfp_uq.plots.predictive_band(
        grid,
        result.mean,
        std,
        x_train=x_new,
        y_train=y_new,
        path=os.path.join(args.output, "lora_band.png"),
        title="Bayesian LoRA: epistemic band",
    )
    return result


if __name__ == "__main__":
    main()
