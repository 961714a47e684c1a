"""`tfp-uq demo`: the Laplace row is a posterior of the plain MLP trained in the same run."""

import os

import pytest

from tfp_uq import _demo

MODELS = (("plain MLP", "plain"), ("Laplace (LL)", "laplace"))


@pytest.mark.slow  # 23 s on the shared 2-core host, most of it compiling the MLP's training step
def test_the_laplace_row_fits_the_plain_mlp_of_the_row_above(tmp_path):
    rows = _demo.run(output_dir=str(tmp_path), epochs=5, export=False, quiet=True, models=MODELS)
    assert [row["model"] for row in rows] == ["plain MLP", "Laplace (LL)"]
    plain, laplace = rows
    # The probit predictive softens the plain MLP's logits; it keeps nearly every decision (486 test images).
    assert abs(laplace["accuracy"] - plain["accuracy"]) <= 0.02
    assert laplace["nll"] != plain["nll"]
    assert "Laplace (LL)" in _demo.format_table(rows)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert os.path.isfile(tmp_path / "laplace_reliability.png")
