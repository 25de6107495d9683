"""The NSCLC simulator against independent answers: event tables, analytic growth, Calvert, CRN."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from oncobench.config import load_config
from oncobench.nsclc import calibration, params as pm, policies
from oncobench.nsclc.drugs import DRUG_CLASSES, DRUG_NAMES
from oncobench.nsclc import population as popmod
from oncobench.nsclc.latent import IMMUNE_CONTEXTS, draw_latent, log_volume_to_sld, sld_to_log_volume
from oncobench.nsclc.model import NsclcModel
from oncobench.nsclc.regimens import expand
from oncobench.nsclc.simulator import Assignment, Schedule, Start, simulate
from oncobench.trials import runner
from oncobench.trials.spec import shipped_specs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> NsclcModel:
    return NsclcModel.from_config(load_config(overrides={"seed": 5, "nsclc": {"horizon_days": 200}}))


def _run(m: NsclcModel, pop, lat, regimen: str, days: int, *, params=None, library=None, record=True, scan_days=None,
         crossover: str | None = None, start: Start | None = None):
    lib = library or m.library
    n = len(pop)
    cross = -1 if crossover is None else lib.index(crossover)
    a = Assignment(torch.full((n,), lib.index(regimen), dtype=torch.int64), torch.full((n,), cross, dtype=torch.int64))
    scans = tuple(range(42, days, 42)) if scan_days is None else scan_days
    return simulate(pop, lat, a, Schedule(days=days, scan_days=scans, record=record), params or m.params, lib, seed=m.seed,
                    start=start)


def _without_stops(params):
    """``params`` with no treatment discontinuation, no deaths from treatment and no new lesions:
    a course then ends only by the regimen's own schedule (or a death from disease)."""
    return pm.with_values(params, {
        "toxicity.discontinue_probability": 0.0,
        "toxicity.febrile_neutropenia_death_probability": 0.0,
        "toxicity.treatment_death_probability": 0.0,
        "tumour.new_lesion_rate_per_day": 0.0,
    })


def test_doses_follow_the_event_table_when_nothing_intervenes(model):
    """With no holds, reductions, toxicity stops or progression, the simulator gives exactly expand()'s doses."""
    quiet = _without_stops(model.params)
    lib = dataclasses.replace(model.library, hold_anc_below_1e9_per_l=torch.zeros_like(model.library.hold_anc_below_1e9_per_l))
    pop, lat = model.draw(torch.arange(40))
    # very sensitive tumours do not progress within the window
    lat = dataclasses.replace(lat, sensitivity=torch.full_like(lat.sensitivity, 5.0))
    days = 120
    for regimen in ("carboplatin_pemetrexed", "pembrolizumab_carboplatin_pemetrexed", "docetaxel", "chemoradiation"):
        out = _run(model, pop, lat, regimen, days, params=quiet, library=lib)
        expected = expand(lib, regimen, days) > 0  # (days, D)
        bits = (expected.to(torch.int64) * (2 ** torch.arange(len(DRUG_NAMES)))).sum(1)
        alive_all = out.record.alive.all(0)
        fn = out.febrile_neutropenia
        ok = alive_all & ~fn & ~out.pfs_event
        assert ok.sum() > 20, regimen
        given = out.record.drugs_given[:, ok].to(torch.int64)
        assert torch.equal(given, bits.unsqueeze(1).expand_as(given)), regimen


def test_untreated_growth_is_exponential(model):
    pop, lat = model.draw(torch.arange(50))
    out = _run(model, pop, lat, "best_supportive_care", 150)
    sld = out.record.sld_true_mm.numpy()
    alive = out.record.alive.numpy()
    t = np.arange(150)[:, None]
    analytic = lat.baseline_sld_mm.numpy()[None, :] * np.exp(lat.growth_rate_per_day.numpy()[None, :] * t / 3.0)
    rel = np.abs(sld - analytic)[alive] / analytic[alive]
    assert rel.max() < 1e-10


def test_burden_index_round_trip():
    sld = torch.tensor([10.0, 55.5, 300.0], dtype=torch.float64)
    assert torch.allclose(log_volume_to_sld(sld_to_log_volume(sld)), sld, rtol=1e-14)
    # a sphere of diameter 2 cm has volume 4/3 pi
    assert math.isclose(float(torch.exp(sld_to_log_volume(torch.tensor(20.0, dtype=torch.float64)))), 4 / 3 * math.pi, rel_tol=1e-12)


def test_a_patient_does_not_depend_on_its_batch(model):
    """Common random numbers: patient k's course is the same alone, in a batch, and in any order."""
    pop, lat = model.draw(torch.arange(60))
    full = _run(model, pop, lat, "pembrolizumab_carboplatin_pemetrexed", 200, record=False)
    idx = torch.tensor([41, 3, 17])
    part = _run(model, pop.take(idx), lat.take(idx), "pembrolizumab_carboplatin_pemetrexed", 200, record=False)
    for f in ("os_days", "pfs_days", "qalys", "cost_gbp", "best_response", "days_grade3plus"):
        assert torch.equal(getattr(full, f)[idx], getattr(part, f)), f


def test_carboplatin_by_calvert_gives_the_target_exposure(model):
    """AUC dosing with clearance = GFR + 25 (Calvert): every patient's carboplatin exposure is the target."""
    from oncobench.nsclc import pkpd
    from oncobench.nsclc.drugs import DRUGS, REFERENCE_CRCL_ML_MIN, standard_mean_concentration_mg_per_l

    d = DRUGS["carboplatin"]
    crcl = torch.tensor([30.0, 60.0, 90.0, 124.0], dtype=torch.float64)
    dose = pkpd.calvert_dose_mg(torch.full_like(crcl, 5.0), crcl)
    cl_l_per_h = (crcl + 25.0) * 60 / 1000
    auc_mg_h_per_l = dose / cl_l_per_h  # one-compartment AUC after a bolus = dose / CL
    ref = standard_mean_concentration_mg_per_l(d) * 21 * 24  # the reference patient's AUC
    assert torch.allclose(auc_mg_h_per_l / ref, torch.ones_like(crcl), rtol=1e-9)
    assert REFERENCE_CRCL_ML_MIN == 90.0


def test_targeted_therapy_needs_its_target(model):
    pop, lat = model.draw(torch.arange(300))
    osi = _run(model, pop, lat, "osimertinib", 120)
    bsc = _run(model, pop, lat, "best_supportive_care", 120)
    wild = (pop.egfr == 0).numpy()
    # compare while both are alive and on the first line (the pathway after progression differs)
    both = (osi.record.alive & bsc.record.alive & (osi.record.line == 0) & (bsc.record.line == 0)).numpy()
    a, b = osi.record.sld_true_mm.numpy(), bsc.record.sld_true_mm.numpy()
    assert np.array_equal(a[:, wild][both[:, wild]], b[:, wild][both[:, wild]])
    mutant = ~wild
    assert mutant.sum() > 5
    day = 84
    ok = both[day] & mutant
    assert (a[day, ok] < b[day, ok]).mean() > 0.9


def test_progression_is_seen_only_on_scan_days_or_at_death(model):
    pop, lat = model.draw(torch.arange(400))
    out = _run(model, pop, lat, "carboplatin_pemetrexed", 200, record=False)
    pfs = out.pfs_days[out.pfs_event].numpy()
    died_first = (out.os_event & (out.os_days == out.pfs_days))[out.pfs_event].numpy()
    on_scan = np.isin(pfs, np.arange(42, 200, 42))
    assert (on_scan | died_first).all()


def test_trial_arms_follow_the_allocation_ratio(model):
    spec = shipped_specs()["keynote189"]
    spec = dataclasses.replace(spec, sample_size=60, data_cutoff_months=(("pfs", 3.0), ("os", 4.0), ("orr", 3.0), ("grade3_ae", 3.0)), accrual_months=1.0)
    df = runner.run_trial(spec, model.params, model.library, seed=3, replicates=2)
    counts = df.groupby(["replicate", "arm"]).size().unstack()
    ratio = {a.name: a.ratio for a in spec.arms}
    for arm, r in ratio.items():
        assert (counts[arm] == 60 * r // sum(ratio.values())).all() or (counts.sum(axis=1) == 60).all()
    assert (counts.sum(axis=1) == 60).all()
    assert df.patient_id.nunique() == 120  # replicates enrol different patients
    assert set(df.regimen[df.arm == spec.control_arm.name]) <= set(spec.control_arm.regimen_weights)


def test_calibrated_values_round_trip_through_the_yaml_text():
    from importlib import resources

    text = resources.files("oncobench").joinpath(pm.SHIPPED).read_text()
    values = {"drug_classes.platinum.potency_per_day": 0.0123, "survival.baseline_per_day": 0.00077,
              "tumour.advanced_growth_multiplier": 3.3, "immunotherapy.responder_scale": 1.7,
              "immunotherapy.responder_factor.after_progression": 0.7}
    new = calibration.write_values(text, values)
    import yaml

    raw = yaml.safe_load(new)
    p = pm.ModelParameters(raw=raw, source="test")
    for k, v in values.items():
        assert p.get(k) == pytest.approx(v, rel=1e-4)
    assert new.count("\n#") == text.count("\n#")  # comments kept
    untouched = pm.ModelParameters(raw=yaml.safe_load(text), source="x")
    assert p.get("drug_classes.taxane.potency_per_day") == untouched.get("drug_classes.taxane.potency_per_day")


def test_guideline_follows_the_biomarkers(model):
    pop, _ = model.draw(torch.arange(2000))
    names = np.array(policies.guideline_names(pop))
    egfr = (pop.egfr != 0).numpy()
    alk = pop.alk.numpy().astype(bool)
    assert (names[egfr] == "osimertinib").all()
    assert (names[alk & ~egfr] == "alectinib").all()
    high = (pop.pdl1_group == 2).numpy() & ~egfr & ~alk
    assert (names[high] == "pembrolizumab").all()


def test_bad_parameter_file_names_the_key(tmp_path):
    from oncobench.config import ConfigError

    text = (pm.resources.files("oncobench").joinpath(pm.SHIPPED)).read_text()
    bad = tmp_path / "p.yaml"
    bad.write_text(text.replace("potency_per_day: ", "potency_per_dy: ", 1))
    with pytest.raises(ConfigError, match=r"p\.yaml: missing key 'drug_classes\.platinum\.potency_per_day'"):
        pm.load_parameters(bad)
    value = re.search(r"post_progression_hazard_ratio: ([0-9.]+)", text).group(1)
    bad.write_text(text.replace(f"post_progression_hazard_ratio: {value}", "post_progression_hazard_ratio: 0"))
    with pytest.raises(ConfigError, match=r"'survival\.post_progression_hazard_ratio' must be > 0, got 0"):
        pm.load_parameters(bad)
    value = re.search(r"cytotoxic_kill_growth_exponent: ([0-9.]+)", text).group(1)
    bad.write_text(text.replace(f"cytotoxic_kill_growth_exponent: {value}", "cytotoxic_kill_growth_exponent: -1"))
    with pytest.raises(ConfigError, match=r"'tumour\.cytotoxic_kill_growth_exponent' must be a number >= 0.0, got -1"):
        pm.load_parameters(bad)


@pytest.mark.parametrize("progressed", [False, True])
def test_death_hazard_after_progression_is_multiplied_by_its_ratio(model, progressed):
    """With the burden, ECOG and age links off the death hazard is constant: h before progression,
    h x ratio after. Rows entering at progression (second line) on best supportive care, never
    scanned, must die by day T with probability 1 - exp(-T h ratio) (exponential clock summed in
    daily steps); the tolerance is 4 binomial standard errors."""
    h, ratio, n, days = 0.004, 3.0, 20_000, 100
    flat = pm.with_values(model.params, {
        "survival.burden_per_log_volume": 0.0,
        "survival.ecog_log_hazard": 0.0,
        "survival.age_log_hazard_per_decade": 0.0,
        "survival.baseline_per_day": h,
        "survival.post_progression_hazard_ratio": ratio,
    })
    pop, lat = model.draw(torch.arange(n))
    start = Start(
        log_volume=sld_to_log_volume(lat.baseline_sld_mm),
        class_exposure_days=torch.zeros((n, len(DRUG_CLASSES)), dtype=torch.float64),
        progressed=progressed,
    )
    bsc = model.library.index("best_supportive_care")
    a = Assignment(torch.full((n,), bsc, dtype=torch.int64), torch.full((n,), -1, dtype=torch.int64))
    out = simulate(pop, lat, a, Schedule(days=days, scan_days=()), flat, model.library, seed=model.seed, start=start)
    p = 1.0 - math.exp(-days * h * (ratio if progressed else 1.0))
    died = float(out.os_event.double().mean())
    assert abs(died - p) < 4.0 * math.sqrt(p * (1.0 - p) / n), (died, p)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_cytotoxic_kill_scales_with_growth_rate_by_norton_simon(model, power):
    """Norton-Simon: the daily log-volume step is g - (g / g_ref)^p x K, with K the kill a tumour
    growing at g_ref receives. The same patients at g_ref and at 2 g_ref, on the same cytotoxic
    doublet and never scanned (no progression, so the same doses and exposures), must satisfy
    delta_2(t) = 2 g_ref t - 2^p (g_ref t - delta_1(t)) exactly, delta = log V(t) - log V(0)."""
    quiet = pm.with_values(model.params, {"tumour.cytotoxic_kill_growth_exponent": power})
    g_ref = model.params.get("tumour.growth_rate_per_day.adenocarcinoma") * model.params.get(
        "tumour.advanced_growth_multiplier")
    pop, lat = model.draw(torch.arange(300))
    days = 90
    deltas = []
    for g in (g_ref, 2.0 * g_ref):
        lat_g = dataclasses.replace(lat, growth_rate_per_day=torch.full_like(lat.growth_rate_per_day, g))
        out = _run(model, pop, lat_g, "carboplatin_pemetrexed", days, params=quiet, scan_days=())
        # alive through the last day (the record starts each day, so a death on day 89 is in
        # os_event only); a survivor's course ends by no event, since nothing is scanned
        survived = ~out.os_event
        assert not bool(out.pfs_event[survived].any())
        logv = sld_to_log_volume(out.record.sld_true_mm)
        deltas.append((logv - logv[0], survived))
    (d1, alive1), (d2, alive2) = deltas
    both = alive1 & alive2
    assert int(both.sum()) > 200
    t = torch.arange(days, dtype=torch.float64)[:, None]
    expected = 2.0 * g_ref * t - 2.0**power * (g_ref * t - d1)
    assert torch.allclose(d2[:, both], expected[:, both], rtol=0.0, atol=1e-9)
    # the doublet kills: the comparison is not between two untreated courses
    assert float((g_ref * t - d1)[-1, both].min()) > 0.05


def test_norton_simon_runs_a_batch_that_is_given_no_drug(model):
    """Best supportive care alone uses no drug class; with the Norton-Simon exponent on, the
    class mask is empty and must still be boolean (regression: the verify stage's
    natural-history check crashed), and the course equals the exponent-0 one."""
    pop, lat = model.draw(torch.arange(50))
    courses = []
    for power in (0.0, 1.0):
        params = pm.with_values(model.params, {"tumour.cytotoxic_kill_growth_exponent": power})
        courses.append(_run(model, pop, lat, "best_supportive_care", 60, params=params, scan_days=()).record.sld_true_mm)
    torch.testing.assert_close(courses[0], courses[1], rtol=0.0, atol=0.0, equal_nan=True)  # NaN after death


def test_chemoradiation_kills_by_the_linear_quadratic_model_only(model):
    """The same patients on chemoradiation with and without its radiotherapy (the library's
    thoracic RT doses zeroed), never scanned and with no toxicity stops or deaths from
    treatment: the difference in log volume is the LQ log-kill of the fractions given,
    potency x (alpha d + alpha / beta d^2) each, exactly (regression: radiotherapy also killed
    through the drug-class term, 1 log per fraction day, eradicating stage III disease)."""
    quiet = _without_stops(model.params)
    lib = model.library
    rt = DRUG_NAMES.index("thoracic_rt")
    dose = lib.dose.clone()
    dose[lib.index("chemoradiation"), ..., rt] = 0.0
    no_rt = dataclasses.replace(lib, dose=dose)
    pop, lat = model.draw(torch.arange(300))
    days = 60
    with_rt = _run(model, pop, lat, "chemoradiation", days, params=quiet, scan_days=())
    without = _run(model, pop, lat, "chemoradiation", days, params=quiet, library=no_rt, scan_days=())
    both = with_rt.record.alive.all(0) & without.record.alive.all(0)
    assert int(both.sum()) > 250
    fractions = ((with_rt.record.drugs_given.to(torch.int64) >> rt) & 1).sum(0).to(torch.float64)
    assert int(fractions[both].min()) >= 25  # most of the 30 fractions, whatever the holds
    alpha, d = lat.radio_alpha_per_gy, 2.0
    lq = quiet.drug_class("radiotherapy")["potency_per_day"] * (alpha * d + alpha / quiet.get("radiotherapy.alpha_beta_gy") * d * d)
    # the living burden (what grows; below the volume floor by its clonogen depth); scans also
    # see the killed, not yet cleared volume (below); eradicated tumours have no log volume
    living = with_rt.final_log_volume + with_rt.final_clonogen_depth
    both &= torch.isfinite(living) & (without.final_clonogen_depth == 0)
    delta = without.final_log_volume - living
    assert torch.allclose(delta[both], (fractions * lq)[both], rtol=0.0, atol=1e-9)
    # a stage III tumour is not eradicated by 60 Gy: the median living diameter sum keeps over a tenth
    assert float((log_volume_to_sld(with_rt.final_log_volume[both]) / lat.baseline_sld_mm[both]).median()) > 0.1


def test_radiotherapy_eradicates_with_the_poisson_tumour_control_probability(model):
    """Identical tumours (growth g, baseline L0) on 60 Gy with drug kill off: below the volume
    floor the simulator tracks the clonogens exactly (log volume L0 + g (t + 1) - q x fractions
    given by day t), and a tumour is eradicated with probability exp(-N) of the N = density x
    volume clonogens left after the last fraction (Poisson TCP), then never regrows. q is chosen
    so that N = 1 (TCP 0.37); at n = 4000 the binomial SE is 0.0076, 0.03 is four of them."""
    quiet = pm.with_values(_without_stops(model.params), {
        **{f"drug_classes.{c}.potency_per_day": 0.0 for c in ("platinum", "taxane")},
        "survival.baseline_per_day": 1e-12,
    })
    n, days, g = 4000, 200, 0.004
    pop, lat = model.draw(torch.arange(n))
    sld0 = 40.0
    log_l0 = float(sld_to_log_volume(torch.tensor(sld0, dtype=torch.float64)))
    density = quiet.get("radiotherapy.clonogens_per_cm3")
    frac_days = [d for w in range(6) for d in range(7 * w, 7 * w + 5)]  # day 0 = Monday, 30 fractions
    last = frac_days[-1]
    q = (log_l0 + g * (last + 1) + math.log(density)) / 30  # N = 1 after the last fraction
    ab = quiet.get("radiotherapy.alpha_beta_gy")
    alpha = q / (2.0 + 4.0 / ab) / quiet.drug_class("radiotherapy")["potency_per_day"]
    lat = dataclasses.replace(
        lat,
        growth_rate_per_day=torch.full((n,), g, dtype=torch.float64),
        baseline_sld_mm=torch.full((n,), sld0, dtype=torch.float64),
        radio_alpha_per_gy=torch.full((n,), alpha, dtype=torch.float64),
    )
    out = _run(model, pop, lat, "chemoradiation", days, params=quiet, scan_days=())
    assert bool(out.record.alive.all())
    rt = DRUG_NAMES.index("thoracic_rt")
    given = ((out.record.drugs_given.to(torch.int64) >> rt) & 1).sum(0)
    assert bool((given == 30).all())
    gone = torch.isneginf(out.final_clonogen_depth)
    assert abs(float(gone.double().mean()) - math.exp(-1.0)) < 0.03
    floor = float(sld_to_log_volume(torch.tensor(0.1, dtype=torch.float64)))
    assert bool((out.final_log_volume[gone] == floor).all())  # eradicated: never regrows
    expected = log_l0 + g * days - 30 * q  # the survivors' clonogens at the end (below the floor)
    assert expected < floor
    living = out.final_log_volume[~gone] + out.final_clonogen_depth[~gone]
    assert torch.allclose(living, torch.full_like(living, expected), rtol=0.0, atol=1e-9)


@pytest.mark.parametrize("rate", [0.027, 0.2, math.inf])
def test_radiotherapy_kill_stays_on_scans_until_cleared(model, rate):
    """With the cytotoxic drugs' kill off, a patient on chemoradiation has living volume
    L(t) = L(0) exp(g t - q x fractions before t) and the scanned volume is L(t) plus each
    fraction's kill, L(s) e^g (1 - e^-q), decayed by exp(-rate (t - s)): a closed-form sum
    computed here in numpy, against the simulator's recursive doomed volume. An infinite rate is
    the model without the compartment (scans see the living volume only)."""
    quiet = pm.with_values(_without_stops(model.params), {
        "radiotherapy.doomed_clearance_per_day": rate,
        **{f"drug_classes.{c}.potency_per_day": 0.0 for c in ("platinum", "taxane")},
    })
    pop, lat = model.draw(torch.arange(60))
    days = 90
    out = _run(model, pop, lat, "chemoradiation", days, params=quiet, scan_days=())
    ok = out.record.alive.all(0).numpy()
    assert ok.sum() > 50
    rt = DRUG_NAMES.index("thoracic_rt")
    frac = ((out.record.drugs_given.to(torch.int64) >> rt) & 1).numpy().astype(float)  # (days, rows)
    g = lat.growth_rate_per_day.numpy()
    alpha = lat.radio_alpha_per_gy.numpy()
    q = alpha * 2.0 + alpha / quiet.get("radiotherapy.alpha_beta_gy") * 4.0
    log_l0 = sld_to_log_volume(lat.baseline_sld_mm).numpy()
    before = np.vstack([np.zeros((1, len(g))), np.cumsum(frac, 0)[:-1]])  # fractions before day t
    t = np.arange(days)[:, None]
    living = np.exp(log_l0 + g * t - q * before)  # (days, rows), at the start of day t
    killed = living * np.exp(g) * -np.expm1(-q) * frac  # killed on day s
    decay = np.exp(-rate * np.clip(t - t.T, 1, None)) * (t > t.T)  # [t, s]: e^{-rate (t - s)}, s < t
    doomed = decay @ killed if math.isfinite(rate) else np.zeros_like(living)
    seen = np.log(living + doomed)
    ok &= (np.log(living) > sld_to_log_volume(torch.tensor(0.1)).item() + 1.0).all(0)  # above the volume floor
    assert ok.sum() > 40
    got = sld_to_log_volume(out.record.sld_true_mm).numpy()
    np.testing.assert_allclose(got[:, ok], seen[:, ok], rtol=0.0, atol=1e-9)
    np.testing.assert_allclose(out.final_log_volume.numpy()[ok], np.log(living[-1] * np.exp(g - q * frac[-1]))[ok], atol=1e-9)
    if math.isfinite(rate):
        assert (out.final_doomed_volume.numpy()[ok] > 0).all()
    else:
        assert (out.final_doomed_volume.numpy() == 0).all()


def test_entrants_carry_their_doomed_volume(model):
    """Rows entering with a doomed volume D (consolidation after chemoradiation) and no further
    treatment are seen at L e^(g t) + D e^(-rate t); the living part alone drives death."""
    quiet = _without_stops(model.params)
    rate = quiet.get("radiotherapy.doomed_clearance_per_day")
    pop, lat = model.draw(torch.arange(40))
    log_l = sld_to_log_volume(lat.baseline_sld_mm * 0.3)
    doomed = torch.exp(sld_to_log_volume(lat.baseline_sld_mm)) * 0.5
    zeros = torch.zeros((len(pop), len(DRUG_CLASSES)), dtype=torch.float64)
    start = Start(log_volume=log_l, class_exposure_days=zeros, doomed_volume=doomed)
    out = _run(model, pop, lat, "best_supportive_care", 60, params=quiet, scan_days=(), start=start)
    ok = out.record.alive.all(0)
    t = torch.arange(60, dtype=torch.float64)[:, None]
    seen = torch.log(torch.exp(log_l + lat.growth_rate_per_day * t) + doomed * torch.exp(-rate * t))
    torch.testing.assert_close(sld_to_log_volume(out.record.sld_true_mm)[:, ok], seen[:, ok], rtol=0.0, atol=1e-9)
    # without the doomed volume the rows die on the same days: the death hazard sees the living burden
    long = _run(model, pop, lat, "best_supportive_care", 400, params=quiet, scan_days=(), start=start, record=False)
    bare = _run(model, pop, lat, "best_supportive_care", 400, params=quiet, scan_days=(), record=False,
                start=dataclasses.replace(start, doomed_volume=None))
    assert int(long.os_event.sum()) >= 5
    assert torch.equal(bare.os_days, long.os_days) and torch.equal(bare.os_event, long.os_event)


def test_entrants_carry_their_clonogen_depth(model):
    """Rows entering below the volume floor (after chemoradiation, consolidation) regrow from
    there, L_floor + depth + g t, and are seen only once above the floor; eradicated rows
    (depth -inf) stay at the floor; rows without a depth are the model before it, unchanged."""
    quiet = _without_stops(model.params)
    pop, lat = model.draw(torch.arange(30))
    floor = sld_to_log_volume(torch.tensor(0.1, dtype=torch.float64))
    n, days = len(pop), 400
    depth = torch.full((n,), -1.0, dtype=torch.float64)
    depth[::3] = -math.inf
    zeros = torch.zeros((n, len(DRUG_CLASSES)), dtype=torch.float64)
    start = Start(log_volume=torch.full((n,), float(floor), dtype=torch.float64), class_exposure_days=zeros,
                  clonogen_depth=depth)
    out = _run(model, pop, lat, "best_supportive_care", days, params=quiet, scan_days=(), start=start)
    ok = out.record.alive.all(0)
    assert int(ok.sum()) > 20
    t = torch.arange(days, dtype=torch.float64)[:, None]
    living = (floor + depth + lat.growth_rate_per_day * t).clamp(min=float(floor))
    torch.testing.assert_close(sld_to_log_volume(out.record.sld_true_mm)[:, ok], living[:, ok], rtol=0.0, atol=1e-9)
    assert bool(torch.isneginf(out.final_clonogen_depth[::3]).all())
    bare = _run(model, pop, lat, "best_supportive_care", days, params=quiet, scan_days=(),
                start=dataclasses.replace(start, clonogen_depth=None))
    same = _run(model, pop, lat, "best_supportive_care", days, params=quiet, scan_days=(),
                start=dataclasses.replace(start, clonogen_depth=torch.zeros(n, dtype=torch.float64)))
    assert torch.equal(bare.record.sld_true_mm, same.record.sld_true_mm)


def _with_factors(params, with_chemotherapy: float, after_progression: float):
    return pm.with_values(params, {
        "immunotherapy.responder_factor.with_chemotherapy": with_chemotherapy,
        "immunotherapy.responder_factor.after_progression": after_progression,
    })


def test_immune_contexts_are_nested_and_follow_their_factors(model):
    """The responder share of each context is p(PD-L1 group) x responder_scale x the context's
    factors, capped at 1, from one uniform draw per patient: a context with a larger probability
    responds in a superset of the patients. Tolerance: 4 binomial standard errors per group."""
    chemo, progressed = 1.3, 0.4
    factor = {"monotherapy": 1.0, "with_chemotherapy": chemo, "monotherapy_after_progression": progressed,
              "with_chemotherapy_after_progression": chemo * progressed}
    n = 40_000
    pop, _ = model.draw(torch.arange(n))
    lat = draw_latent(model.seed, pop, _with_factors(model.params, chemo, progressed))
    io = model.params.section("immunotherapy")
    resp = lat.immune_context_responder
    assert torch.equal(lat.immune_responder, resp[:, 0])
    for g, name in enumerate(popmod.PDL1_GROUPS):
        rows = pop.pdl1_group == g
        for c, context in enumerate(IMMUNE_CONTEXTS):
            p = min(1.0, io["responder_probability"][name] * io["responder_scale"] * factor[context])
            share = float(resp[rows, c].double().mean())
            se = math.sqrt(max(p * (1 - p), 1e-12) / int(rows.sum()))
            assert abs(share - p) <= 4 * se + 1e-12, (name, context, share, p)
    order = sorted(range(len(IMMUNE_CONTEXTS)), key=lambda c: factor[IMMUNE_CONTEXTS[c]])
    for smaller, larger in zip(order, order[1:]):
        assert not bool((resp[:, smaller] & ~resp[:, larger]).any())
    fixed = draw_latent(model.seed, pop, _with_factors(model.params, 1.0, 1.0)).immune_context_responder
    assert all(torch.equal(fixed[:, c], fixed[:, 0]) for c in range(len(IMMUNE_CONTEXTS)))  # factors 1: a fixed trait


def _course(model, params, pop, lat, regimen: str, **assignment):
    out = _run(model, pop, lat, regimen, 300, params=params, **assignment)
    return out.record.sld_true_mm.nan_to_num(-1.0)  # NaN after death


def test_immunotherapy_acts_only_where_the_line_context_responds(model):
    """A context factor of 0 closes the immune gate in its context only. There the course is
    exactly the course with PD-(L)1 potency 0 (adverse events follow exposure, not potency);
    in the other contexts it is exactly the shipped course. Without the gate the two differ.
    The antibody still circulating after a line ends acts in the context it was given in (the
    pathway after pembrolizumab with chemotherapy gives none in another context)."""
    pop, lat = model.draw(torch.arange(400))
    no_io = pm.with_values(model.params, {"drug_classes.anti_pd1.potency_per_day": 0.0})
    shipped = _with_factors(model.params, 1.0, 1.0)
    lat = draw_latent(model.seed, pop, shipped)
    no_chemo_context = _with_factors(model.params, 0.0, 1.0)
    lat_c = draw_latent(model.seed, pop, no_chemo_context)
    combo = "pembrolizumab_carboplatin_pemetrexed"
    assert torch.equal(_course(model, no_chemo_context, pop, lat_c, combo), _course(model, no_io, pop, lat, combo))
    assert not torch.equal(_course(model, shipped, pop, lat, combo), _course(model, no_io, pop, lat, combo))
    assert torch.equal(_course(model, no_chemo_context, pop, lat_c, "pembrolizumab"), _course(model, shipped, pop, lat, "pembrolizumab"))

    # after progression: crossover from chemotherapy to pembrolizumab, and second-line entrants
    no_later = _with_factors(model.params, 1.0, 0.0)
    lat_p = draw_latent(model.seed, pop, no_later)
    chemo = "carboplatin_pemetrexed"
    crossed = {"crossover": "pembrolizumab"}
    assert torch.equal(_course(model, no_later, pop, lat_p, chemo, **crossed), _course(model, no_io, pop, lat, chemo, **crossed))
    assert not torch.equal(_course(model, shipped, pop, lat, chemo, **crossed), _course(model, no_io, pop, lat, chemo, **crossed))
    entrants = Start(
        log_volume=sld_to_log_volume(lat.baseline_sld_mm),
        class_exposure_days=torch.zeros((len(pop), len(DRUG_CLASSES)), dtype=torch.float64),
        progressed=True,
    )
    second = {"start": entrants}
    assert torch.equal(_course(model, no_later, pop, lat_p, "pembrolizumab", **second), _course(model, no_io, pop, lat, "pembrolizumab", **second))
    assert not torch.equal(_course(model, shipped, pop, lat, "pembrolizumab", **second), _course(model, no_io, pop, lat, "pembrolizumab", **second))
    assert torch.equal(_course(model, no_later, pop, lat_p, "pembrolizumab"), _course(model, shipped, pop, lat, "pembrolizumab"))


def test_friberg_day_on_moving_rows_matches_a_fine_solution():
    """The simulator's daily Friberg step (steady rows skipped, more substeps for strong effects)
    against 32 RK4 substeps per day for every row, over single pulses up to the largest effect."""
    from oncobench.nsclc import toxicity
    from oncobench.nsclc.simulator import MAX_DRUG_EFFECT, _friberg_day

    pulses = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.5, MAX_DRUG_EFFECT], dtype=torch.float64)
    circ0 = torch.linspace(3.0, 6.0, len(pulses), dtype=torch.float64)
    fast = fine = toxicity.friberg_initial(circ0)
    worst = 0.0
    for day in range(30):
        e = pulses if day == 0 else torch.zeros_like(pulses)
        fast = _friberg_day(fast, e, circ0)
        fine = toxicity.friberg_step(fine, e, circ0, toxicity.FRIBERG_MTT_H, toxicity.FRIBERG_GAMMA,
                                     substeps=32, max_drug_effect=MAX_DRUG_EFFECT)
        worst = max(worst, float(((fast[:, 4] - fine[:, 4]).abs() / fine[:, 4]).max()))
        assert torch.equal(fast[0], toxicity.friberg_initial(circ0)[0])  # no drug: never moves
    assert worst < 0.005


def test_simulator_rk4_is_the_toxicity_module_step():
    from oncobench.nsclc import toxicity
    from oncobench.nsclc.simulator import MAX_DRUG_EFFECT, _friberg_rk4

    circ0 = torch.tensor([5.05, 3.0, 7.5], dtype=torch.float64)
    fr = toxicity.friberg_initial(circ0) * torch.tensor([[1.0], [0.4], [1.3]], dtype=torch.float64)
    effect = torch.tensor([0.3, 2.2, 0.0], dtype=torch.float64)
    ref = toxicity.friberg_step(fr, effect, circ0, toxicity.FRIBERG_MTT_H, toxicity.FRIBERG_GAMMA,
                                substeps=3, max_drug_effect=MAX_DRUG_EFFECT)
    assert torch.allclose(_friberg_rk4(fr, effect, circ0, 3), ref, rtol=1e-12, atol=0)


def _outcome_tensors(out) -> dict[str, torch.Tensor]:
    values = {f.name: getattr(out, f.name) for f in dataclasses.fields(out) if f.name != "record"}
    if out.record is not None:
        values.update({"record." + f.name: getattr(out.record, f.name) for f in dataclasses.fields(out.record)})
    return values


def _assert_bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for name in a:
        x, y = a[name], b[name]
        if x.is_floating_point():  # NaN marks "none" (no progression, no scan, after death)
            assert torch.equal(torch.isnan(x), torch.isnan(y)), name
            x, y = torch.nan_to_num(x, nan=0.0), torch.nan_to_num(y, nan=0.0)
        assert torch.equal(x, y), name


@pytest.mark.parametrize("until_progression", [False, True])
def test_dropping_finished_rows_changes_no_result(model, monkeypatch, until_progression):
    """The simulator drops dead rows (and, with ``until_study_progression``, rows past their study
    progression) from the batch as they accumulate. Every result must equal, bit for bit, the run
    that keeps every row to the end (share 0: never drop) and the run that drops at every death
    (share 1). Mixed regimens with radiotherapy, chemotherapy, immunotherapy and a crossover rule
    reach every branch of the day (scans, line switches, adverse events, eradication)."""
    from oncobench.nsclc import simulator

    n, days = 600, 400
    pop, lat = model.draw(torch.arange(3_000, 3_000 + n))
    lib = model.library
    names = ["chemoradiation", "docetaxel", "pembrolizumab", "cisplatin_pemetrexed", "carboplatin_paclitaxel"]
    reg = lib.indices(names)[torch.arange(n) % len(names)]
    cross = torch.where(torch.arange(n) % 3 == 0, lib.index("pembrolizumab"), -1)
    record = not until_progression
    runs = {}
    for share in (0.0, 0.9, 1.0):
        monkeypatch.setattr(simulator, "COMPACT_SHARE", share)
        out = simulate(pop, lat, Assignment(reg, cross), Schedule(days=days, scan_days=tuple(range(42, days, 42)), record=record),
                       model.params, lib, seed=model.seed, until_study_progression=until_progression)
        runs[share] = _outcome_tensors(out)
    if until_progression:  # the rest is documented as not meaningful after study progression
        keep = ("pfs_days", "pfs_event", "progression_log_volume", "progression_class_exposure", "progression_doomed_volume")
        runs = {s: {k: v[k] for k in keep} for s, v in runs.items()}
    else:
        died = runs[0.0]["os_event"]
        assert 0.3 < float(died.double().mean()) < 0.95  # enough deaths for rows to be dropped
    _assert_bit_equal(runs[0.0], runs[0.9])
    _assert_bit_equal(runs[0.0], runs[1.0])


def test_a_dead_patient_accrues_no_exposure(model):
    """Days on a drug class count while alive: a patient who dies with drug still circulating has the
    exposure of the day of death at the end of the horizon."""
    n = 400
    pop, lat = model.draw(torch.arange(5_000, 5_000 + n))
    long = _run(model, pop, lat, "pembrolizumab_carboplatin_pemetrexed", 300, record=False)
    short = _run(model, pop, lat, "pembrolizumab_carboplatin_pemetrexed", 150, record=False)
    died_early = long.os_event & (long.os_days < 100)
    assert int(died_early.sum()) > 5
    assert torch.equal(long.final_class_exposure[died_early], short.final_class_exposure[died_early])
