"""Plots a person can read: calibration, risk-coverage, predictive bands.

Needs matplotlib (`pip install tfp-uq[plot]`). Every function returns a
`matplotlib.figure.Figure` and, given `path`, also writes it as a PNG. No
pyplot state is touched, so they are safe in scripts and servers.
"""

import numpy as np

from tfp_uq import metrics, selective

__all__ = ["reliability_diagram", "calibration_curve", "risk_coverage", "predictive_band", "uncertainty_histogram"]


def _figure(width=5.0, height=4.0):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - matplotlib is an extra
        raise ImportError("tfp_uq.plots needs matplotlib: pip install 'tfp-uq[plot]'") from error
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _finish(figure, path):
    if path is not None:
        figure.savefig(path, format="png")
    return figure


def reliability_diagram(probs, labels, num_bins=15, title="Reliability diagram", path=None):
    """Accuracy against confidence per bin, with the count of each bin.

    Bars below the diagonal mean overconfidence. The ECE is in the legend.
    """
    table = metrics.reliability_table(probs, labels, num_bins)
    ece = metrics.expected_calibration_error(probs, labels, num_bins)
    edges = table["bin_edges"]
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    figure = _figure(5.0, 5.5)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    accuracy = np.nan_to_num(table["accuracy"])
    top.bar(centres, accuracy, width=width, edgecolor="black", color="tab:blue", label=f"accuracy (ECE = {ece:.3f})")
    confidence = np.nan_to_num(table["confidence"])
    top.bar(
        centres,
        np.abs(confidence - accuracy),
        bottom=np.minimum(confidence, accuracy),
        width=width,
        facecolor="none",
        edgecolor="tab:red",
        hatch="//",
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(loc="upper left")
    bottom.bar(centres, table["count"], width=width, color="gray", edgecolor="black")
    for x, count in zip(centres, table["count"]):
        if count:
            bottom.text(x, count, str(int(count)), ha="center", va="bottom", fontsize=7)
    bottom.set(xlabel="confidence (top-label probability)", ylabel="examples")
    return _finish(figure, path)


def calibration_curve(y, mean, std, title="Regression calibration", path=None):
    """Observed against expected quantile levels (Kuleshov et al. 2018)."""
    expected, observed = metrics.calibration_curve(y, mean, std)
    area = metrics.miscalibration_area(y, mean, std)
    figure = _figure()
    axes = figure.subplots()
    axes.plot(expected, observed, color="tab:blue", label=f"model (miscalibration area = {area:.3f})")
    axes.fill_between(expected, expected, observed, color="tab:blue", alpha=0.2)
    axes.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    axes.set(
        xlabel="expected proportion below predicted quantile",
        ylabel="observed proportion",
        xlim=(0, 1),
        ylim=(0, 1),
        title=title,
    )
    axes.legend(loc="upper left")
    return _finish(figure, path)


def risk_coverage(uncertainty, losses, title="Risk-coverage", path=None):
    """Risk of answering only the most certain fraction of inputs."""
    coverage, risk, _ = selective.risk_coverage_curve(uncertainty, losses)
    aurc = selective.area_under_risk_coverage(uncertainty, losses)
    figure = _figure()
    axes = figure.subplots()
    axes.plot(coverage, risk, color="tab:blue", label=f"model (AURC = {aurc:.3f})")
    axes.axhline(risk[-1], color="gray", linestyle=":", label=f"answer all (risk = {risk[-1]:.3f})")
    axes.set(xlabel="coverage (fraction answered)", ylabel="risk (mean loss of answered)", xlim=(0, 1), title=title)
    axes.legend(loc="upper left")
    return _finish(figure, path)


def predictive_band(x, mean, std, x_train=None, y_train=None, y_true=None, title="Predictive distribution", path=None):
    """Mean and 68% / 95% bands of a 1-D regression, with the training data."""
    x, mean, std = (np.asarray(a, dtype="float64").ravel() for a in (x, mean, std))
    if not x.shape == mean.shape == std.shape:
        raise ValueError("x, mean and std must have one length")
    order = np.argsort(x)
    x, mean, std = x[order], mean[order], std[order]
    figure = _figure(6.0, 4.0)
    axes = figure.subplots()
    for width, alpha, label in ((1.96, 0.15, "95% band"), (1.0, 0.3, "68% band")):
        axes.fill_between(x, mean - width * std, mean + width * std, color="tab:blue", alpha=alpha, label=label)
    axes.plot(x, mean, color="tab:blue", label="predictive mean")
    if y_true is not None:
        axes.plot(x, np.asarray(y_true).ravel()[order], "k--", label="truth")
    if x_train is not None and y_train is not None:
        axes.scatter(np.ravel(x_train), np.ravel(y_train), s=8, color="black", alpha=0.5, label="training data")
    axes.set(xlabel="x", ylabel="y", title=title)
    axes.legend(loc="best")
    return _finish(figure, path)


def uncertainty_histogram(in_distribution, out_of_distribution, score_name="uncertainty", title=None, path=None):
    """Histograms of an uncertainty score in and out of distribution, with AUROC."""
    in_scores = np.asarray(in_distribution, dtype="float64").ravel()
    out_scores = np.asarray(out_of_distribution, dtype="float64").ravel()
    auroc = metrics.auroc(
        np.concatenate([in_scores, out_scores]),
        np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))]),
    )
    figure = _figure()
    axes = figure.subplots()
    bins = np.histogram_bin_edges(np.concatenate([in_scores, out_scores]), bins=30)
    axes.hist(in_scores, bins=bins, alpha=0.6, density=True, label="in distribution")
    axes.hist(out_scores, bins=bins, alpha=0.6, density=True, label="out of distribution")
    axes.set(xlabel=score_name, ylabel="density", title=title or f"{score_name}: OOD AUROC = {auroc:.3f}")
    axes.legend(loc="best")
    return _finish(figure, path)


def coverage_vs_nominal(nominal, observed, num_test=None, labels=None, title="Coverage vs nominal", path=None):
    """Observed coverage of intervals or sets against the promised levels.

    Args:
        nominal: the promised coverages, shape (L,).
        observed: the coverages measured on test data, shape (L,), or
            (M, L) for M methods.
        num_test: test inputs behind each observed coverage: draws a 95%
            binomial band, nominal +- 1.96 sqrt(c (1 - c) / num_test),
            where a calibrated method's points fall.
        labels: one legend label per method.
    """
    from tfp_uq import _validation

    nominal = np.asarray(nominal, dtype="float64").ravel()
    observed = np.atleast_2d(np.asarray(observed, dtype="float64"))
    if observed.shape[1] != nominal.size:
        raise ValueError(
            f"observed must have {nominal.size} coverages per method to match nominal, got {observed.shape}"
        )
    labels = labels or [None] * len(observed)
    if len(labels) != len(observed):
        raise ValueError(f"labels must have one entry per method ({len(observed)}), got {len(labels)}")
    figure = _figure()
    axes = figure.subplots()
    lo, hi = min(nominal.min(), observed.min()), max(nominal.max(), observed.max())
    margin = 0.05 * max(hi - lo, 0.01)
    axes.plot([lo - margin, hi + margin], [lo - margin, hi + margin], "k--", label="promised")
    if num_test is not None:
        grid = np.linspace(lo - margin, hi + margin, 100).clip(1e-6, 1 - 1e-6)
        band = 1.96 * np.sqrt(grid * (1 - grid) / _validation.positive_int("num_test", num_test))
        axes.fill_between(
            grid, grid - band, grid + band, color="gray", alpha=0.25, label=f"95% band, {num_test} inputs"
        )
    for row, label in zip(observed, labels):
        axes.plot(nominal, row, "o-", label=label)
    axes.set(xlabel="nominal coverage", ylabel="observed coverage", title=title)
    axes.legend(loc="upper left")
    return _finish(figure, path)


def interval_width_histogram(lower, upper, title="Interval widths", path=None):
    """Histogram of the widths upper - lower, with their mean (finite intervals only)."""
    widths = np.asarray(upper, dtype="float64").ravel() - np.asarray(lower, dtype="float64").ravel()
    finite = widths[np.isfinite(widths)]
    if finite.size == 0:
        raise ValueError("lower and upper must give at least one finite interval")
    figure = _figure()
    axes = figure.subplots()
    axes.hist(finite, bins=30, color="tab:blue", edgecolor="black")
    axes.axvline(finite.mean(), color="tab:red", label=f"mean width = {finite.mean():.3g}")
    unbounded = widths.size - finite.size
    axes.set(xlabel="interval width", ylabel="inputs", title=title + (f" ({unbounded} unbounded)" if unbounded else ""))
    axes.legend(loc="upper right")
    return _finish(figure, path)


def set_size_histogram(prediction_set, title="Prediction set sizes", path=None):
    """Bar chart of how many inputs got sets of each size (0 to the number of classes)."""
    sizes = np.sum(np.asarray(prediction_set, dtype=bool), axis=-1).ravel()
    num_classes = np.shape(prediction_set)[-1]
    counts = np.bincount(sizes, minlength=num_classes + 1)
    figure = _figure()
    axes = figure.subplots()
    axes.bar(
        np.arange(num_classes + 1), counts, color="tab:blue", edgecolor="black", label=f"mean size = {sizes.mean():.2f}"
    )
    axes.set(xlabel="set size (classes)", ylabel="inputs", title=title, xticks=np.arange(num_classes + 1))
    axes.legend(loc="upper right")
    return _finish(figure, path)
