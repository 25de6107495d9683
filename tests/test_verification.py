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


# --------------------------------------------------------------------------- posterior
def test_mixture_quantiles_match_scipy():
    from scipy import optimize, stats

    weight = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.3, 0.2], [0.7, 0.3, 1e-9], [0.2, 0.2, 0.6]], dtype=torch.float64)
    mean = torch.tensor([[0.3, 9.0, -9.0], [0.0, 4.0, -2.0], [0.028, 0.0308, 0.0], [-50.0, 0.0, 50.0]], dtype=torch.float64)
    sd = torch.tensor([[2.0, 1.0, 1.0], [1.0, 0.5, 3.0], [7e-4, 7e-4, 1.0], [1e-3, 1.0, 10.0]], dtype=torch.float64)
    mix = V.GaussianMixture(weight.unsqueeze(1), mean.unsqueeze(1), sd.unsqueeze(1))  # 4 rows, 1 parameter
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        got = mix.quantile(q)[:, 0].numpy()
        for i in range(4):
            w, m, s = weight[i].numpy(), mean[i].numpy(), sd[i].numpy()
            cdf = lambda x: float((w * stats.norm.cdf(x, m, s)).sum()) - q  # noqa: E731
            want = optimize.brentq(cdf, -200.0, 200.0, xtol=1e-14, rtol=1e-14)
            assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-12), (i, q)
    assert mix.quantile(0.975)[0, 0].item() == pytest.approx(stats.norm.ppf(0.975, 0.3, 2.0), rel=1e-12)
    # moments by the law of total variance, against the component draws' closed form
    w, m, s = weight[1].numpy(), mean[1].numpy(), sd[1].numpy()
    mu = (w * m).sum()
    assert mix.mixture_mean()[1, 0].item() == pytest.approx(mu)
    assert mix.mixture_sd()[1, 0].item() == pytest.approx(np.sqrt((w * (s**2 + m**2)).sum() - mu**2))


def _prior_posterior(n: int) -> tuple[torch.Tensor, V.GaussianMixture]:
    """Draws of a two-component prior (beta_c: type 3 shifts it by 4 SDs), and that prior as
    every row's posterior, for every parameter: the right answer when the data say nothing."""
    gen = torch.Generator().manual_seed(SEED)
    shifted = torch.rand(n, generator=gen) < 1 / 3
    true = 0.028 + 0.0007 * torch.randn(n, generator=gen, dtype=torch.float64) + 0.0028 * shifted
    shape = (n, len(V.PARAMETERS), 3)
    f64 = torch.float64
    prior = V.GaussianMixture(
        weight=torch.tensor([2 / 3, 1 / 3, 0.0], dtype=f64).expand(shape),
        mean=torch.tensor([0.028, 0.0308, 0.0], dtype=f64).expand(shape),
        sd=torch.tensor([0.0007, 0.0007, 1.0], dtype=f64).expand(shape),
    )
    return true.unsqueeze(1).expand(n, len(V.PARAMETERS)), prior


def _overconfident(mix: V.GaussianMixture, factor: float) -> V.GaussianMixture:
    """The mixture contracted about its mean by ``factor`` (its SD times ``factor``)."""
    centre = mix.mixture_mean().unsqueeze(-1)
    return V.GaussianMixture(mix.weight, centre + factor * (mix.mean - centre), factor * mix.sd)


def _coverage_gates(true, posterior, cfg) -> list:
    return [c for c in V._coverage_checks(true, posterior, cfg) if c.op is not None]


def test_coverage_gate_passes_the_true_posterior_and_fails_an_overconfident_one():
    cfg = small_config()
    true, prior = _prior_posterior(2000)
    gates = _coverage_gates(true, prior, cfg)
    assert len(gates) == 2 * len(V.PARAMETERS) and all(c.passed for c in gates), [(c.metric, c.value) for c in gates]
    # a single Gaussian with the prior's mean and SD is the misspecified head this replaced
    single = V.GaussianMixture(
        torch.ones_like(prior.weight[..., :1]), prior.mixture_mean().unsqueeze(-1), prior.mixture_sd().unsqueeze(-1)
    )
    cov50 = {c.metric: c for c in V._coverage_checks(true, single, cfg)}["coverage_50"]
    assert cov50.value < 0.45
    overconfident = _overconfident(prior, 0.3)
    torch.testing.assert_close(overconfident.mixture_sd(), 0.3 * prior.mixture_sd())
    assert not any(c.passed for c in _coverage_gates(true, overconfident, cfg))


# --------------------------------------------------------------------------- gates on a moderate budget
@pytest.fixture(scope="module")
def moderate():
    """The inverse network at a moderate budget (2000 training patients, 15 epochs), applied
    to 500 release patients at gamma = 4."""
    cfg = load_config(overrides={"seed": SEED, "verify": {"train_patients": 2000, "epochs": 15}})
    cohort = g.draw_cohort(cfg.seed, torch.arange(500))
    _, df = factual(cohort, cfg, 4.0)
    return cfg, V._infer(cohort, df, cfg, 4.0, CPU)


def _with_identifiable(cfg: Config, names: tuple[str, ...]) -> Config:
    th = dataclasses.replace(cfg.verify.thresholds, identifiable=names)
    return dataclasses.replace(cfg, verify=dataclasses.replace(cfg.verify, thresholds=th))


def _gated(checks) -> dict:
    return {(c.check, c.subject, c.metric): c for c in checks if c.op is not None}


def test_identifiable_parameters_pass_the_r2_gate_and_unidentifiable_ones_fail_it(moderate):
    cfg, inf = moderate
    default = _gated(V._inference_checks(inf, cfg))
    for name in ("log_growth_rate_per_day", "log_radio_alpha_per_gy"):
        assert default[("recovery", name, "r2_ci_low")].passed, default[("recovery", name, "r2_ci_low")]
    assert ("recovery", "chemo_beta_c", "r2_ci_low") not in default
    assert ("recovery", "patient_type", "accuracy") not in default

    listed = _gated(V._inference_checks(inf, _with_identifiable(cfg, ("log_growth_rate_per_day", "chemo_beta_c", "patient_type"))))
    assert listed[("recovery", "log_growth_rate_per_day", "r2_ci_low")].passed
    assert listed[("recovery", "chemo_beta_c", "r2_ci_low")].passed is False
    acc = listed[("recovery", "patient_type", "accuracy")]
    assert acc.passed is False and acc.threshold > 1 / 3


def test_coverage_gate_fails_the_network_made_overconfident(moderate):
    cfg, inf = moderate
    assert all(c.passed for c in _coverage_gates(inf.true, inf.posterior, cfg))
    overconfident = _overconfident(inf.posterior, 0.3)
    gates = {c.subject + c.metric: c.passed for c in _coverage_gates(inf.true, overconfident, cfg)}
    assert gates and not any(gates.values()), gates


def test_treatment_auroc_gate_passes_real_scores_and_fails_shuffled_labels(moderate):
    cfg, inf = moderate
    z = cfg.verify.thresholds.treatment_auroc_z
    gen = torch.Generator().manual_seed(SEED)
    for j, name in enumerate(V.TREATMENTS):
        truth = inf.given[:, j][inf.mask] > 0.5
        score = inf.treat_logit[:, j][inf.mask]
        real = V.auroc_check(name, score, truth, z)
        assert real.passed, real
        shuffled = V.auroc_check(name, score, truth[torch.randperm(len(truth), generator=gen)], z)
        assert shuffled.passed is False and abs(shuffled.value - 0.5) < 0.02, shuffled


def test_auroc_gate_threshold_is_the_hanley_mcneil_null_se(result):
    c = result.checks.set_index(["check", "subject", "metric"])
    cfg = small_config()
    for name in V.TREATMENTS:
        p = c.loc[("treatment_inference", name, "prevalence"), "value"]
        assert c.loc[("treatment_inference", name, "no_information_f1"), "value"] == pytest.approx(2 * p / (1 + p))
        assert pd.isna(c.loc[("treatment_inference", name, "f1"), "passed"])
    truth = torch.tensor([True] * 30 + [False] * 70)
    check = V.auroc_check("x", torch.arange(100.0), truth, cfg.verify.thresholds.treatment_auroc_z)
    assert check.threshold == pytest.approx(0.5 + 3.0 * np.sqrt(101 / (12 * 30 * 70)))
    assert check.value == 0.0 and check.passed is False


def test_only_identifiable_latents_are_gated_and_the_rest_are_findings(result):
    c = result.checks
    findings = c[c["check"] == "identifiability"]
    assert set(findings["metric"]) == {"finding"} and findings["passed"].isna().all()
    assert {s.split(" ")[0] for s in findings["subject"]} == {"chemo_beta_c", "patient_type"}
    r2_low = c[(c["metric"] == "r2_ci_low")].set_index("subject")
    assert r2_low["passed"].notna().to_dict() == {
        "log_growth_rate_per_day": True, "log_radio_alpha_per_gy": True, "chemo_beta_c": False
    }
    r2 = c[c["metric"] == "r2"].set_index("subject")["value"]
    high = c[c["metric"] == "r2_ci_high"].set_index("subject")["value"]
    assert ((r2_low["value"] <= r2) & (r2 <= high)).all()
    cov = c[c["metric"].str.endswith("_abs_error")]
    assert len(cov) == 2 * len(V.PARAMETERS) and cov["passed"].notna().all()


def test_auroc_matches_pairwise_definition():
    gen = torch.Generator().manual_seed(0)
    score = torch.randint(0, 5, (200,), generator=gen).float()
    truth = torch.rand(200, generator=gen) < 0.4
    pos, neg = score[truth], score[~truth]
    pairwise = ((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean()
    assert V._auroc(score, truth) == pytest.approx(float(pairwise))


# --------------------------------------------------------------------------- figures
def test_figures_draw(result):
    fig = figures.plot_recovery(result.predictions)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == len(V.PARAMETERS)
    days = np.arange(30)
    vols = {"none": np.exp(np.linspace(0, 3, 60)).reshape(2, 30), "chemo": np.zeros((2, 30))}
    fig = figures.plot_trajectories_by_treatment(days, vols)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    fig.canvas.draw()
