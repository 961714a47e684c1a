"""Heteroscedastic regression: learned noise plus weight uncertainty (about 30 s).

A 1-D toy problem whose noise grows with x and with a gap in the data. A
DenseFlipout MLP with a GaussianHead learns both parts: aleatoric (noise)
and epistemic (grows in the gap and outside the data). Writes a predictive
band plot and prints the calibration of the predictive.
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
    x = np.concatenate([rng.uniform(-3, -0.5, 300), rng.uniform(1, 3, 300)])[:, None].astype("float32")
    y = (np.sin(x) + (0.05 + 0.15 * np.abs(x)) * rng.normal(size=x.shape)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((1,)),
            tfp_uq.DenseFlipout(64, activation="relu", seed=1),
            tfp_uq.DenseFlipout(64, activation="relu", seed=2),
            tfp_uq.DenseFlipout(2, seed=3),
            tfp_uq.GaussianHead(),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=len(x))
    model.compile(keras.optimizers.Adam(3e-3), tfp_uq.losses.GaussianNLL(), jit_compile=True)
    model.fit(x, y, epochs=5 if args.quick else 300, batch_size=64, verbose=0)

    grid = np.linspace(-4.5, 4.5, 300)[:, None].astype("float32")
    result = tfp_uq.predict(model, grid, num_samples=100, seed=0)
    tfp_uq.plots.predictive_band(
        grid,
        result.mean,
        result.std,
        x_train=x,
        y_train=y,
        y_true=np.sin(grid),
        path=os.path.join(args.output, "predictive_band.png"),
    )
    g = grid[:, 0]
    regions = {
        "in the data": ((g > -3) & (g < -0.5)) | ((g > 1) & (g < 3)),
        "in the gap": (g > -0.5) & (g < 1),
        "outside the data": np.abs(g) > 3,
    }
    epistemic = np.sqrt(result.epistemic_variance[:, 0])
    print("mean epistemic std: " + ", ".join(f"{name} {epistemic[mask].mean():.3f}" for name, mask in regions.items()))
    train = tfp_uq.predict(model, x, num_samples=100, seed=0)
    print(
        f"training-data 95% interval coverage {tfp_uq.metrics.picp(y, train.mean, train.std):.3f}, "
        f"miscalibration area {tfp_uq.metrics.miscalibration_area(y, train.mean, train.std):.3f}"
    )
    return result


if __name__ == "__main__":
    main()
