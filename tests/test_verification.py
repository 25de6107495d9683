"""The geng2017 observation encoding and the causal and analytic checks of its simulator."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from oncobench import engine, io, schemas, trajectories
from oncobench import verification as V
from oncobench.config import Config, load_config
from oncobench.inverse.checks import checks_frame, failed
from oncobench.models import geng2017 as g

SEED = 20171
CPU = torch.device("cpu")


def small_config(**sections) -> Config:
    """30 days; ``sections`` are merged on top."""
    base = {
        "seed": SEED,
        "simulation": {"days": 30},
        "counterfactuals": {"horizons_days": [5, 29], "tau_max": 3},
        "evaluate": {"horizon_days": 29},
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


# --------------------------------------------------------------------------- targets and tables
def test_true_values_are_the_cohort_parameters(release):
    _, cohort, _ = release
    theta = V.parameter_targets(cohort)
    assert theta.shape == (len(cohort), len(V.PARAMETERS)) and theta.dtype == torch.float64
    column = dict(zip(V.PARAMETERS, theta.T))
    torch.testing.assert_close(column["log_growth_rate_per_day"], torch.log(cohort.growth_rate_per_day))
    torch.testing.assert_close(column["chemo_beta_c"], cohort.chemo_beta_c)


def test_checks_table_matches_its_schema(release):
    cfg, cohort, _ = release
    checks = V.monotonicity_checks(cohort, cfg, CPU)
    sim = cfg.simulation
    checks += V.gompertz_checks(cohort, seed=cfg.seed, days=sim.days, compat=sim.compat, device=CPU)
    frame = checks_frame(checks)
    io.validate(frame, schemas.VerificationCheck, "checks")
    assert {"causal_monotonicity", "analytic_gompertz"} == set(frame["check"])


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
    cfg, cohort, _ = release
    planted = dataclasses.replace(cohort, chemo_beta_c=-cohort.chemo_beta_c)
    checks = {c.subject: c for c in V.monotonicity_checks(planted, cfg, CPU)}
    chemo_only = next(c for s, c in checks.items() if s.startswith("chemo(") and s.endswith("<= none"))
    assert chemo_only.value > 0 and chemo_only.passed is False
    assert {c.check for c in failed(list(checks.values()))} == {"causal_monotonicity"}


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
