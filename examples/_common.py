"""Shared argument parsing for the example scripts."""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse(description, argv):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
    parser.add_argument("--output", default="example_output", help="folder for plots")
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    return args
