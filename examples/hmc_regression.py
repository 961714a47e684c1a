"""HMC (NUTS) on a small Keras regression model (about 40 s on 2 CPU cores).

Trains a 1-hidden-layer tanh MLP to a MAP estimate, then samples its weight
posterior with NUTS from there (4 chains, XLA), prints the diagnostics and
the posterior predictive's coverage, and plots the predictive band.
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
    x = rng.uniform(-2, 2, size=(60, 1)).astype("float32")
    y = (np.sin(2 * x) + 0.1 * rng.normal(size=x.shape)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.02), "mse")
    model.fit(x, y, epochs=30 if args.quick else 300, batch_size=60, verbose=0)

    steps = 20 if args.quick else 400
    posterior = tfp_uq.inference.sample_posterior(
        model,
        x,
        y,
        noise_scale=0.1,
        num_chains=4,
        num_burnin=steps,
        num_results=steps,
        seed=1,
    )
    d = posterior.diagnostics
    print(
        f"max R-hat {d['max_rhat']:.3f}, min ESS {d['min_ess']:.0f}, acceptance {d['acceptance_rate']:.2f}, "
        f"divergences {d['num_divergences']}, step size {d['step_size']:.4f}, {d['seconds']:.0f} s"
    )
    grid = np.linspace(-3, 3, 200)[:, None].astype("float32")
    result = posterior.predict(grid)
    truth = np.sin(2 * grid) + 0.1 * rng.normal(size=grid.shape)
    inside = np.abs(truth - result.mean) < 1.96 * result.std
    print(f"95% predictive interval covers {inside[np.abs(grid[:, 0]) < 2].mean():.3f} of fresh data inside [-2, 2]")
    tfp_uq.plots.predictive_band(
        grid,
        result.mean,
        result.std,
        x_train=x,
        y_train=y,
        path=os.path.join(args.output, "hmc_band.png"),
        title="NUTS posterior predictive",
    )
    return posterior


if __name__ == "__main__":
    main()
