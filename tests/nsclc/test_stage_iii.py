"""Stage III disease after chemoradiation (oncobench.nsclc.stage_iii) against RTOG 0617's 60 Gy arm."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest
import torch

from oncobench.nsclc import params as pm
from oncobench.nsclc import population as popmod
from oncobench.nsclc import stage_iii as s3
from oncobench.nsclc.latent import draw_latent
from oncobench.nsclc.regimens import load_library
from oncobench.nsclc.regression import stage_iii_cohort

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def library():
    return load_library()


def test_radiosensitive_share_moves_a_share_of_tumours_to_the_early_stage_median():
    """With share s, about s of the patients (binomial: 4 SE at n = 20000 is 0.013) have the
    radiosensitive median and the same normal draw: their alpha is the share-0 alpha times
    0.305 / 0.04 exactly; every other patient keeps the share-0 alpha."""
    params = pm.load_parameters()
    pop = popmod.draw_population(6, torch.arange(20000))
    base = draw_latent(6, pop, pm.with_values(params, {s3.KEY: 0.0})).radio_alpha_per_gy
    mixed = draw_latent(6, pop, pm.with_values(params, {s3.KEY: 0.3})).radio_alpha_per_gy
    moved = mixed != base
    ratio = params.get("radiotherapy.radiosensitive_alpha_per_gy_median") / params.get("radiotherapy.alpha_per_gy_median")
    assert abs(float(moved.double().mean()) - 0.3) < 0.013
    assert torch.allclose(mixed[moved], base[moved] * ratio, rtol=1e-12, atol=0)


SHARE0_FILE = Path(__file__).resolve().parents[2] / "docs" / "nsclc_model_share0.yaml"


def test_share0_file_is_the_default_without_the_radiosensitive_kind():
    """docs/nsclc_model_share0.yaml differs from the shipped default only in the share (0) and the
    clearance rate fitted at share 0 (the default of 82e8cbc to 19aaead)."""
    from oncobench.nsclc.regression import KEY as CLEARANCE
    from oncobench.tracking import flatten

    earlier, shipped = pm.load_parameters(SHARE0_FILE), pm.load_parameters()
    before, default = flatten(earlier.raw), flatten(shipped.raw)
    assert before.keys() == default.keys()
    assert {k for k in before if before[k] != default[k]} == {s3.KEY, CLEARANCE}
    assert earlier.get(s3.KEY) == 0.0 and 0.3 < shipped.get(s3.KEY) < 0.6
    assert earlier.get(CLEARANCE) == 0.026926


def test_default_reproduces_rtog_0617_and_share0_does_not(library):
    """The shipped default at n = 1000 (another seed than the fit's): the 5-year rate's binomial
    SE is 0.015, so 0.06 is four of them; the KM median's SE is about 1.3 months at a median of
    28.7 (exponential approximation, 1 / (2 f(m) sqrt(n))), so 0.2 in log units is about four.
    With no radiosensitive share fewer than 10% are alive at five years (3% at n = 4000)."""
    pop = stage_iii_cohort(3, 1000, torch.device("cpu"))
    now = s3.survival(pm.load_parameters(), library, pop, seed=3)
    assert abs(now["os_5y"] - s3.RTOG_0617_OS_5Y) < 0.06, now
    assert abs(math.log(now["os_median_months"] / s3.RTOG_0617_OS_MEDIAN_MONTHS)) < 0.2, now
    before = s3.survival(pm.load_parameters(SHARE0_FILE), library, pop, seed=3)
    assert before["os_5y"] < 0.1 and before["os_median_months"] < 22.0, before


def test_survival_reads_the_kaplan_meier_curve_as_lifelines_does(library, monkeypatch):
    """The median and the 60-month rate of :func:`survival` equal lifelines' on the same outcome."""
    from lifelines import KaplanMeierFitter

    from oncobench.nsclc import simulator

    params = pm.load_parameters()
    pop = stage_iii_cohort(4, 300, torch.device("cpu"))
    seen = {}
    real = simulator.simulate

    def keep(*a, **k):
        seen["out"] = real(*a, **k)
        return seen["out"]

    monkeypatch.setattr(s3, "simulate", keep)
    got = s3.survival(params, library, pop, seed=4)
    out = seen["out"]
    km = KaplanMeierFitter().fit(out.os_days.numpy() / s3.DAYS_PER_MONTH, out.os_event.numpy())
    assert got["os_median_months"] == pytest.approx(km.median_survival_time_, rel=1e-12)
    assert got["os_5y"] == pytest.approx(float(km.predict(60.0)), rel=1e-12)


def test_calibrate_stage_iii_command_writes_the_share_and_its_log(tmp_path):
    """`oncobench calibrate-stage-iii` on a small cohort: the parameter file with the fitted share
    (inside its bounds; comments kept, nothing else changed) and its .log."""
    from oncobench.cli import main

    out = tmp_path / "fitted.yaml"
    assert main(["calibrate-stage-iii", "--n", "150", "--out", str(out)]) == 0
    fitted, shipped = pm.load_parameters(out), pm.load_parameters()
    assert s3.BOUNDS[0] <= fitted.get(s3.KEY) <= s3.BOUNDS[1]
    assert pm.with_values(fitted, {s3.KEY: shipped.get(s3.KEY)}).raw == shipped.raw
    text = resources.files("oncobench").joinpath(pm.SHIPPED).read_text().splitlines()
    changed = [new for old, new in zip(text, out.read_text().splitlines(), strict=True) if old != new]
    assert len(changed) <= 1 and all("radiosensitive_share:" in line for line in changed)
    log_text = out.with_suffix(".log").read_text()
    assert "oncobench calibrate-stage-iii: seed" in log_text and "RTOG 0617 60 Gy arm" in log_text
