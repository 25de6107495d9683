"""NSCLC verify stage: the real model's checks, and planted defects that each check must catch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from oncobench import io, schemas
from oncobench.config import load_config
from oncobench.nsclc import latent as latmod
from oncobench.nsclc import simulator, tables, toxicity
from oncobench.nsclc import verification as nv
from oncobench.nsclc.drugs import DRUG_CLASSES
from oncobench.nsclc.model import NsclcModel
from oncobench.nsclc.params import with_values

SEED = 20171
N_RELEASE = 300
N_TRAIN = 400
N_CHECK = 300
HORIZON_DAYS = 200
GAMMA = 2.0
CPU = torch.device("cpu")
CHECK_NAMES = {
    "natural_history", "causal_dose_response", "causal_null_dose", "page_trend", "targeted_null_effect",
    "targeted_positive_control", "combination_toxicity", "identifiability", "identifiability_finding",
}


@pytest.fixture(scope="module")
def model() -> NsclcModel:
    torch.set_num_threads(1)
    return NsclcModel.from_config(load_config(overrides={"seed": SEED, "nsclc": {"horizon_days": HORIZON_DAYS}}))


@pytest.fixture(scope="module")
def release(model):
    cohort = model.cohort_frame(torch.arange(N_RELEASE))
    pop, lat = model.from_cohort_frame(cohort)
    trajectories, _ = model.factual(pop, lat, GAMMA)
    return cohort, trajectories


@pytest.fixture(scope="module")
def result(model, release):
    cohort, trajectories = release
    with threadpool_limits(1):
        return nv.verify_nsclc(
            cohort, trajectories, model, gamma=GAMMA, device=CPU, train_patients=N_TRAIN, check_patients=N_CHECK
        )


@pytest.fixture(scope="module")
def patients(model):
    """Fresh patients for the check functions (the ids verify_nsclc draws)."""
    return model.draw(nv.CHECK_ID_OFFSET + torch.arange(N_CHECK))


def _gated(rows):
    return [r for r in rows if r.op is not None]


def _failed(rows, check: str | None = None):
    return [r for r in _gated(rows) if not r.passed and (check is None or r.check == check)]


# ---------------------------------------------------------------- the real model


def test_verdict_passes_on_the_real_model(result):
    assert result.verdict["verdict"].iloc[0] == "pass", result.verdict["reasons"].iloc[0]


def test_every_check_appears_and_tables_follow_the_schemas(result):
    assert set(result.checks["check"]) == CHECK_NAMES
    io.validate(result.checks, schemas.VerificationCheck, "checks")
    io.validate(result.predictions, schemas.RecoveryPrediction, "predictions")
    io.validate(result.verdict, schemas.Verdict, "verdict")
    pred = result.predictions
    assert len(pred) == N_RELEASE and set(pred["parameter"]) == {nv.GROWTH}
    assert np.isfinite(pred[["true_value", "predicted_mean", "predicted_sd"]].to_numpy()).all()
    assert (pred["predicted_sd"] > 0).all()


def test_verdict_counts_and_names_every_failed_gate(result):
    c = result.checks
    gated = c[c["passed"].notna()]
    failed = gated[~gated["passed"].astype(bool)]
    v = result.verdict.iloc[0]
    assert v["n_checks"] == len(gated) and v["n_failed"] == len(failed)
    assert v["verdict"] == ("fail" if len(failed) else "pass")
    for _, row in failed.iterrows():
        assert f"{row['check']} {row['subject']} {row['metric']}" in v["reasons"]


def test_exact_checks_hold_on_the_real_model(result):
    c = result.checks
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
    c = result.checks
    gated = c[c["passed"].notna()]
    for check in ("page_trend", "targeted_positive_control", "combination_toxicity", "identifiability"):
        rows = gated[gated["check"] == check]
        assert len(rows) and rows["passed"].astype(bool).all(), rows.to_string()
    findings = c[c["check"] == "identifiability_finding"]
    assert len(findings) == 2 and findings["passed"].isna().all()
    assert findings["subject"].str.contains("identifiable").all()


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


def test_identifiability_fails_when_the_latents_belong_to_other_patients(model, release):
    cohort, trajectories = release
    mixed = cohort.copy()
    col = tables.LATENT_PREFIX + "growth_rate_per_day"
    mixed[col] = np.random.default_rng(SEED).permutation(mixed[col].to_numpy())
    with threadpool_limits(1):
        rows, _ = nv.identifiability_checks(mixed, trajectories, model, gamma=GAMMA, device=CPU, train_patients=N_TRAIN)
    assert [(r.subject, r.metric) for r in _failed(rows)] == [(nv.GROWTH, "r2_ci_low")]


def test_clinic_features_read_only_what_a_clinic_sees(model, release):
    cohort, trajectories = release
    x, names, regimen = nv.clinic_features(trajectories, cohort, model)
    blinded = trajectories.assign(sld_true_mm=np.nan)
    x2, names2, regimen2 = nv.clinic_features(blinded, tables.observable(cohort), model)
    assert names == names2 and (regimen == regimen2).all()
    np.testing.assert_array_equal(x, x2)
    assert x.shape == (N_RELEASE, len(names)) and np.isfinite(x).all()
    assert not any("true" in n or n.startswith(tables.LATENT_PREFIX) for n in names)
