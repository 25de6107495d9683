"""The verify stage: tables, observed inputs, causal and analytic checks, learnability."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from oncobench import engine, figures, io, schemas, trajectories
from oncobench import verification as V
from oncobench.config import Config, load_config
from oncobench.models import geng2017 as g

SEED = 20171
CPU = torch.device("cpu")


def small_config(**sections) -> Config:
    """300 training patients, 3 epochs, 30 days; ``sections`` are merged on top."""
    base = {
        "seed": SEED,
        "simulation": {"days": 30},
        "counterfactuals": {"horizons_days": [5, 29], "tau_max": 3},
        "evaluate": {"horizon_days": 29},
        "verify": {"train_patients": 300, "epochs": 3},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return load_config(overrides=base)


def factual(cohort: g.Geng2017Cohort, cfg: Config, gamma: float) -> tuple[engine.Course, pd.DataFrame]:
    """The factual course and its Trajectory table, exactly as the simulate stage writes it."""
    course = engine.simulate_course(
        cohort, seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat,
        treatment=engine.Policy(gamma, cfg.policy.window_days),
        observation=engine.Observation(cfg.observation.scan_every_days, cfg.observation.diameter_cv),
    )
    df = trajectories.to_frame(course, cohort, compat=cfg.simulation.compat, record_every=cfg.simulation.record_every)
    return course, df


@pytest.fixture(scope="module")
def release() -> tuple[Config, g.Geng2017Cohort, pd.DataFrame]:
    cfg = small_config()
    cohort = g.draw_cohort(cfg.seed, torch.arange(200))
    return cfg, cohort, factual(cohort, cfg, 2.0)[1]


@pytest.fixture(scope="module")
def result(release) -> V.VerificationResult:
    cfg, cohort, df = release
    return V.verify(cohort, df, cfg, 2.0, CPU)


# --------------------------------------------------------------------------- tables
def test_tables_match_their_schemas(result, release):
    io.validate(result.checks, schemas.VerificationCheck, "checks")
    io.validate(result.predictions, schemas.RecoveryPrediction, "predictions")
    io.validate(result.verdict, schemas.Verdict, "verdict")
    _, cohort, _ = release
    assert len(result.predictions) == len(cohort) * len(V.PARAMETERS)
    assert np.isfinite(result.predictions[["predicted_mean", "predicted_sd"]].to_numpy()).all()
    expected = {"recovery", "calibration", "treatment_inference", "causal_monotonicity", "analytic_gompertz"}
    assert expected <= set(result.checks["check"])


def test_verdict_counts_and_names_every_failed_gate(result):
    checks, verdict = result.checks, result.verdict.iloc[0]
    gated = checks[checks["passed"].notna()]
    failed = gated[~gated["passed"].astype(bool)]
    assert verdict.n_checks == len(gated)
    assert verdict.n_failed == len(failed)
    assert verdict.verdict == ("fail" if len(failed) else "pass")
    assert (verdict.reasons == "") == (len(failed) == 0)
    for row in failed.itertuples():
        assert f"{row.check} {row.subject} {row.metric} = " in verdict.reasons


def test_true_values_are_the_cohort_parameters(result, release):
    _, cohort, _ = release
    p = result.predictions.pivot(index="patient_id", columns="parameter", values="true_value").loc[cohort.patient_id.numpy()]
    np.testing.assert_array_equal(p["log_growth_rate_per_day"], np.log(cohort.growth_rate_per_day.numpy()))
    np.testing.assert_array_equal(p["chemo_beta_c"], cohort.chemo_beta_c.numpy())


def test_verify_leaves_global_rng_alone_and_is_deterministic(release):
    cfg, cohort, df = release
    cfg = small_config(verify={"train_patients": 100, "epochs": 1})
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = V.verify(cohort, df, cfg, 2.0, CPU)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = V.verify(cohort, df, cfg, 2.0, CPU)
    pd.testing.assert_frame_equal(a.checks, b.checks)
    pd.testing.assert_frame_equal(a.predictions, b.predictions)


# --------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("compat", ["none", "reference"])
@pytest.mark.parametrize("record_every", [1, 2])
def test_features_from_table_equal_features_from_course(compat, record_every):
    cfg = small_config(simulation={"compat": compat, "record_every": record_every})
    cohort = g.draw_cohort(cfg.seed, torch.arange(300))
    course, df = factual(cohort, cfg, 4.0)
    assert (course.status != g.STATUS_ALIVE).any(), "the test needs stopped patients"
    # the table's rows in another order must not matter
    df = df.sample(frac=1.0, random_state=0)
    from_course = V.features_from_course(course, record_every=record_every)
    from_table = V.features_from_frame(df, cohort.patient_id, days=cfg.simulation.days)
    assert from_course.shape == (300, len(V.CHANNELS), cfg.simulation.days)
    assert torch.equal(from_course, from_table)
    assert torch.isfinite(from_table).all()

    given_c, mask_c = V.treatment_targets_from_course(course)
    given_t, mask_t = V.treatment_targets_from_frame(df, cohort.patient_id, days=cfg.simulation.days)
    assert torch.equal(mask_t, mask_c & V.recorded_days(course, record_every))
    assert torch.equal(given_t[mask_t.unsqueeze(1).expand_as(given_t)], given_c[mask_t.unsqueeze(1).expand_as(given_c)])


def test_features_hold_no_treatment_or_latent_column():
    cfg = small_config()
    cohort = g.draw_cohort(cfg.seed, torch.arange(50))
    _, df = factual(cohort, cfg, 2.0)
    x = V.features_from_frame(df, cohort.patient_id, days=cfg.simulation.days)
    scrambled = df.assign(
        chemo_given=~df["chemo_given"], radio_given=~df["radio_given"], volume_cm3=1.0, diameter_cm=1.0,
        chemo_concentration=0.0, radio_dose_gy=0.0,
    )
    assert torch.equal(x, V.features_from_frame(scrambled, cohort.patient_id, days=cfg.simulation.days))


def test_table_without_a_cohort_patient_is_an_error(release):
    cfg, cohort, df = release
    with pytest.raises(ValueError, match="no rows for patient_id 7"):
        V.features_from_frame(df[df.patient_id != 7], cohort.patient_id, days=cfg.simulation.days)


# --------------------------------------------------------------------------- causal checks
def test_monotonicity_holds_in_both_compat_modes():
    for compat in ("none", "reference"):
        cfg = small_config(simulation={"compat": compat})
        cohort = g.draw_cohort(cfg.seed, torch.arange(500))
        checks = V.monotonicity_checks(cohort, cfg, CPU)
        assert len(checks) == 4  # one chemo and one radio schedule in the default regimens
        assert all(c.passed for c in checks), [(c.subject, c.value) for c in checks]


def test_monotonicity_catches_chemo_that_grows_tumours(release):
    cfg, cohort, df = release
    planted = dataclasses.replace(cohort, chemo_beta_c=-cohort.chemo_beta_c)
    checks = {c.subject: c for c in V.monotonicity_checks(planted, cfg, CPU)}
    chemo_only = next(c for s, c in checks.items() if s.startswith("chemo(") and s.endswith("<= none"))
    assert chemo_only.value > 0 and chemo_only.passed is False
    result = V.verify(planted, df, small_config(verify={"train_patients": 100, "epochs": 1}), 2.0, CPU)
    verdict = result.verdict.iloc[0]
    assert verdict.verdict == "fail"
    assert "causal_monotonicity" in verdict.reasons


@pytest.mark.parametrize("compat", ["none", "reference"])
def test_gompertz_check_passes(compat):
    cohort = g.draw_cohort(SEED, torch.arange(500))
    checks = V.gompertz_checks(cohort, seed=SEED, days=60, compat=compat, device=CPU)
    assert all(c.passed for c in checks if c.op is not None), [(c.metric, c.value) for c in checks]


def test_euler_bound_is_not_vacuous():
    # the reference update really differs from the exact flow, by far more than the tolerance
    cohort = g.draw_cohort(SEED, torch.arange(500))
    checks = {c.metric: c for c in V.gompertz_checks(cohort, seed=SEED, days=60, compat="reference", device=CPU)}
    assert checks["max_abs_log_volume_error"].value > 1e-3


@pytest.mark.parametrize("compat", ["none", "reference"])
def test_gompertz_check_catches_a_wrong_growth_rate(compat, monkeypatch):
    grow = g.grow

    def faster(volume, conc, dose_gy, dyn, eps, compat_):
        rho = dyn.rho * 1.05
        return grow(volume, conc, dose_gy, dataclasses.replace(dyn, rho=rho, gompertz_decay=torch.exp(-rho)), eps, compat_)

    monkeypatch.setattr(g, "grow", faster)
    cohort = g.draw_cohort(SEED, torch.arange(500))
    gated = [c for c in V.gompertz_checks(cohort, seed=SEED, days=60, compat=compat, device=CPU) if c.op is not None]
    assert gated and not any(c.passed for c in gated)


# --------------------------------------------------------------------------- metrics
def test_treatment_gate_is_baseline_plus_margin(result):
    c = result.checks.set_index(["check", "subject", "metric"])
    cfg = small_config()
    for name in V.TREATMENTS:
        p = c.loc[("treatment_inference", name, "prevalence"), "value"]
        base = c.loc[("treatment_inference", name, "baseline_f1"), "value"]
        assert base == pytest.approx(2 * p / (1 + p))
        assert c.loc[("treatment_inference", name, "f1"), "threshold"] == pytest.approx(
            base + cfg.verify.thresholds.treatment_f1_margin
        )


def test_auroc_matches_pairwise_definition():
    gen = torch.Generator().manual_seed(0)
    score = torch.randint(0, 5, (200,), generator=gen).float()
    truth = torch.rand(200, generator=gen) < 0.4
    pos, neg = score[truth], score[~truth]
    pairwise = ((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean()
    assert V._auroc(score, truth) == pytest.approx(float(pairwise))


def test_growth_rate_is_learnable():
    cfg = load_config(overrides={"seed": SEED, "verify": {"train_patients": 2000, "epochs": 15}})
    cohort = g.draw_cohort(cfg.seed, torch.arange(500))
    _, df = factual(cohort, cfg, 4.0)
    checks = V.verify(cohort, df, cfg, 4.0, CPU).checks.set_index(["check", "subject", "metric"])
    assert checks.loc[("recovery", "log_growth_rate_per_day", "r2"), "value"] > 0.0
    assert checks.loc[("recovery", "log_radio_alpha_per_gy", "r2"), "value"] > 0.0


# --------------------------------------------------------------------------- figures
def test_figures_draw(result):
    fig = figures.plot_recovery(result.predictions)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == len(V.PARAMETERS)
    days = np.arange(30)
    vols = {"none": np.exp(np.linspace(0, 3, 60)).reshape(2, 30), "chemo": np.zeros((2, 30))}
    fig = figures.plot_trajectories_by_treatment(days, vols)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    fig.canvas.draw()
