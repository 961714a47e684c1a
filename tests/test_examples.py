"""Every example runs (in its --quick form) and produces its plots."""

import importlib.util
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")
SCRIPTS = {
    "digits_ood": ["digits_reliability.png", "ood_digit_9.png", "ood_noise_images.png"],
    "heteroscedastic_regression": ["predictive_band.png"],
    "hmc_regression": ["hmc_band.png"],
    "active_learning_digits": [],
    "bayesianize_model": [],
    "bayesian_lora": ["lora_band.png"],
    "binary_diagnosis": ["diagnosis_reliability.png"],
}


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_example_runs(name, tmp_path):
    result = _load(name).main(["--quick", "--output", str(tmp_path)])
    assert result is not None
    for png in SCRIPTS[name]:
        assert (tmp_path / png).stat().st_size > 1000, png
