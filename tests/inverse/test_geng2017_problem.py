"""The geng2017 model as an inverse problem: encoding, determinism, planted defects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from oncobench import verification as V
from oncobench.config import Config, ConfigError, load_config
from oncobench.inverse import geng2017 as G
from oncobench.models import Geng2017
from oncobench.models import geng2017 as g

TINY = Path(__file__).resolve().parents[1] / "workflow" / "tiny.yaml"
CPU = torch.device("cpu")
GAMMA = 4.0


def tiny(**overrides) -> Config:
    return load_config(TINY, overrides=overrides)


@pytest.fixture(scope="module")
def problem() -> G.Geng2017Problem:
    return G.Geng2017Problem(tiny(), GAMMA, CPU)


@pytest.fixture(scope="module")
def draw(problem) -> G.Draw:
    return problem.simulate(400, key=1)


def _assert_same_draw(a: G.Draw, b: G.Draw) -> None:
    assert torch.equal(a.x, b.x)
    torch.testing.assert_close(a.theta, b.theta, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(a.label, b.label)
    assert torch.equal(a.treatment, b.treatment)
    pd.testing.assert_frame_equal(a.summary, b.summary)


# --------------------------------------------------------------------------- protocol
def test_attributes_follow_the_config(problem):
    assert problem.model == "geng2017"
    assert problem.parameters == V.PARAMETERS
    assert problem.identifiable == ("log_radio_alpha_per_gy",)
    assert problem.label_identifiable is False
    assert problem.treatment_channels == ()
    cfg = tiny(verify={"thresholds": {"identifiable": ["chemo_beta_c", "patient_type"]}})
    named = G.Geng2017Problem(cfg, GAMMA, CPU)
    assert named.identifiable == ("chemo_beta_c",) and named.label_identifiable is True


def test_unknown_identifiable_name_is_a_config_error():
    cfg = tiny(verify={"thresholds": {"identifiable": ["log_growth_rate_per_day", "tumour_colour"]}})
    with pytest.raises(ConfigError, match="tumour_colour"):
        G.Geng2017Problem(cfg, GAMMA, CPU)


def test_draw_shapes_and_values(problem, draw):
    n = 400
    assert draw.x.shape == (n, len(G.CHANNELS), 10) and problem.x_shape == (5, 10)  # 30 days, a scan every 3
    assert draw.x.dtype == torch.float32 and torch.isfinite(draw.x).all()
    assert draw.theta.shape == (n, 3) and draw.theta.dtype == torch.float32 and torch.isfinite(draw.theta).all()
    assert set(draw.label.tolist()) <= {0, 1, 2} and set(draw.treatment.tolist()) <= {0, 1, 2, 3}
    assert list(draw.summary.columns) == list(G.SUMMARY_COLUMNS) and len(draw.summary) == n
    assert np.isfinite(draw.summary.to_numpy()).all()
    observed = draw.x[:, G.CHANNELS.index("observed")]
    assert set(observed.unique().tolist()) <= {0.0, 1.0}
    assert (draw.x[:, 0][observed == 0] == 0).all()  # missing scans: value 0 and mask 0


def test_simulate_is_deterministic_and_keys_are_disjoint(problem, draw):
    _assert_same_draw(problem.simulate(400, key=1), draw)
    # a patient is the same whatever n: the first 50 of 400 are the 50 of a smaller call
    _assert_same_draw(problem.simulate(50, key=1), draw.subset(torch.arange(50)))
    other = problem.simulate(400, key=2)
    assert not torch.equal(other.theta, draw.theta)
    assert len(np.intersect1d(G.patient_ids(400, 1), G.patient_ids(400, 2))) == 0
    with pytest.raises(ValueError, match="key"):
        problem.simulate(10, key=G.RESERVED_KEY)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"simulation": {"record_every": 4}}, {"simulation": {"compat": "reference", "days": 45}}],
    ids=["tiny", "record_every_4", "reference_45_days"],
)
def test_table_encoding_equals_tensor_encoding(overrides):
    cfg = tiny(**overrides)
    problem = G.Geng2017Problem(cfg, GAMMA, CPU)
    simulated = problem.simulate(150, key=3)
    model = Geng2017(cfg)
    cohort = model.cohort(G.patient_ids(150, 3))
    table = pd.concat([frame for frame, _ in model.factual(cohort, GAMMA, CPU)], ignore_index=True)
    _assert_same_draw(problem.encode(cohort, table), simulated)


def test_encode_without_latent_columns_gives_unknown_truth(problem):
    model = Geng2017(problem.cfg)
    cohort = model.cohort(torch.arange(40))
    table = pd.concat([frame for frame, _ in model.factual(cohort, GAMMA, CPU)], ignore_index=True)
    full = problem.encode(cohort, table)
    observed = problem.encode(cohort[["patient_id"]], table[["patient_id", "day", "status", "diameter_obs_cm"]])
    assert torch.equal(observed.x, full.x)
    pd.testing.assert_frame_equal(observed.summary, full.summary)
    assert torch.isnan(observed.theta).all()
    assert (observed.label == -1).all() and (observed.treatment == -1).all()


def test_summary_features_match_a_direct_computation():
    days = 12
    daily = torch.zeros((1, len(V.CHANNELS), days), dtype=torch.float64)
    scans = np.array([0, 3, 6, 9])
    values = np.array([1.0, 1.3, 0.7, 0.9])
    daily[0, V.CHANNELS.index("log_diameter_obs"), scans] = torch.from_numpy(values)
    daily[0, V.CHANNELS.index("observed"), scans] = 1.0
    daily[0, V.CHANNELS.index("followed"), :11] = 1.0  # died on day 10
    daily[0, V.CHANNELS.index("dead"), 10:] = 1.0
    s = G.summary_features(daily).iloc[0]
    d1 = np.diff(values) - np.diff(values).mean()
    assert s.first_log_diameter == 1.0 and s.last_log_diameter == 0.9
    assert s.min_log_diameter == 0.7 and s.max_log_diameter == 1.3
    assert s.log_diameter_slope_per_day == pytest.approx(np.polyfit(scans, values, 1)[0])
    assert s.roughness == pytest.approx(np.abs(np.diff(values, 2)).mean())
    assert s.increment_autocorrelation == pytest.approx((d1[1:] * d1[:-1]).sum() / (d1 * d1).sum())
    assert (s.n_scans, s.follow_up_days, s.died, s.recovered) == (4, 11, 1, 0)
    grid = G.scan_grid(daily, 3)[0]
    # scan intervals [0,3) [3,6) [6,9) [9,12): followed on days 9 and 10 of the last
    assert grid[G.CHANNELS.index("followed")].tolist() == pytest.approx([1, 1, 1, 2 / 3])
    assert grid[G.CHANNELS.index("dead")].tolist() == [0, 0, 0, 1]


# --------------------------------------------------------------------------- defects
def test_unknown_defect_is_an_error(problem):
    with pytest.raises(ValueError, match="broken_engine"):
        problem.simulate(10, key=0, defect="broken_engine")
    with pytest.raises(ValueError, match="broken_engine"):
        problem.causal_checks(defect="broken_engine")


def test_no_noise_removes_the_scatter_of_the_scans(problem, draw):
    clean = problem.simulate(400, key=1, defect="no_noise")
    assert torch.equal(clean.theta, draw.theta)
    measured = G.CHANNELS.index("log_diameter_obs")
    others = [i for i in range(len(G.CHANNELS)) if i != measured]
    assert torch.equal(clean.x[:, others], draw.x[:, others])  # the same courses, measured exactly
    assert not torch.equal(clean.x[:, measured], draw.x[:, measured])
    # the random treatment days keep most of the roughness (summary_features docstring)
    assert clean.summary.roughness.mean() < 0.85 * draw.summary.roughness.mean()
    assert clean.summary.increment_autocorrelation.mean() > draw.summary.increment_autocorrelation.mean() + 0.1


def test_non_identifiable_radiosensitivity_leaves_no_trace_in_x(problem, monkeypatch):
    draw_cohort = g.draw_cohort

    def faster(seed, patient_id):
        c = draw_cohort(seed, patient_id)
        return G.with_parameter(c, "log_radio_alpha_per_gy", 3.0 * c.radio_alpha_per_gy)

    before = {d: problem.simulate(200, key=4, defect=d) for d in (None, "non_identifiable")}
    monkeypatch.setattr(g, "draw_cohort", faster)
    after = {d: problem.simulate(200, key=4, defect=d) for d in (None, "non_identifiable")}
    assert not torch.equal(after[None].x, before[None].x)  # radiosensitivity shows in the shipped simulator
    assert torch.equal(after["non_identifiable"].x, before["non_identifiable"].x)
    growth = problem.parameters.index("log_radio_alpha_per_gy")
    assert torch.equal(after["non_identifiable"].theta[:, growth], after[None].theta[:, growth])
    assert not torch.equal(after["non_identifiable"].theta, before["non_identifiable"].theta)


def test_wrong_sign_grows_tumours_and_fails_monotonicity(problem, draw):
    assert all(c.passed for c in problem.causal_checks() if c.op is not None)
    checks = problem.causal_checks(defect="wrong_sign")
    monotonicity = [c for c in checks if c.check == "causal_monotonicity"]
    assert monotonicity and not any(c.passed for c in monotonicity)
    grown = problem.simulate(400, key=1, defect="wrong_sign")
    assert torch.equal(grown.theta, draw.theta)
    assert grown.summary.last_log_diameter.mean() > draw.summary.last_log_diameter.mean() + 0.5
    for defect in ("no_noise", "non_identifiable", "perturbed"):
        assert all(c.passed for c in problem.causal_checks(defect=defect) if c.op is not None), defect


def test_treatment_class_is_the_first_treatment_given():
    chemo = torch.tensor([[0, 0, 0], [0, 1, 1], [0, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    radio = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=torch.bool)
    got = G.treatment_class(chemo, radio).tolist()
    assert [G.TREATMENT_CLASSES[k] for k in got] == ["none", "chemo_first", "radio_first", "both_same_day", "radio_first"]


def test_perturbed_simulator_grows_faster_with_less_noise(problem, draw):
    shifted = problem.simulate(400, key=1, defect="perturbed")
    assert torch.equal(shifted.theta, draw.theta)
    assert not torch.equal(shifted.x, draw.x)
    assert shifted.summary.log_diameter_slope_per_day.mean() > draw.summary.log_diameter_slope_per_day.mean()
    assert shifted.summary.roughness.mean() < draw.summary.roughness.mean()
