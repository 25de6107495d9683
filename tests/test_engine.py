"""Engine invariances: batch independence, common random numbers, exact factual replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oncobench import counterfactuals as cf
from oncobench import engine
from oncobench.config import Regimen, Schedule
from oncobench.models import geng2017 as g

OBS = engine.Observation(3, 0.05)


@pytest.mark.parametrize("compat", ["none", "reference"])
def test_course_does_not_depend_on_batch(compat):
    c = g.draw_cohort(9, torch.arange(301))
    full = engine.simulate_course(c, seed=9, days=40, compat=compat, treatment=engine.Policy(4.0), observation=OBS)
    idx = torch.arange(117, 140)
    part = engine.simulate_course(c.take(idx), seed=9, days=40, compat=compat, treatment=engine.Policy(4.0), observation=OBS)
    for name in ("volume_cm3", "chemo_concentration", "chemo_given", "radio_given", "status", "stop_day"):
        assert torch.equal(getattr(full, name)[idx], getattr(part, name)), name
    assert torch.equal(full.diameter_obs_cm[idx].nan_to_num(-1), part.diameter_obs_cm.nan_to_num(-1))


def test_regimen_arms_share_noise_and_untreated_arm_is_natural_history():
    c = g.draw_cohort(4, torch.arange(50))
    regs = [Regimen("none"), Regimen("chemo", chemo=Schedule(every_days=7))]
    course, reg_idx, _ = cf.simulate_regimens(c, regs, seed=4, days=30, compat="none")
    none = torch.zeros((50, 30), dtype=torch.bool)
    alone = engine.simulate_course(c, seed=4, days=30, compat="none", treatment=engine.Plan(none, none))
    assert torch.equal(course.volume_cm3[reg_idx == 0], alone.volume_cm3)
    # before the first dose acts (day 0 dose acts on day 1), both arms are identical
    assert torch.equal(course.volume_cm3[reg_idx == 0][:, 0], course.volume_cm3[reg_idx == 1][:, 0])
    # common noise: the day-to-day log-ratio differs between arms only by the treatment kill
    lr0 = torch.log(course.volume_cm3[reg_idx == 0])
    lr1 = torch.log(course.volume_cm3[reg_idx == 1])
    assert (lr1 <= lr0 + 1e-12)[:, 1:].all()


def test_replicates_differ_but_replicate_zero_is_factual_noise():
    c = g.draw_cohort(4, torch.arange(20))
    course, _, rep = cf.simulate_regimens(c, [Regimen("none")], seed=4, days=20, compat="none", replicates=2)
    none = torch.zeros((20, 20), dtype=torch.bool)
    alone = engine.simulate_course(c, seed=4, days=20, compat="none", treatment=engine.Plan(none, none))
    assert torch.equal(course.volume_cm3[rep == 0], alone.volume_cm3)
    assert not torch.equal(course.volume_cm3[rep == 1], alone.volume_cm3)


@pytest.mark.parametrize("compat", ["none", "reference"])
def test_test_sets_replay_the_factual_course_exactly(compat):
    c = g.draw_cohort(2, torch.arange(80))
    fac = engine.simulate_course(c, seed=2, days=30, compat=compat, treatment=engine.Policy(4.0))
    one = cf.one_step(c, seed=2, days=30, compat=compat, gamma=4.0, window_days=15)
    f = one[one.is_factual]
    v = fac.volume_cm3.numpy()
    assert np.array_equal(f.volume_next_cm3.to_numpy(), v[f.patient_id.to_numpy(), f.day.to_numpy() + 1])
    assert one.groupby(["patient_id", "day"]).is_factual.sum().eq(1).all()
    tau = cf.tau_step(c, seed=2, days=30, compat=compat, gamma=4.0, window_days=15, tau_max=4, start_every_days=2)
    f = tau[tau.sequence == 0]
    assert f.is_factual.all()
    alive = f.start_day + f.tau < fac.stop_day.numpy()[f.patient_id]
    f = f[alive]
    assert np.array_equal(f.volume_tau_cm3.to_numpy(), v[f.patient_id.to_numpy(), (f.start_day + f.tau).to_numpy()])


def test_policy_confounds_treatment_with_tumour_size():
    c = g.draw_cohort(6, torch.arange(4000))
    course = engine.simulate_course(c, seed=6, days=20, compat="none", treatment=engine.Policy(10.0))
    rate = course.chemo_given[:, 1:].float().mean(1).numpy()
    d0 = c.initial_diameter_cm.numpy()
    assert np.corrcoef(rate, d0)[0, 1] > 0.3
    at_zero = engine.simulate_course(c, seed=6, days=20, compat="none", treatment=engine.Policy(0.0))
    # gamma = 0 is randomised treatment with p = 1/2 each day (ref 1), not no treatment
    p = at_zero.chemo_given[:, 1:][at_zero.stop_day > 19].float().mean().item()
    n = int((at_zero.stop_day > 19).sum()) * 19
    assert abs(p - 0.5) < 4 * (0.25 / n) ** 0.5


def test_no_treatment_on_day_zero_under_the_policy():
    c = g.draw_cohort(6, torch.arange(500))
    course = engine.simulate_course(c, seed=6, days=5, compat="none", treatment=engine.Policy(10.0))
    assert not course.chemo_given[:, 0].any() and not course.radio_given[:, 0].any()


def test_730_days_work():
    c = g.draw_cohort(6, torch.arange(200))
    course = engine.simulate_course(c, seed=6, days=730, compat="none", treatment=engine.Policy(2.0), observation=OBS)
    assert course.volume_cm3.shape == (200, 730)
    assert torch.isfinite(course.volume_cm3).all()


@pytest.mark.gpu
def test_cpu_and_gpu_agree():
    c = g.draw_cohort(6, torch.arange(2000))
    cpu = engine.simulate_course(c, seed=6, days=60, compat="none", treatment=engine.Policy(4.0))
    gpu = engine.simulate_course(c.to("cuda"), seed=6, days=60, compat="none", treatment=engine.Policy(4.0))
    assert torch.equal(cpu.chemo_given, gpu.chemo_given.cpu())
    assert torch.allclose(cpu.volume_cm3, gpu.volume_cm3.cpu(), rtol=1e-12, atol=0)


def test_untreated_patients_die_on_any_day():
    c = g.draw_cohort(1, torch.arange(3000))
    none = torch.zeros((3000, 60), dtype=torch.bool)
    course = engine.simulate_course(c, seed=1, days=60, compat="none", treatment=engine.Plan(none, none))
    death_days = course.stop_day[course.status == g.STATUS_DEAD]
    assert len(death_days) > 100 and int((death_days > 30).sum()) > 20


def test_plan_strings():
    plans = torch.tensor([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    assert cf.plan_strings(plans).tolist() == ["100", "001", "100", "000", "111"]
