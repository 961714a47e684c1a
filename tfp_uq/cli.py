"""The `tfp-uq` command: demo, fit, evaluate and build-native."""

import argparse
import math
import os
import sys

__all__ = ["build_parser", "main"]


MODEL_FILE, PREPROCESSING_FILE = "model.keras", "preprocessing.json"


def _demo(args):
    from tfp_uq import _demo

    _demo.run(output_dir=args.output, epochs=args.epochs, seed=args.seed, export=not args.no_export)


def _evaluation(model, prep, x, y, num_samples, seed, output_dir=None, tag="validation"):
    """Metrics table rows for standardised inputs x and coded targets y."""
    import numpy as np

    import tfp_uq
    from tfp_uq import metrics

    # A model whose outputs are not finite for some rows gets NaN there, and those rows are referred.
    result = tfp_uq.predict(model, x, num_samples=num_samples, seed=seed, task=prep.task, on_nonfinite="refer")
    if y is None:
        return result, {}
    ok = ~result.nonfinite
    if not ok.all():
        print(f"{int((~ok).sum())} of {len(ok)} rows have non-finite predictions (referred); metrics are of the rest")
    if not ok.any():
        return result, {}
    y = np.asarray(y)[ok]
    if prep.task == "classification":
        probs = result.probs[ok]
        table = {
            "accuracy": metrics.accuracy(probs, y),
            "nll": metrics.negative_log_likelihood(probs, y),
            "ece": metrics.expected_calibration_error(probs, y),
            "brier": metrics.brier_score(probs, y),
        }
        if result.prediction_set is not None:
            table["conformal_coverage"] = metrics.set_coverage(result.prediction_set[ok], y)
            table["conformal_set_size"] = metrics.mean_set_size(result.prediction_set[ok])
        if output_dir:
            tfp_uq.plots.reliability_diagram(
                probs, y, title=f"Reliability ({tag})", path=os.path.join(output_dir, f"{tag}_reliability.png")
            )
    else:
        mean, std = result.mean[ok] * prep.y_std + prep.y_mean, np.maximum(result.std[ok], 1e-12) * prep.y_std
        target = y * prep.y_std + prep.y_mean
        table = {
            "rmse": metrics.rmse(target, mean),
            "nll": metrics.gaussian_nll(target, mean, std),
            "crps": metrics.crps_gaussian(target, mean, std),
            "picp_95": metrics.picp(target, mean, std, 0.95),
            "interval_width_95": metrics.mean_interval_width(std, 0.95),
        }
        if result.lower is not None:
            lower, upper = result.lower[ok] * prep.y_std + prep.y_mean, result.upper[ok] * prep.y_std + prep.y_mean
            table["conformal_coverage"] = metrics.interval_coverage(target, lower, upper)
            table["conformal_width"] = metrics.mean_width(lower, upper)
        if output_dir:
            tfp_uq.plots.calibration_curve(
                target, mean, std, title=f"Calibration ({tag})", path=os.path.join(output_dir, f"{tag}_calibration.png")
            )
    return result, table


def _build_native(args):
    import keras

    from tfp_uq import _native

    if keras.backend.backend() != "tensorflow":
        print(
            "tfp-uq: error: build-native compiles TensorFlow kernels, which the Keras backend "
            f"{keras.backend.backend()!r} does not use (its Bayesian layers draw with XLA-compiled code); "
            "run it with KERAS_BACKEND=tensorflow",
            file=sys.stderr,
        )
        return 1

    try:
        path = _native.build(compiler=args.compiler)
    except RuntimeError as error:
        print(f"tfp-uq: error: {error}", file=sys.stderr)
        return 1
    print(f"built {path}")
    return 0


def _print_table(title, table):
    print(f"\n{title}")
    for name, value in table.items():
        print(f"  {name:18s} {value:10.4f}")


def _fit(args):
    import keras
    import numpy as np

    from tfp_uq import _recipes, _tabular
    from tfp_uq.callbacks import ELBOMonitor

    x, y_cells, names = _tabular.features_and_target(args.csv, args.target)
    if len(x) < 10:
        raise _tabular.DataError(f"{args.csv}: {len(x)} rows are too few to train and validate (need >= 10)")
    order = np.random.default_rng(args.seed).permutation(len(x))
    num_val = max(1, int(round(args.val_fraction * len(x))))
    val, train = order[:num_val], order[num_val:]
    calibration = train[:0]
    if args.coverage is not None:  # conformal calibration on a held-out part of the training rows
        num_cal = max(1, int(round(args.calibration_fraction * len(train))))
        calibration, train = train[:num_cal], train[num_cal:]
    prep = _tabular.Preprocessing.fit(args.task, names, args.target, x[train], [y_cells[i] for i in train])
    y = prep.targets(y_cells, args.csv)
    outputs = len(prep.classes) if args.task == "classification" else 1
    held = f", {len(calibration)} calibration" if len(calibration) else ""
    print(
        f"{len(train)} training{held} and {len(val)} validation rows, {len(names)} features, "
        f"task {args.task}, method {args.method}"
    )
    keras.utils.set_random_seed(args.seed)
    steps = _recipes.decay_steps(len(train), args.epochs, args.batch_size)
    model = _recipes.build(
        args.method,
        len(names),
        args.task,
        outputs,
        len(train),
        hidden=tuple(args.hidden),
        seed=args.seed,
        learning_rate=args.learning_rate,
        decay_steps=steps,
    )
    model.fit(
        prep.inputs(x[train]),
        y[train],
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=2 if not args.quiet else 0,
        callbacks=[ELBOMonitor()],
    )
    model = _recipes.after_training(args.method, model, prep.inputs(x[train]), y[train], args.batch_size)
    os.makedirs(args.output, exist_ok=True)
    if len(calibration):
        from tfp_uq import conformal

        model = conformal.calibrate(
            model,
            prep.inputs(x[calibration]),
            y[calibration],
            coverage=args.coverage,
            num_samples=_recipes.num_predict_samples(args.method, args.samples),
            seed=args.seed,
        )
    _, table = _evaluation(
        model,
        prep,
        prep.inputs(x[val]),
        y[val],
        _recipes.num_predict_samples(args.method, args.samples),
        args.seed,
        args.output,
    )
    _print_table("validation metrics", table)
    from tfp_uq import posterior

    posterior.save(model, args.output)
    prep.save(os.path.join(args.output, PREPROCESSING_FILE))
    print(f"\nsaved the model, its preprocessing and plots in {os.path.abspath(args.output)}")


def _evaluate(args):
    import numpy as np

    from tfp_uq import _tabular, posterior

    for name in (MODEL_FILE, PREPROCESSING_FILE):
        if not os.path.exists(os.path.join(args.model, name)):
            raise _tabular.DataError(f"{args.model}: not a folder written by 'tfp-uq fit' (no {name})")
    prep = _tabular.Preprocessing.load(os.path.join(args.model, PREPROCESSING_FILE))
    model = posterior.load(args.model)  # any kind of posterior 'tfp-uq fit' saved
    x, y_cells, _ = _tabular.features_and_target(args.csv, prep.target, prep.feature_names)
    y = None if y_cells is None else prep.targets(y_cells, args.csv)
    result, table = _evaluation(model, prep, prep.inputs(x), y, args.samples, args.seed)
    if table:
        _print_table(f"metrics on {args.csv}", table)
    else:
        print(f"{args.csv} has no {prep.target!r} column: predictions only")
    if args.predictions:
        if prep.task == "classification":
            columns = {
                "predicted": [prep.classes[i] if i >= 0 else "" for i in result.predicted_class],
                "confidence": result.probs.max(-1),
                "entropy": result.total_entropy,
                "mutual_information": result.mutual_information,
            }
        else:
            columns = {
                "mean": result.mean[:, 0] * prep.y_std + prep.y_mean,
                "std": np.sqrt(result.variance[:, 0]) * prep.y_std,
                "epistemic_std": np.sqrt(result.epistemic_variance[:, 0]) * prep.y_std,
            }
        if result.lower is not None:
            columns["lower"] = result.lower[:, 0] * prep.y_std + prep.y_mean
            columns["upper"] = result.upper[:, 0] * prep.y_std + prep.y_mean
        if result.prediction_set is not None:
            columns["prediction_set"] = [
                "|".join(str(prep.classes[i]) for i in np.flatnonzero(row)) for row in result.prediction_set
            ]
        if args.refer_above is not None:
            from tfp_uq import selective

            score = columns["entropy"] if prep.task == "classification" else columns["std"]
            columns["refer"] = selective.should_refer(score, args.refer_above)
        with open(args.predictions, "w") as handle:
            handle.write(",".join(columns) + "\n")
            for row in zip(*columns.values()):
                handle.write(",".join(str(v) for v in row) + "\n")
        print(f"wrote {args.predictions}")


def build_parser():
    parser = argparse.ArgumentParser(prog="tfp-uq", description="Honest uncertainty for Keras models.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="compare a plain MLP with Bayesian models on bundled digits",
        description="Train a plain MLP (and fit a last-layer Laplace posterior to it), MC dropout, a Flipout "
        "BNN and a deep ensemble on scikit-learn's digits (0-8), hold out 9 as out-of-distribution, print "
        "accuracy, NLL, ECE, Brier and OOD AUROC, write plots and export the BNN as a SavedModel.",
    )
    demo.add_argument("--output", default="demo_output", help="folder for plots and the export (default: demo_output)")
    demo.add_argument("--epochs", type=int, default=60, help="training epochs per model (default: 60)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    demo.set_defaults(run=_demo)

    from tfp_uq._recipes import METHODS

    fit = commands.add_parser(
        "fit",
        help="train an uncertainty-aware MLP on a CSV file",
        description="Train on a CSV with a header row: features standardised, a validation split held "
        "out, metrics printed; the model, its preprocessing and plots are saved to --output.",
    )
    fit.add_argument("--csv", required=True, help="CSV file with a header row")
    fit.add_argument("--target", required=True, help="name of the target column")
    fit.add_argument("--task", required=True, choices=("regression", "classification"))
    fit.add_argument(
        "--method",
        default="flipout",
        choices=METHODS,
        help="how the MLP gets its uncertainty (default: flipout); laplace trains a plain MLP, then fits a "
        "last-layer KFAC Laplace posterior (tfp_uq.laplace.fit) with its prior precision by marginal likelihood",
    )
    fit.add_argument("--output", default="tfp_uq_model", help="folder for the model and plots (default: tfp_uq_model)")
    fit.add_argument("--epochs", type=int, default=100)
    fit.add_argument("--batch-size", type=int, default=32)
    fit.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="Adam's initial learning rate, cosine-decayed to 0 over training "
        "(default: 1e-2 for regression, 1e-3 for classification; raise it when a small data set underfits)",
    )
    fit.add_argument("--hidden", type=int, nargs="+", default=[50], help="hidden layer sizes (default: 50)")
    fit.add_argument("--val-fraction", type=float, default=0.2)
    fit.add_argument(
        "--coverage",
        type=float,
        default=None,
        help="calibrate conformal intervals (regression) or prediction sets (classification) with this coverage, "
        "e.g. 0.9, on a held-out part of the training rows; 'evaluate --predictions' then writes them",
    )
    fit.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.2,
        help="the part of the training rows held out for --coverage (default: 0.2)",
    )
    fit.add_argument("--samples", type=int, default=100, help="Monte Carlo samples for evaluation")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    fit.set_defaults(run=_fit)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a model saved by 'tfp-uq fit' on new data",
        description="Load a folder written by 'tfp-uq fit', predict with uncertainty on a CSV, print "
        "metrics when the target column is present, optionally write predictions.",
    )
    evaluate.add_argument("model", help="folder written by 'tfp-uq fit'")
    evaluate.add_argument("--csv", required=True)
    evaluate.add_argument("--samples", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--predictions", help="write per-row predictions to this CSV")
    evaluate.add_argument(
        "--refer-above",
        type=float,
        default=None,
        help="add a 'refer' column: True where the predictive entropy (classification) or std (regression, "
        "target units) is above this, or not finite",
    )
    evaluate.set_defaults(run=_evaluate)

    native = commands.add_parser(
        "build-native",
        help="compile the C++ kernels that speed up training without XLA",
        description="Compile tfp_uq's fused CPU kernels (posterior draw, KL and gradient; random "
        "draws) for the installed TensorFlow with the machine's C++ compiler. Bayesian layers use "
        "them in training steps not compiled with XLA; without them they use XLA-compiled draws.",
    )
    native.add_argument("--compiler", help="C++ compiler command (default: $CXX, else c++)")
    native.set_defaults(run=_build_native)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in ("epochs", "batch_size", "samples"):
        if getattr(args, option, 1) is not None and getattr(args, option, 1) < 1:
            parser.error(f"--{option.replace('_', '-')} must be a positive integer")
    learning_rate = getattr(args, "learning_rate", None)
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        parser.error("--learning-rate must be a positive number")
    for option in ("val_fraction", "coverage", "calibration_fraction"):
        value = getattr(args, option, None)
        if value is not None and not 0 < value < 1:
            parser.error(f"--{option.replace('_', '-')} must be in (0, 1)")
    from tfp_uq._tabular import DataError

    try:
        return args.run(args) or 0
    except DataError as error:
        print(f"tfp-uq: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
