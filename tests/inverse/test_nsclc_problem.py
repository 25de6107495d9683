"""The NSCLC model as an inverse problem: encoding, the two entry points, and the planted defects."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from oncobench.config import load_config
from oncobench.inverse import nsclc as inv
from oncobench.inverse.checks import failed
from oncobench.inverse.problem import DEFECTS, PERTURBED
from oncobench.nsclc import tables
from oncobench.nsclc.latent import latent_frame_columns
from oncobench.nsclc.params import with_values

TINY = Path(__file__).resolve().parents[1] / "workflow" / "tiny_nsclc.yaml"
GAMMA = 4.0
N = 200
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def problem() -> inv.NsclcProblem:
    torch.set_num_threads(1)
    return inv.NsclcProblem(load_config(TINY), GAMMA, CPU)


@pytest.fixture(scope="module")
def draw(problem):
    return problem.simulate(N, key=0)


def _release(problem, model, n: int, key: int):
    """The written tables of ``simulate(n, key=key)``'s patients, simulated by ``model``."""
    pop, lat = problem.nsclc.draw(problem.patient_ids(n, key))
    trajectories, _ = model.factual(pop, lat, GAMMA)
    return tables.cohort_frame(pop, lat), trajectories


def test_shapes_are_finite_and_follow_the_declared_names(problem, draw):
    c, t = len(problem.channels), len(problem.visit_days)
    assert draw.x.shape == (N, c, t) and draw.x.dtype == torch.float32 and torch.isfinite(draw.x).all()
    assert draw.theta.shape == (N, len(problem.parameters)) and torch.isfinite(draw.theta).all()
    assert set(problem.identifiable) <= set(problem.parameters) and problem.identifiable[0] == "log_growth_rate_per_day"
    assert set(draw.label.tolist()) <= {0, 1} and len(problem.label_classes) == 2
    assert ((draw.treatment >= 0) & (draw.treatment < len(problem.treatment_classes))).all()
    assert [problem.channels[i] for i in problem.treatment_channels] == [f"given_{k}" for k in problem.given_classes]
    assert len(draw.summary) == N and np.isfinite(draw.summary.to_numpy(dtype=np.float64)).all()
    # the baseline lab is observed, the baseline scan is not in the release tables
    assert (draw.x[:, problem.channels.index("followed"), 0] == 1).all()
    assert (draw.x[:, problem.channels.index("sld_seen"), 0] == 0).all()


def test_default_config_stays_compact():
    p = inv.NsclcProblem(load_config(), GAMMA, CPU)
    assert len(p.parameters) <= 12 and len(p.channels) * len(p.visit_days) <= 600
    assert "log_sensitivity_egfr_tki_1g" in p.parameters and "log_sensitivity_radiotherapy" not in p.parameters
    assert p.label_identifiable


def test_simulation_is_deterministic_and_keys_are_disjoint(problem, draw):
    again = problem.simulate(N, key=0)
    for a, b in ((draw.x, again.x), (draw.theta, again.theta), (draw.treatment, again.treatment)):
        assert torch.equal(a, b)
    pd.testing.assert_frame_equal(draw.summary, again.summary)
    other = problem.simulate(N, key=1)
    assert not torch.equal(draw.theta, other.theta)
    ids = problem.patient_ids(N, 1)
    assert ids.min() >= inv.INVERSE_ID_OFFSET and ids.min() > problem.patient_ids(N, 0).max()


def test_written_tables_encode_like_the_tensors(problem, draw):
    cohort, trajectories = _release(problem, problem.nsclc, N, key=0)
    enc = problem.encode(cohort, trajectories.sample(frac=1.0, random_state=0))  # row order must not matter
    for a, b in ((draw.x, enc.x), (draw.theta, enc.theta), (draw.label, enc.label), (draw.treatment, enc.treatment)):
        assert torch.equal(a, b)
    pd.testing.assert_frame_equal(draw.summary, enc.summary)
    blind = problem.encode(tables.observable(cohort), trajectories.assign(sld_true_mm=np.nan))
    assert torch.equal(blind.x, draw.x) and blind.label is None and torch.isnan(blind.theta).all()
    pd.testing.assert_frame_equal(blind.summary, draw.summary)


def test_theta_is_the_log_latent_and_the_ungated_sensitivity(problem, draw):
    pop, lat = problem.nsclc.draw(problem.patient_ids(N, 0))
    cols = latent_frame_columns(lat)
    growth = torch.log(cols["growth_rate_per_day"]).float()
    torch.testing.assert_close(draw.theta[:, 0], growth, rtol=1e-6, atol=0)
    assert torch.equal(draw.label, cols["immune_responder"].long())
    for j, name in enumerate(problem.parameters[len(inv.BASE_PARAMETERS):], start=len(inv.BASE_PARAMETERS)):
        s = cols[name.replace("log_", "", 1)]
        raw = inv.ungated_log_sensitivity(problem.nsclc.seed, pop.patient_id, problem.nsclc, (name[len("log_sensitivity_"):],))
        open_ = s > 0
        # the stream reproduced here is the one latent.draw_latent gates
        torch.testing.assert_close(torch.log(s[open_]), raw[open_, 0], rtol=0, atol=1e-12)
        torch.testing.assert_close(draw.theta[:, j], raw[:, 0].float(), rtol=0, atol=1e-6)


def test_radio_alpha_enters_theta_within_its_kind(problem, draw):
    """With radiosensitive tumours alpha has two modes; theta keeps the common kind's log-normal
    draw, so the inverse problem (x and theta) is bit for bit the one without that kind (the
    release design gives no radiotherapy)."""
    share = 0.45

    def with_share(value: float) -> inv.NsclcProblem:
        out = copy.copy(problem)
        out.nsclc = dataclasses.replace(problem.nsclc, params=with_values(problem.nsclc.params, {"radiotherapy.radiosensitive_share": value}))
        return out

    mixed, base = with_share(share), with_share(0.0)
    j = problem.parameters.index("log_radio_alpha_within_kind")
    _, lat = mixed.nsclc.draw(mixed.patient_ids(N, 0))
    _, common = base.nsclc.draw(base.patient_ids(N, 0))
    ratio = (lat.radio_alpha_per_gy / common.radio_alpha_per_gy).numpy()
    shifted = ~np.isclose(ratio, 1.0, rtol=1e-12, atol=0)
    np.testing.assert_allclose(ratio[shifted], 0.305 / 0.04, rtol=1e-12)
    # the kind is Bernoulli(share): 4 binomial SEs
    assert abs(shifted.mean() - share) < 4 * np.sqrt(share * (1 - share) / N)
    simulated, without = mixed.simulate(N, key=0), base.simulate(N, key=0)
    assert torch.equal(simulated.theta, without.theta) and torch.equal(simulated.x, without.x)
    assert torch.equal(without.theta[:, j], torch.log(common.radio_alpha_per_gy).float())
    # the default (share 0.451) is one of these problems
    assert torch.equal(draw.theta, without.theta) and torch.equal(draw.x, without.x)
    # the release tables give the same theta (the kind and the common draw come from the patient id)
    cohort, trajectories = _release(mixed, mixed.nsclc, N, key=0)
    assert torch.equal(mixed.encode(cohort, trajectories).theta, simulated.theta)


def test_unknown_defect_is_refused(problem):
    with pytest.raises(ValueError, match="defect 'typo'"):
        problem.simulate(5, key=0, defect="typo")
    with pytest.raises(ValueError, match="defect 'typo'"):
        problem.causal_checks(defect="typo")
    assert set(DEFECTS) == {"wrong_sign", "no_noise", "non_identifiable"}


def test_no_noise_scans_report_the_true_burden(problem):
    quiet = problem.simulate(N, key=2, defect="no_noise")
    noisy = problem.simulate(N, key=2)
    cohort, trajectories = _release(problem, inv.planted_model(problem.nsclc, "no_noise"), N, key=2)
    true = trajectories["sld_true_mm"].to_numpy()
    exact = np.where(true < problem.nsclc.params.get("tumour.undetectable_sld_mm"), 0.0, true)
    truth = problem.encode(cohort, trajectories.assign(sld_measured_mm=np.where(trajectories["scanned"], exact, np.nan)))
    np.testing.assert_allclose(quiet.summary["sld_roughness"], truth.summary["sld_roughness"], rtol=1e-9, atol=1e-12)
    assert torch.equal(quiet.theta, noisy.theta)
    assert noisy.summary["sld_roughness"].median() > 3 * quiet.summary["sld_roughness"].median()


def test_non_identifiable_growth_no_longer_reaches_x(problem):
    pop, lat = problem.nsclc.draw(problem.patient_ids(N, 3))
    faster = dataclasses.replace(lat, growth_rate_per_day=2.0 * lat.growth_rate_per_day)
    a = problem.simulate_patients(pop, lat, defect="non_identifiable")
    b = problem.simulate_patients(pop, faster, defect="non_identifiable")
    assert torch.equal(a.x, b.x) and not torch.equal(a.theta[:, 0], b.theta[:, 0])
    assert torch.equal(a.theta, problem.simulate_patients(pop, lat).theta)
    assert not torch.equal(problem.simulate_patients(pop, lat).x, problem.simulate_patients(pop, faster).x)


def test_perturbed_simulator_differs_with_the_same_patients(problem, draw):
    shifted = problem.simulate(N, key=0, defect=PERTURBED)
    assert torch.equal(shifted.theta, draw.theta) and not torch.equal(shifted.x, draw.x)
    assert shifted.summary["sld_roughness"].mean() < draw.summary["sld_roughness"].mean()
    assert shifted.summary["days_to_progression"].mean() < draw.summary["days_to_progression"].mean()


def test_wrong_sign_grows_the_treated_tumours(problem, draw):
    # the first scan (visit 1) comes before any progression: the same course, the same noise
    wrong = problem.simulate(N, key=0, defect="wrong_sign")
    sld, seen = problem.channels.index("log_sld"), problem.channels.index("sld_seen")
    treated = draw.treatment != problem.treatment_classes.index("best_supportive_care")
    both = (draw.x[:, seen, 1] > 0) & (wrong.x[:, seen, 1] > 0) & treated
    assert both.sum() > N // 2
    assert (wrong.x[both, sld, 1] >= draw.x[both, sld, 1]).all()
    assert (wrong.x[both, sld, 1] > draw.x[both, sld, 1]).float().mean() > 0.5


def test_causal_checks_pass_on_the_model(problem):
    rows = problem.causal_checks()
    assert rows and not failed(rows), [r.reason() for r in failed(rows)]


def test_causal_checks_fail_with_the_wrong_sign(problem):
    broken = {r.check for r in failed(problem.causal_checks(defect="wrong_sign"))}
    assert {"causal_dose_response", "page_trend", "targeted_positive_control"} <= broken
