"""Active learning on digits: BALD against random picks (about 90 s on 2 CPU cores).

Starts from 20 labelled digits, and in each round trains an MC-dropout MLP,
labels the 20 pool images with the highest BALD score (mutual information)
or 20 random ones, and prints the test accuracy per round for both.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402


def _accuracy_curve(strategy, x_pool, y_pool, x_test, y_test, rounds, epochs, seed=0):
    import keras
    import numpy as np

    import tfp_uq
    from tfp_uq import _recipes

    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(len(x_pool), 20, replace=False))
    curve = []
    for _ in range(rounds):
        keras.utils.set_random_seed(seed)
        model = _recipes.build(
            "mc_dropout",
            x_pool.shape[1],
            "classification",
            10,
            len(labelled),
            hidden=(128,),
            dropout_rate=0.3,
            seed=seed,
        )
        model.fit(x_pool[labelled], y_pool[labelled], epochs=epochs, batch_size=32, verbose=0)
        curve.append(tfp_uq.metrics.accuracy(tfp_uq.predict(model, x_test, num_samples=20, seed=0).probs, y_test))
        unlabelled = np.setdiff1d(np.arange(len(x_pool)), labelled)
        if strategy == "bald":
            pool = tfp_uq.predict(model, x_pool[unlabelled], num_samples=20, seed=0)
            picked = unlabelled[tfp_uq.active_learning.select(pool, 20, method="bald")]
        else:
            picked = rng.choice(unlabelled, 20, replace=False)
        labelled.extend(int(i) for i in picked)
    return curve


def main(argv=None):
    args = _common.parse(__doc__.split("\n")[0], argv)
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(x))
    pool, test = order[:1300], order[1300:]
    rounds, epochs = (2, 5) if args.quick else (8, 60)
    curves = {s: _accuracy_curve(s, x[pool], y[pool], x[test], y[test], rounds, epochs) for s in ("bald", "random")}
    print("labels  " + "  ".join(f"{20 * (r + 1):5d}" for r in range(rounds)))
    for strategy, curve in curves.items():
        print(f"{strategy:7s} " + "  ".join(f"{a:5.3f}" for a in curve))
    return curves


if __name__ == "__main__":
    main()
