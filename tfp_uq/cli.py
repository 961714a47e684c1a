"""The `tfp-uq` command."""

import argparse
import os
import sys


def _demo(args):
    from tfp_uq import _demo

    _demo.run(output_dir=args.output, epochs=args.epochs, seed=args.seed, export=not args.no_export)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tfp-uq", description="Honest uncertainty for Keras models.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="compare a plain MLP with Bayesian models on bundled digits",
        description="Train a plain MLP and Bayesian MLPs on scikit-learn's digits (0-8), hold out 9 "
        "as out-of-distribution, print accuracy, NLL, ECE, Brier and OOD AUROC, and write plots.",
    )
    demo.add_argument("--output", default="demo_output", help="folder for plots and the export (default: demo_output)")
    demo.add_argument("--epochs", type=int, default=60, help="training epochs per model (default: 60)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
