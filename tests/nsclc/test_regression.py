"""Tumour regression during chemoradiation (oncobench.nsclc.regression) against Wald 2017."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest
import torch

from oncobench.nsclc import params as pm
from oncobench.nsclc import regression as rg
from oncobench.nsclc.regimens import load_library

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def library():
    return load_library()


def test_fractions_and_published_ratios(library):
    """60 Gy in 30 weekday fractions from day 0 (Monday); Wald 2017's medians over fraction 1's."""
    days = rg.fraction_days(library)
    assert len(days) == 30 and days[:6] == [0, 1, 2, 3, 4, 7] and days[-1] == 39
    ratios = rg.published_ratios()
    assert ratios == pytest.approx({11: 48.3 / 77.1, 21: 42.5 / 77.1, 30: 29.9 / 77.1}, rel=1e-15)


def test_without_the_doomed_volume_the_tumour_vanishes_ten_times_too_fast(library):
    """The reason for the compartment: with an infinite clearance rate the median scanned volume at
    the last fraction is under a tenth of the first (Wald 2017: 0.388); with the shipped rate it
    is within the sampling error of the median at n = 1000 (about 0.05 in log units, so 0.15 is
    three of them) plus the shipped fit's own largest log residual (fraction 11: 0.11)."""
    params = pm.load_parameters()
    pop = rg.stage_iii_cohort(3, 1000, torch.device("cpu"))
    gone = rg.volume_ratios(pm.with_values(params, {rg.KEY: math.inf}), library, pop, seed=3)
    assert gone[30] < 0.1
    shipped = rg.volume_ratios(params, library, pop, seed=3)
    for f, target in rg.published_ratios().items():
        assert abs(math.log(shipped[f] / target)) < 0.15 + 0.11, (f, shipped[f], target)


def test_calibrate_radiotherapy_command_writes_the_fitted_rate(tmp_path):
    """`oncobench calibrate-radiotherapy` on a small cohort: the parameter file with the fitted rate
    (comments kept, nothing else changed) and its .log. Seeds 1-5 gave 0.0216-0.0244 per day at
    n = 1000 and 0.0215-0.0262 at n = 400 against the shipped 0.0225 (n = 4000, seed 20171);
    n = 400 is given a factor of 1.5 either way."""
    from oncobench.cli import main

    out = tmp_path / "fitted.yaml"
    assert main(["calibrate-radiotherapy", "--n", "400", "--out", str(out)]) == 0
    fitted = pm.load_parameters(out)
    shipped = pm.load_parameters()
    rate = fitted.get(rg.KEY)
    assert shipped.get(rg.KEY) / 1.5 < rate < shipped.get(rg.KEY) * 1.5
    assert pm.with_values(fitted, {rg.KEY: shipped.get(rg.KEY)}).raw == shipped.raw
    text = resources.files("oncobench").joinpath(pm.SHIPPED).read_text().splitlines()
    changed = [new for old, new in zip(text, out.read_text().splitlines(), strict=True) if old != new]
    assert len(changed) <= 1 and all("doomed_clearance_per_day" in line for line in changed)
    log_text = out.with_suffix(".log").read_text()
    assert "oncobench calibrate-radiotherapy: seed" in log_text and f"{rg.KEY} = {rate:.5g}" in log_text



def test_parameter_file_rewrites_an_infinite_rate_both_ways(tmp_path):
    """The fit 5 file's `.inf` (no doomed volume) is a YAML float that `write_values` replaces,
    and an infinite value is written back as `.inf` (Python's "inf" would load as a string)."""
    from oncobench.nsclc.calibration import write_values

    text = (Path(__file__).resolve().parents[2] / "docs" / "nsclc_model_fit5.yaml").read_text()
    finite, back = tmp_path / "finite.yaml", tmp_path / "back.yaml"
    finite.write_text(write_values(text, {rg.KEY: 0.027}))
    assert pm.load_parameters(finite).get(rg.KEY) == 0.027
    back.write_text(write_values(finite.read_text(), {rg.KEY: math.inf}))
    assert back.read_text() == text
    assert pm.load_parameters(back).get(rg.KEY) == math.inf
