"""The NSCLC pharmacology layer against independent answers.

One-compartment PK against the analytic bolus curve (integrated by scipy's quad), Calvert and
Mosteller against hand values, the Friberg model against scipy's solve_ivp, the LQ model and
BED against the hand formulas of brief §2, CTCAE grades at their exact thresholds (brief §3.2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad, solve_ivp
from scipy.linalg import expm

from oncobench.nsclc import drugs as D
from oncobench.nsclc import pkpd, toxicity as tox

F64 = torch.float64


# --- drug table ------------------------------------------------------------------------------


def test_drug_axis_follows_the_contract() -> None:
    assert D.DRUG_NAMES == (
        "cisplatin", "carboplatin", "pemetrexed", "paclitaxel", "docetaxel", "gemcitabine",
        "pembrolizumab", "nivolumab", "atezolizumab", "durvalumab", "gefitinib", "erlotinib",
        "osimertinib", "crizotinib", "alectinib", "thoracic_rt",
    )  # fmt: skip
    assert D.DRUG_CLASSES == (
        "platinum", "antifolate", "taxane", "nucleoside", "anti_pd1", "anti_pdl1",
        "egfr_tki_1g", "egfr_tki_3g", "alk_tki_1g", "alk_tki_2g", "radiotherapy",
    )  # fmt: skip
    assert tuple(D.DRUGS) == D.DRUG_NAMES
    units = {"carboplatin": "auc", "nivolumab": "mg_per_kg", "durvalumab": "mg_per_kg", "thoracic_rt": "gy"}
    for name in D.DRUG_NAMES:
        d = D.drug(name)
        assert d.name == name
        assert d.drug_class in D.DRUG_CLASSES and d.dose_unit in pkpd.DOSE_UNITS
        assert d.dose_unit == units.get(name, "mg_per_m2" if d.cytotoxic else "mg")
        assert d.half_life_h > 0 and d.volume_l > 0 and d.standard_dose > 0 and d.standard_interval_days > 0
        assert d.clearance_l_per_h > 0 and D.standard_mean_concentration_mg_per_l(d) > 0
        assert d.cytotoxic == (d.drug_class in ("platinum", "antifolate", "taxane", "nucleoside"))
        assert (d.myelo_potency > 0) == d.cytotoxic
        assert d.source
    classes = D.class_of_drug()
    assert classes.dtype == torch.int64
    assert [D.DRUG_CLASSES[i] for i in classes.tolist()] == [D.DRUGS[n].drug_class for n in D.DRUG_NAMES]


def test_unknown_drug_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="unknown drug 'aspirin'; valid drugs: cisplatin, carboplatin"):
        D.drug("aspirin")


def test_drug_checks_itself() -> None:
    with pytest.raises(ValueError, match="half_life_h must be > 0"):
        D.Drug("x", "taxane", "mg_per_m2", 1.0, 21.0, 0.0, 1.0, True, 0.1, None, "s")
    with pytest.raises(ValueError, match="myelo_potency"):
        D.Drug("x", "anti_pd1", "mg", 1.0, 21.0, 1.0, 1.0, False, 0.1, None, "s")


def test_costs_match_brief_section_6() -> None:
    assert D.drug("pembrolizumab").cost_gbp_per_mg * 200.0 == pytest.approx(5260.0)
    # £5,770 per 30 x 80 mg ~ £4,040 per 21 days of 80 mg (derived in the brief)
    assert D.drug("osimertinib").cost_gbp_per_mg * 21 * 80.0 == pytest.approx(4039.0, abs=1.0)
    assert D.drug("alectinib").cost_gbp_per_mg is None


def test_docetaxel_potency_is_friberg_slope_times_standard_mean_concentration() -> None:
    # 75 mg/m2 x 1.8 m2 = 135 mg; CL 21 L/h/m2 x 1.8 = 37.8 L/h; 21 days = 504 h; MW 808 g/mol
    c_std_um = 135.0 / (37.8 * 504.0) / 808.0 * 1000.0
    assert D.drug("docetaxel").myelo_potency == pytest.approx(8.58 * c_std_um, rel=1e-12)
    assert D.drug("docetaxel").myelo_potency == pytest.approx(0.07525, rel=1e-3)


def test_docetaxel_half_life_reproduces_friberg_three_compartment_day_split() -> None:
    # Friberg 2002 docetaxel PK (brief §3.1), rates per hour; central-compartment AUC share
    k10, k12, k21, k13, k31 = 5.2, 1.06, 1.51, 1.26, 0.084
    a = np.array([[-(k10 + k12 + k13), k21, k31], [k12, -k21, 0.0], [k13, 0.0, -k31]])
    # integral of expm(a t) over [0, 24 h] = top-right block of expm([[a, I], [0, 0]] x 24)
    block = np.zeros((6, 6))
    block[:3, :3], block[:3, 3:] = a, np.eye(3)
    day1 = expm(block * 24.0)[0, 3] * k10  # share of the total AUC, dose / (k10 V1)
    one_compartment_day1 = 1.0 - D.drug("docetaxel").decay_per_day
    assert one_compartment_day1 == pytest.approx(day1, abs=1e-4)


# --- dosing ----------------------------------------------------------------------------------


def test_calvert_and_fda_cap() -> None:
    crcl = torch.tensor([90.0, 125.0, 160.0, 40.0], dtype=F64)
    dose = pkpd.calvert_dose_mg(5.0, crcl)
    assert dose.tolist() == pytest.approx([575.0, 750.0, 750.0, 325.0])
    assert D.reference_dose_mg(D.drug("carboplatin")) == pytest.approx(575.0)


def test_bsa_mosteller_hand_value() -> None:
    bsa = pkpd.bsa_mosteller_m2(torch.tensor([170.0, 160.0], dtype=F64), torch.tensor([70.0, 90.0], dtype=F64))
    assert bsa.tolist() == pytest.approx([math.sqrt(170 * 70 / 3600), 2.0], rel=1e-15)
    assert bsa[0].item() == pytest.approx(1.8181, abs=1e-4)


def test_dose_units() -> None:
    kw = {
        "bsa_m2": torch.tensor([1.5, 2.0], dtype=F64),
        "weight_kg": torch.tensor([60.0, 80.0], dtype=F64),
        "crcl_ml_min": torch.tensor([50.0, 200.0], dtype=F64),
    }
    amount = torch.tensor([2.0, 3.0], dtype=F64)
    assert pkpd.dose_mg("mg_per_m2", amount, **kw).tolist() == [3.0, 6.0]
    assert pkpd.dose_mg("mg_per_kg", amount, **kw).tolist() == [120.0, 240.0]
    assert pkpd.dose_mg("auc", amount, **kw).tolist() == [150.0, 450.0]
    assert pkpd.dose_mg("mg", amount, **kw).tolist() == [2.0, 3.0]
    assert pkpd.dose_mg("gy", amount, **kw).tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="unknown dose unit 'mg_per_l'; expected one of mg_per_m2"):
        pkpd.dose_mg("mg_per_l", amount, **kw)
    matrix = D.doses_mg(torch.ones(2, len(D.DRUG_NAMES), dtype=F64), **kw)
    assert matrix.shape == (2, len(D.DRUG_NAMES))
    assert matrix[:, D.DRUG_NAMES.index("carboplatin")].tolist() == [75.0, 150.0]


# --- one-compartment PK ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["docetaxel", "paclitaxel", "osimertinib", "pembrolizumab"])
def test_daily_steps_after_one_bolus_match_the_analytic_curve(name: str) -> None:
    d = D.drug(name)
    dose = D.reference_dose_mg(d)
    amount = torch.zeros(1, 1, dtype=F64)
    for day in range(10):
        given = torch.full((1, 1), dose if day == 0 else 0.0, dtype=F64)
        start = one_compartment_amount(dose, d, 24.0 * day)
        assert amount.item() + given.item() == pytest.approx(dose if day == 0 else start, rel=1e-12)
        amount, mean = pkpd.advance_amount(amount, given, d.decay_per_day, d.elimination_rate_per_day)
        expected_mean_conc = (
            quad(
                lambda t: pkpd.one_compartment_concentration(dose, d.volume_l, d.half_life_h, t).item(),
                24.0 * day,
                24.0 * (day + 1),
                epsabs=0.0,
                epsrel=1e-13,
            )[0]
            / 24.0
        )
        assert mean.item() / d.volume_l == pytest.approx(expected_mean_conc, rel=1e-10)


def one_compartment_amount(dose: float, d: D.Drug, t_h: float) -> float:
    """Amount in the body t_h after a bolus, from the analytic concentration."""
    return pkpd.one_compartment_concentration(dose, d.volume_l, d.half_life_h, t_h).item() * d.volume_l


def test_repeated_daily_dosing_reaches_the_accumulation_ratio() -> None:
    d = D.drug("osimertinib")  # 80 mg daily, t1/2 48 h (brief §2: "~3-fold accumulation")
    decay = d.decay_per_day
    amount = torch.zeros(1, 1, dtype=F64)
    dose = torch.full((1, 1), 80.0, dtype=F64)
    means = []
    for _ in range(120):
        amount, mean = pkpd.advance_amount(amount, dose, decay, d.elimination_rate_per_day)
        means.append(mean.item())
    assert means[-1] / means[0] == pytest.approx(1.0 / (1.0 - decay), rel=1e-12)
    assert amount.item() == pytest.approx(80.0 * decay / (1.0 - decay), rel=1e-12)
    assert 1.0 / (1.0 - decay) == pytest.approx(3.41, abs=0.01)


def standard_schedule(name: str, days: int) -> torch.Tensor:
    """(days,) mg given each day on the drug's standard schedule for the reference patient."""
    d = D.drug(name)
    dose = D.reference_dose_mg(d)
    out = torch.zeros(days, dtype=F64)
    if name == "gemcitabine":  # d1, d8 q21d
        out[0::21] = dose
        out[7::21] = dose
    elif d.standard_interval_days < 1:  # twice daily: both doses as one daily bolus
        out[:] = dose / d.standard_interval_days
    else:
        out[:: int(d.standard_interval_days)] = dose
    return out


def test_standard_dosing_averages_intensity_one_for_every_drug() -> None:
    window = 42  # a whole number of cycles of every standard schedule (21, 14, 10.5, 1)
    windows = 30  # pembrolizumab keeps 0.27 of its amount over a window: 0.27**29 ~ 1e-17
    days = window * windows
    axis = D.drug_axis_pk()
    schedule = torch.stack([standard_schedule(n, days) for n in D.DRUG_NAMES], dim=1)  # (days, drugs)
    amount = torch.zeros(1, len(D.DRUG_NAMES), dtype=F64)
    intensities = []
    for day in range(days):
        amount, mean = pkpd.advance_amount(
            amount, schedule[day : day + 1], axis.decay_per_day, axis.elimination_rate_per_day
        )
        intensities.append(pkpd.intensity(mean, axis.volume_l, axis.standard_mean_concentration_mg_per_l))
    last_window = torch.cat(intensities[-window:]).mean(dim=0)
    assert last_window.tolist() == pytest.approx([1.0] * len(D.DRUG_NAMES), rel=1e-9)
    rt = D.DRUG_NAMES.index("thoracic_rt")
    assert intensities[0][0, rt].item() == pytest.approx(1.0, rel=1e-12)  # acts on its day only


# --- Friberg ---------------------------------------------------------------------------------


def friberg_rhs(effect: float, circ0: float, mtt_h: float, gamma: float):
    """Friberg 2002 right-hand side (brief §3.1), per day, written independently for scipy."""
    ktr = 4.0 / (mtt_h / 24.0)

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        prol, t1, t2, t3, circ = y
        return ktr * np.array(
            [prol * (1.0 - effect) * (circ0 / circ) ** gamma - prol, prol - t1, t1 - t2, t2 - t3, t3 - circ]
        )

    return rhs


def test_friberg_without_drug_stays_at_baseline() -> None:
    circ0 = torch.tensor([tox.FRIBERG_CIRC0, 2.5, 8.0], dtype=F64)
    state = tox.friberg_initial(circ0)
    assert state.shape == (3, 5)
    for _ in range(60):
        state = tox.friberg_step(state, 0.0, circ0, tox.FRIBERG_MTT_H, tox.FRIBERG_GAMMA)
    assert torch.allclose(state, circ0.unsqueeze(-1).expand(3, 5), rtol=1e-9, atol=0.0)


def test_friberg_constant_effect_matches_solve_ivp() -> None:
    effect = torch.tensor([0.2, 0.6, 0.95], dtype=F64)
    circ0 = torch.tensor([5.05, 3.0, 7.0], dtype=F64)
    mtt_h = torch.tensor([88.7, 60.0, 124.0], dtype=F64)
    gamma = torch.tensor([0.161, 0.3, 0.239], dtype=F64)
    state = tox.friberg_initial(circ0)
    ours = []
    for _ in range(30):
        state = tox.friberg_step(state, effect, circ0, mtt_h, gamma)
        ours.append(state)
    ours_t = torch.stack(ours, dim=1).numpy()  # (rows, days, 5)
    for r in range(3):
        sol = solve_ivp(
            friberg_rhs(effect[r].item(), circ0[r].item(), mtt_h[r].item(), gamma[r].item()),
            (0.0, 30.0),
            np.full(5, circ0[r].item()),
            method="DOP853",
            t_eval=np.arange(1.0, 31.0),
            rtol=1e-8,
            atol=1e-12,
        )
        np.testing.assert_allclose(ours_t[r], sol.y.T, rtol=1e-5)


def test_docetaxel_pulse_nadir_matches_solve_ivp() -> None:
    d = D.drug("docetaxel")
    axis_effect = []
    amount = torch.zeros(1, 1, dtype=F64)
    for day in range(21):
        given = torch.full((1, 1), D.reference_dose_mg(d) if day == 0 else 0.0, dtype=F64)
        amount, mean = pkpd.advance_amount(amount, given, d.decay_per_day, d.elimination_rate_per_day)
        level = pkpd.intensity(mean, d.volume_l, D.standard_mean_concentration_mg_per_l(d))
        axis_effect.append(min(d.myelo_potency * level.item(), 1.0))  # the default cap
    assert axis_effect[0] == 1.0 and 0.0 < axis_effect[1] < 0.1

    circ0 = tox.FRIBERG_CIRC0
    state = tox.friberg_initial(torch.tensor([circ0], dtype=F64))
    ours = []
    for e in axis_effect:
        state = tox.friberg_step(state, e, circ0, tox.FRIBERG_MTT_H, tox.FRIBERG_GAMMA)
        ours.append(state[0, 4].item())

    y = np.full(5, circ0)
    reference = []
    for e in axis_effect:  # piecewise-constant effect, one solve per day
        sol = solve_ivp(
            friberg_rhs(e, circ0, tox.FRIBERG_MTT_H, tox.FRIBERG_GAMMA), (0.0, 1.0), y,
            method="DOP853", rtol=1e-10, atol=1e-12,
        )  # fmt: skip
        y = sol.y[:, -1]
        reference.append(y[4])
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    nadir_day = int(np.argmin(reference)) + 1  # state at the end of day k+1
    assert int(np.argmin(ours)) + 1 == nadir_day
    assert 7 <= nadir_day <= 12
    assert min(reference) < 0.7 * circ0  # a real dip, not noise


def test_daily_docetaxel_effect_uncapped_reproduces_continuous_friberg_nadir() -> None:
    # Continuous Friberg 2002: three-compartment docetaxel PK (brief §3.1, bolus of 135 mg
    # into V1 = 7.4 L), E(t) = 8.58 per uM x C(t), no cap, solved by LSODA.
    k10, k12, k21, k13, k31, v1_l = 5.2, 1.06, 1.51, 1.26, 0.084, 7.4
    ktr_h, gamma, circ0 = 4.0 / tox.FRIBERG_MTT_H, tox.FRIBERG_GAMMA, tox.FRIBERG_CIRC0

    def rhs(_t: float, y: np.ndarray) -> list[float]:
        a1, a2, a3, prol, t1, t2, t3, circ = y
        effect = 8.58 * a1 / v1_l / 0.808
        return [
            -(k10 + k12 + k13) * a1 + k21 * a2 + k31 * a3, k12 * a1 - k21 * a2, k13 * a1 - k31 * a3,
            ktr_h * prol * ((1.0 - effect) * (circ0 / circ) ** gamma - 1.0),
            ktr_h * (prol - t1), ktr_h * (t1 - t2), ktr_h * (t2 - t3), ktr_h * (t3 - circ),
        ]  # fmt: skip

    sol = solve_ivp(
        rhs, (0.0, 14 * 24.0), [135.0, 0, 0, *[circ0] * 5], method="LSODA",
        t_eval=np.arange(1, 15) * 24.0, rtol=1e-9, atol=1e-12,
    )  # fmt: skip
    continuous = sol.y[7]

    d = D.drug("docetaxel")
    amount = torch.zeros(1, 1, dtype=F64)
    state = tox.friberg_initial(torch.tensor([circ0], dtype=F64))
    daily = []
    for day in range(14):
        given = torch.full((1, 1), D.reference_dose_mg(d) if day == 0 else 0.0, dtype=F64)
        amount, mean = pkpd.advance_amount(amount, given, d.decay_per_day, d.elimination_rate_per_day)
        effect = d.myelo_potency * pkpd.intensity(mean, d.volume_l, D.standard_mean_concentration_mg_per_l(d))
        state = tox.friberg_step(state, effect[:, 0], circ0, tox.FRIBERG_MTT_H, gamma, max_drug_effect=4.0)
        daily.append(state[0, 4].item())
    assert min(daily) == pytest.approx(continuous.min(), rel=0.03)
    assert abs(int(np.argmin(daily)) - int(np.argmin(continuous))) <= 1


def test_uncapped_effect_kills_more_than_capped() -> None:
    circ0 = torch.tensor([5.05], dtype=F64)
    start = tox.friberg_initial(circ0)
    capped = tox.friberg_step(start, 1.5, circ0, 88.7, 0.161)
    uncapped = tox.friberg_step(start, 1.5, circ0, 88.7, 0.161, max_drug_effect=4.0)
    ktr = 4 * 24 / 88.7  # at baseline feedback = 1, so dProl/dt = -ktr E Prol on the first day
    assert capped[0, 0].item() == pytest.approx(5.05 * math.exp(-ktr * 1.0), rel=1e-4)
    assert uncapped[0, 0].item() < capped[0, 0].item()


# --- radiotherapy ----------------------------------------------------------------------------


def test_lq_surviving_fraction_hand_formula() -> None:
    alpha = torch.tensor([0.0398, 0.305], dtype=F64)
    sf = pkpd.lq_surviving_fraction(2.0, alpha, torch.tensor([10.0, 2.8], dtype=F64))
    expected = [math.exp(-0.0398 * 2 - 0.00398 * 4), math.exp(-0.305 * 2 - 0.305 / 2.8 * 4)]
    assert sf.tolist() == pytest.approx(expected, rel=1e-14)
    assert pkpd.lq_surviving_fraction(0.0, alpha).tolist() == [1.0, 1.0]


def test_bed_of_60_gy_in_30_fractions_is_72_gy() -> None:
    assert pkpd.bed_gy(30, 2.0, 10.0).item() == pytest.approx(72.0)
    # 30 fractions' log kill = alpha x BED (LQ identity)
    assert (30 * pkpd.lq_log_kill(2.0, 0.05)).item() == pytest.approx(0.05 * 72.0)


# --- CTCAE -----------------------------------------------------------------------------------


def test_neutrophil_grade_boundaries() -> None:
    anc = torch.tensor([5.0, 2.0, 1.9999, 1.5, 1.4999, 1.0, 0.9999, 0.5, 0.4999, 0.0], dtype=F64)
    grade = tox.neutrophil_grade(anc)
    assert grade.dtype == torch.int8
    assert grade.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_febrile_neutropenia_needs_anc_below_one() -> None:
    anc = torch.tensor([2.0, 1.0, 0.9, 0.5, 0.1], dtype=F64)
    p = tox.febrile_neutropenia_probability_per_day(anc, 0.05, 0.01)
    expected = [0.0, 0.0, 1 - math.exp(-0.01), 1 - math.exp(-0.01), 1 - math.exp(-0.05)]
    assert p.tolist() == pytest.approx(expected, rel=1e-14, abs=0.0)
