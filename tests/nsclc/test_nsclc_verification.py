"""NSCLC causal checks: the real model passes them, and planted defects that each check must catch."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from oncobench import io, schemas
from oncobench.config import load_config
from oncobench.inverse.checks import checks_frame, failed
from oncobench.nsclc import latent as latmod
from oncobench.nsclc import simulator, toxicity
from oncobench.nsclc import verification as nv
from oncobench.nsclc.drugs import DRUG_CLASSES
from oncobench.nsclc.model import NsclcModel
from oncobench.nsclc.params import with_values

SEED = 20171
N_CHECK = 300
HORIZON_DAYS = 200
CHECK_NAMES = {
    "natural_history", "causal_dose_response", "causal_null_dose", "page_trend", "targeted_null_effect",
    "targeted_positive_control", "combination_toxicity",
}


@pytest.fixture(scope="module")
def model() -> NsclcModel:
    torch.set_num_threads(1)
    return NsclcModel.from_config(load_config(overrides={"seed": SEED, "nsclc": {"horizon_days": HORIZON_DAYS}}))


@pytest.fixture(scope="module")
def patients(model):
    """Fresh patients for the check functions (the ids the verify stage draws)."""
    return model.draw(nv.CHECK_ID_OFFSET + torch.arange(N_CHECK))


@pytest.fixture(scope="module")
def rows(model, patients):
    """Every causal check on the real model."""
    return nv.causal_checks(model, *patients)


@pytest.fixture(scope="module")
def result(rows):
    """The checks as the verify stage writes them (schema VerificationCheck)."""
    return checks_frame(rows)


def _gated(rows):
    return [r for r in rows if r.op is not None]


def _failed(rows, check: str | None = None):
    return [r for r in _gated(rows) if not r.passed and (check is None or r.check == check)]


# ---------------------------------------------------------------- the real model


def test_every_causal_check_passes_on_the_real_model(rows):
    assert _gated(rows) and not failed(rows), [r.reason() for r in failed(rows)]


def test_every_check_appears_and_the_table_follows_the_schema(result):
    assert set(result["check"]) == CHECK_NAMES
    io.validate(result, schemas.VerificationCheck, "checks")


def test_exact_checks_hold_on_the_real_model(result):
    c = result
    gated = c[c["passed"].notna()]
    exact = gated[gated["check"].isin(["natural_history", "causal_null_dose", "targeted_null_effect"])]
    assert len(exact) == 1 + 2 + 2 and exact["passed"].astype(bool).all()
    nh = c[(c["check"] == "natural_history") & (c["metric"] == "max_relative_error")]["value"].iloc[0]
    assert nh < 1e-12
    burden = gated[(gated["check"] == "causal_dose_response") & gated["subject"].str.contains("burden")]
    assert len(burden) == 6 and burden["passed"].astype(bool).all()
    compared = c[c["metric"].isin(["patient_days_compared", "patients_compared"])]["value"]
    assert (compared > 0).all()
    subject = gated["subject"]
    carbo_nadir = gated[subject.str.startswith("carboplatin_pemetrexed") & subject.str.contains("nadir")]
    assert len(carbo_nadir) == 3 and carbo_nadir["passed"].astype(bool).all()


def test_statistical_checks_pass_on_the_real_model(result):
    gated = result[result["passed"].notna()]
    for check in ("page_trend", "targeted_positive_control", "combination_toxicity"):
        subset = gated[gated["check"] == check]
        assert len(subset) and subset["passed"].astype(bool).all(), subset.to_string()


def test_docetaxel_nadir_is_monotone_with_accurate_friberg_integration(model, patients, monkeypatch):
    step = toxicity.friberg_step

    def accurate(*args, **kwargs):
        return step(*args, **{**kwargs, "substeps": 16})

    monkeypatch.setattr(toxicity, "friberg_step", accurate)
    rows = nv.dose_response_checks(model, *patients, "docetaxel")
    assert _gated(rows) and not _failed(rows)


# ---------------------------------------------------------------- planted defects


def test_natural_history_catches_a_burden_off_the_analytic_solution(model, patients, monkeypatch):
    monkeypatch.setattr(simulator, "log_volume_to_sld", lambda lv: latmod.log_volume_to_sld(lv) * (1.0 + 1e-6))
    pop, lat = patients
    rows = nv.natural_history_checks(model, pop, lat, days=60)
    assert [r.metric for r in _failed(rows)] == ["max_relative_error"]


def test_negative_platinum_potency_breaks_the_dose_response(model, patients):
    # a treatment effect of the wrong sign: platinum grows the tumour
    params = with_values(model.params, {"drug_classes.platinum.potency_per_day": -0.01})
    wrong = dataclasses.replace(model, params=params)
    rows = nv.dose_response_checks(wrong, *patients, "carboplatin_pemetrexed")
    burden = [r for r in _gated(rows) if r.check == "causal_dose_response" and "burden" in r.subject]
    assert len(burden) == 3 and not any(r.passed for r in burden)
    assert {r.check for r in _failed(rows)} == {"causal_dose_response", "page_trend"}


def test_targeted_drug_acting_without_its_target_fails(model, patients):
    pop, lat = patients
    untargeted = dataclasses.replace(lat, sensitivity=torch.ones_like(lat.sensitivity))
    failed = _failed(nv.targeted_checks(model, pop, untargeted), "targeted_null_effect")
    assert {r.subject.split(" ")[0] for r in failed} == {"osimertinib", "alectinib"}


def test_targeted_drug_without_effect_fails_the_positive_control(model, patients):
    pop, lat = patients
    sens = lat.sensitivity.clone()
    sens[:, DRUG_CLASSES.index("egfr_tki_3g")] = 0.0
    rows = nv.targeted_checks(model, pop, dataclasses.replace(lat, sensitivity=sens))
    assert [r.check for r in _failed(rows)] == ["targeted_positive_control"]


def test_combination_less_toxic_than_its_part_fails(model, patients):
    # the combination given at zero dose has no adverse events; each part has some
    combo, parts = nv.COMBINATIONS[0]
    wrong = dataclasses.replace(model, library=nv.scaled_library(model.library, combo, 0.0))
    failed = _failed(nv.combination_toxicity_checks(wrong, *patients))
    assert [r.subject for r in failed] == [f"{combo} vs {part}" for part in parts]
