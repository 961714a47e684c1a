"""CSV tables for the `tfp-uq fit` / `evaluate` commands."""

import csv
import json
import math
import os

import numpy as np


class DataError(ValueError):
    """A problem with the user's data, reported as one line."""


def read_csv(path):
    """(header, rows of strings) of a CSV file with a header line."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    with open(path, newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        # The delimiter of the header line: a comma, or a semicolon or tab.
        delimiter = max(",;\t", key=first.count) if first.count(",") == 0 else ","
        rows = [row for row in csv.reader(handle, delimiter=delimiter) if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{path}: the file is empty")
    header = [name.strip() for name in rows[0]]
    if len(rows) < 2:
        raise DataError(f"{path}: no data rows under the header")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {number} has {len(row)} fields, the header has {len(header)}")
    return header, rows[1:]


def _numbers(path, name, cells):
    values = np.empty(len(cells))
    for i, cell in enumerate(cells):
        text = cell.strip()
        try:
            values[i] = float(text) if text else math.nan
        except ValueError:
            raise DataError(f"{path}: column {name!r} is not numeric (line {i + 2}: {text!r})") from None
        if not math.isfinite(values[i]):
            raise DataError(f"{path}: column {name!r} has a missing or infinite value (line {i + 2}: {text!r})")
    return values


def features_and_target(path, target, feature_names=None):
    """Numeric feature matrix, raw target cells (or None), feature names."""
    header, rows = read_csv(path)
    if target is not None and target not in header and feature_names is None:
        raise DataError(f"{path}: no target column {target!r}; columns are {', '.join(header)}")
    if feature_names is None:
        feature_names = [name for name in header if name != target]
    missing = [name for name in feature_names if name not in header]
    if missing:
        raise DataError(f"{path}: missing feature columns {', '.join(missing)}")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    x = np.stack([_numbers(path, name, columns[name]) for name in feature_names], axis=1)
    y = [cell.strip() for cell in columns[target]] if target in columns else None
    return x.astype("float32"), y, feature_names


class Preprocessing:
    """Standardisation and label coding fitted on the training split, saved as JSON."""

    def __init__(self, task, feature_names, target, x_mean, x_std, classes=None, y_mean=0.0, y_std=1.0):
        self.task, self.feature_names, self.target = task, list(feature_names), target
        self.x_mean, self.x_std = np.asarray(x_mean, "float32"), np.asarray(x_std, "float32")
        self.classes, self.y_mean, self.y_std = classes, float(y_mean), float(y_std)

    @classmethod
    def fit(cls, task, feature_names, target, x, y_cells):
        std = x.std(0)
        std[std == 0] = 1.0
        if task == "classification":
            return cls(task, feature_names, target, x.mean(0), std, classes=sorted(set(y_cells)))
        y = _numbers("target", target, y_cells)
        return cls(task, feature_names, target, x.mean(0), std, y_mean=y.mean(), y_std=y.std() or 1.0)

    def inputs(self, x):
        return ((x - self.x_mean) / self.x_std).astype("float32")

    def targets(self, y_cells, path="data"):
        if self.task == "classification":
            index = {label: i for i, label in enumerate(self.classes)}
            unknown = sorted(set(y_cells) - set(index))
            if unknown:
                raise DataError(f"{path}: target labels {unknown} were not seen in training")
            return np.array([index[c] for c in y_cells], dtype="int64")
        return ((_numbers(path, self.target, y_cells) - self.y_mean) / self.y_std).astype("float32")[:, None]

    def save(self, path):
        with open(path, "w") as handle:
            json.dump({**self.__dict__, "x_mean": self.x_mean.tolist(), "x_std": self.x_std.tolist()}, handle, indent=1)

    @classmethod
    def load(cls, path):
        with open(path) as handle:
            return cls(**json.load(handle))
