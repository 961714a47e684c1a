import contextlib
import io
import shutil

import keras
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from tfp_uq import cli


def _write_csv(path, header, rows):
    with open(path, "w") as handle:
        handle.write(",".join(header) + "\n")
        for row in rows:
            handle.write(",".join(str(v) for v in row) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory):
    iris = load_iris()
    rows = [list(x) + [iris.target_names[t]] for x, t in zip(iris.data, iris.target)]
    return _write_csv(tmp_path_factory.mktemp("iris") / "iris.csv", ["sl", "sw", "pl", "pw", "species"], rows)


@pytest.fixture(scope="module")
def flipout_iris(iris_csv, tmp_path_factory):
    """A Flipout classifier that `tfp-uq fit` trained on iris: (exit code, output folder, what fit printed)."""
    out = str(tmp_path_factory.mktemp("flipout") / "model")
    args = ["fit", "--csv", iris_csv, "--target", "species", "--task", "classification", "--method", "flipout"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        # Batches of 40: 120 training rows make 3 full batches, so the XLA step compiles once, not twice.
        code = cli.main(args + ["--epochs", "40", "--batch-size", "40", "--output", out, "--quiet"])
    return code, out, printed.getvalue()


def test_fit_then_evaluate_classification(flipout_iris, iris_csv, tmp_path, capsys):
    code, out, printed = flipout_iris
    assert code == 0
    assert "validation metrics" in printed
    predictions = str(tmp_path / "pred.csv")
    assert cli.main(["evaluate", out, "--csv", iris_csv, "--predictions", predictions]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("accuracy")[1].split()[0])
    assert accuracy > 0.8
    lines = open(predictions).read().splitlines()
    assert lines[0] == "predicted,confidence,entropy,mutual_information" and len(lines) == 151


def test_fit_regression_writes_plot_and_uses_the_learning_rate_given(tmp_path, capsys):
    data = load_diabetes()
    csv = _write_csv(
        tmp_path / "d.csv", [f"f{i}" for i in range(10)] + ["y"], np.column_stack([data.data, data.target]).tolist()
    )
    out = tmp_path / "model"
    assert (
        cli.main(
            [
                "fit",
                "--csv",
                csv,
                "--target",
                "y",
                "--task",
                "regression",
                "--method",
                "mc_dropout",
                "--epochs",
                "5",
                "--learning-rate",
                "0.05",
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "picp_95" in capsys.readouterr().out
    assert (out / "validation_calibration.png").exists() and (out / "model.keras").exists()
    schedule = keras.models.load_model(out / "model.keras").optimizer.get_config()["learning_rate"]["config"]
    assert schedule["initial_learning_rate"] == pytest.approx(0.05)
    assert schedule["decay_steps"] == 5 * 12  # 5 epochs of ceil(354 / 32) steps


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("a,b\n1,2\n3,4\n", "no target column 'y'"),
        ("a,y\n1,2\nx,4\n", "not numeric"),
        ("a,y\n1,2\nnan,4\n", "missing or infinite value (line 3: 'nan')"),
        ("a,y\n1,2\n,4\n", "missing or infinite value (line 3: '')"),
        ("a,y\n1,2\ninf,4\n", "missing or infinite value"),
        ("a;b\n1;2\n3;4\n", "no target column 'y'; columns are a, b"),  # semicolons read as delimiters
        ("a,y\n1,2\n3\n", "fields"),
    ],
)
def test_bad_csv_gives_one_clear_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code = cli.main(["fit", "--csv", str(path), "--target", "y", "--task", "regression", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_missing_file_and_bad_option(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path), "--csv", "x.csv"]) == 2
    assert "not a folder written by" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["fit", "--csv", "x.csv", "--target", "y", "--task", "regression", "--epochs", "0"])
    assert "--epochs must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["fit", "--csv", "x.csv", "--target", "y", "--task", "regression", "--learning-rate", "-1"])
    assert "--learning-rate must be a positive number" in capsys.readouterr().err


def test_every_subcommand_has_help(capsys):
    for command in ("demo", "fit", "evaluate"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: tfp-uq" in capsys.readouterr().out


def test_evaluate_refers_rows_above_the_threshold_and_rows_of_a_diverged_model(
    flipout_iris, iris_csv, tmp_path, capsys
):
    code, fitted, _ = flipout_iris
    assert code == 0
    out = str(tmp_path / "model")
    shutil.copytree(fitted, out)  # a copy: its weights are made to diverge below
    predictions = str(tmp_path / "pred.csv")
    assert cli.main(["evaluate", out, "--csv", iris_csv, "--predictions", predictions, "--refer-above", "0.5"]) == 0
    header, *rows = open(predictions).read().splitlines()
    assert header == "predicted,confidence,entropy,mutual_information,refer"
    entropy = np.array([float(row.split(",")[2]) for row in rows])
    refer = np.array([row.split(",")[4] == "True" for row in rows])
    np.testing.assert_array_equal(refer, entropy > 0.5)
    assert refer.any() and not refer.all()  # the threshold splits the rows
    # Weights that diverged to NaN: every row is referred, with no predicted class.
    import tfp_uq  # noqa: F401  (registers the layers for loading)

    model = keras.models.load_model(f"{out}/model.keras")
    model.layers[0].kernel.assign(np.full(model.layers[0].kernel.shape, np.nan, "float32"))
    model.save(f"{out}/model.keras")
    capsys.readouterr()
    assert cli.main(["evaluate", out, "--csv", iris_csv, "--predictions", predictions, "--refer-above", "0.5"]) == 0
    assert "150 of 150 rows have non-finite predictions" in capsys.readouterr().out
    rows = open(predictions).read().splitlines()[1:]
    assert all(row.startswith(",") and row.endswith(",True") for row in rows)


def test_fit_with_coverage_writes_conformal_intervals_that_cover(tmp_path, capsys):
    data = load_diabetes()
    csv = _write_csv(
        tmp_path / "d.csv", [f"f{i}" for i in range(10)] + ["y"], np.column_stack([data.data, data.target]).tolist()
    )
    out = str(tmp_path / "model")
    args = ["fit", "--csv", csv, "--target", "y", "--task", "regression", "--method", "mc_dropout", "--epochs", "20"]
    assert cli.main(args + ["--coverage", "0.9", "--output", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "calibration" in printed and "conformal_coverage" in printed
    predictions = str(tmp_path / "pred.csv")
    assert cli.main(["evaluate", out, "--csv", csv, "--predictions", predictions]) == 0
    header, *rows = open(predictions).read().splitlines()
    assert header == "mean,std,epistemic_std,lower,upper"
    values = np.array([[float(v) for v in row.split(",")] for row in rows])
    covered = np.mean((values[:, 3] <= data.target) & (data.target <= values[:, 4]))
    # 442 rows, most of them training rows: coverage at least near the promise (binomial s.e. ~1.4 points).
    assert covered > 0.85
    with pytest.raises(SystemExit):
        cli.main(["fit", "--csv", csv, "--target", "y", "--task", "regression", "--coverage", "1.5"])
    assert "--coverage must be in (0, 1)" in capsys.readouterr().err


def test_fit_with_ivon_saves_the_learned_posterior(iris_csv, tmp_path, capsys):
    import json

    out = str(tmp_path / "model")
    args = ["fit", "--csv", iris_csv, "--target", "species", "--task", "classification", "--method", "ivon"]
    assert cli.main(args + ["--epochs", "30", "--batch-size", "40", "--output", out, "--quiet"]) == 0
    assert json.load(open(f"{out}/posterior.json"))["class"] == "tfp_uq>IVONPosterior"
    assert cli.main(["evaluate", out, "--csv", iris_csv]) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy")[-1].split()[0])
    assert accuracy > 0.8


@pytest.mark.slow
def test_fit_with_laplace_saves_the_posterior_of_the_trained_plain_model(iris_csv, tmp_path, capsys):
    import json

    import tfp_uq
    from tfp_uq import laplace

    out = str(tmp_path / "model")
    args = ["fit", "--csv", iris_csv, "--target", "species", "--task", "classification", "--method", "laplace"]
    assert cli.main(args + ["--epochs", "30", "--output", out, "--quiet"]) == 0
    assert "method laplace" in capsys.readouterr().out
    saved = json.load(open(f"{out}/posterior.json"))
    assert saved["class"] == "tfp_uq>LaplacePosterior"
    posterior = tfp_uq.posterior.load(out)
    assert isinstance(posterior, laplace.LaplacePosterior)
    # The plain MLP's last Dense layer, KFAC, a prior precision that maximises the marginal likelihood.
    assert posterior.layer_names == [posterior.model.layers[-1].name] and posterior.hessian == "kron"
    best = posterior.log_marginal_likelihood()
    for factor in (0.8, 1.25):
        assert posterior.log_marginal_likelihood(prior_precision=posterior.prior_precision * factor) < best
    predictions = str(tmp_path / "pred.csv")
    assert cli.main(["evaluate", out, "--csv", iris_csv, "--predictions", predictions]) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy")[-1].split()[0])
    assert accuracy > 0.8
    header, *rows = open(predictions).read().splitlines()
    assert header == "predicted,confidence,entropy,mutual_information" and len(rows) == 150
    assert all(float(row.split(",")[3]) > 0 for row in rows)  # the posterior's epistemic part
