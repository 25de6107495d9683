"""Haematological toxicity: Friberg 2002 neutrophil model, CTCAE v5 grades, febrile neutropenia.

Friberg et al. 2002 (JCO 20:4713; brief §3.1), one row per patient, cells in 1e9/L:

    dProl/dt = ktr Prol (1 - E) (Circ0 / Circ)^gamma - ktr Prol
    dT1/dt = ktr (Prol - T1);  dT2/dt = ktr (T1 - T2);  dT3/dt = ktr (T2 - T3)
    dCirc/dt = ktr T3 - ktr Circ,          ktr = kprol = kcirc = 4 / MTT

with the drug effect E held constant over each simulated day (E = potency x intensity,
:mod:`oncobench.nsclc.drugs`). Grades follow CTCAE v5.0 (brief §3.2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from oncobench.nsclc.pkpd import HOURS_PER_DAY

# Friberg 2002 docetaxel ANC model, linear drug effect (brief §3.1).
FRIBERG_MTT_H = 88.7
FRIBERG_GAMMA = 0.161
FRIBERG_CIRC0 = 5.05  # 1e9 cells/L
N_FRIBERG_COMPARTMENTS = 5  # prol, t1, t2, t3, circ
FRIBERG_COMPARTMENTS: tuple[str, ...] = ("prol", "t1", "t2", "t3", "circ")
# Keeps the feedback (Circ0/Circ)^gamma finite when Circ reaches 0 (1 cell per litre).
_CIRC_FLOOR_1E9_PER_L = 1e-9

# CTCAE v5.0 "Neutrophil count decreased" (brief §3.2), in 1e9/L. The LLN is laboratory
# specific; 2.0 x 1e9/L is a common adult value (assumption, not from the brief).
ANC_LLN_1E9_PER_L = 2.0
ANC_GRADE2_BELOW_1E9_PER_L = 1.5
ANC_GRADE3_BELOW_1E9_PER_L = 1.0
ANC_GRADE4_BELOW_1E9_PER_L = 0.5
# CTCAE v5.0 febrile neutropenia needs ANC < 1000/mm3 (brief §3.2).
FEBRILE_NEUTROPENIA_ANC_BELOW_1E9_PER_L = 1.0


def friberg_initial(circ0: Tensor) -> Tensor:
    """The Friberg steady state without drug: every compartment at Circ0.

    Args:
        circ0: (rows,) baseline neutrophil count, 1e9/L.

    Returns:
        (rows, 5) state [prol, t1, t2, t3, circ], 1e9/L.
    """
    circ0 = torch.as_tensor(circ0, dtype=torch.float64)
    return circ0.unsqueeze(-1).expand(*circ0.shape, N_FRIBERG_COMPARTMENTS).clone()


def _friberg_derivative(
    state: Tensor, one_minus_effect: Tensor, circ0: Tensor, ktr_per_day: Tensor, gamma: Tensor
) -> Tensor:
    """Right-hand side of the Friberg ODE, (rows, 5) per day."""
    prol, t1, t2, t3, circ = state.unbind(-1)
    feedback = (circ0 / circ.clamp(min=_CIRC_FLOOR_1E9_PER_L)) ** gamma
    return ktr_per_day.unsqueeze(-1) * torch.stack(
        (prol * (one_minus_effect * feedback - 1.0), prol - t1, t1 - t2, t2 - t3, t3 - circ), dim=-1
    )


def friberg_step(
    state: Tensor,
    drug_effect: Tensor | float,
    circ0: Tensor | float,
    mtt_h: Tensor | float,
    gamma: Tensor | float,
    *,
    dt_days: float = 1.0,
    substeps: int = 8,
    max_drug_effect: float = 1.0,
) -> Tensor:
    """Advance the Friberg model by ``dt_days`` with the drug effect constant, by RK4.

    Args:
        state: (rows, 5) [prol, t1, t2, t3, circ] in 1e9/L.
        drug_effect: (rows,) or scalar linear drug effect E >= 0 over the step.
        circ0: (rows,) or scalar baseline count Circ0, 1e9/L (brief §3.1: 5.05).
        mtt_h: (rows,) or scalar mean transit time, hours (88.7).
        gamma: (rows,) or scalar feedback exponent (0.161).
        dt_days: length of the step in days.
        substeps: RK4 substeps per step.
        max_drug_effect: E is clamped to [0, max_drug_effect]. The default 1 keeps 1 - E >= 0
            (a drug at most stops proliferation). Friberg's linear model lets E exceed 1
            (net kill of proliferating cells); a larger cap allows it, keeping
            4 x 24 / MTT x max_drug_effect x dt_days / substeps below ~2 for RK4 stability.

    Returns:
        (rows, 5) state after the step, 1e9/L.
    """
    f64 = torch.float64
    dev = state.device
    one_minus_effect = 1.0 - torch.as_tensor(drug_effect, dtype=f64, device=dev).clamp(0.0, max_drug_effect)
    circ0_t = torch.as_tensor(circ0, dtype=f64, device=dev)
    ktr = 4.0 * HOURS_PER_DAY / torch.as_tensor(mtt_h, dtype=f64, device=dev)
    ktr = ktr.expand(state.shape[:-1])
    gamma_t = torch.as_tensor(gamma, dtype=f64, device=dev)

    def rhs(y: Tensor) -> Tensor:
        return _friberg_derivative(y, one_minus_effect, circ0_t, ktr, gamma_t)

    h = dt_days / substeps
    y = state
    for _ in range(substeps):
        k1 = rhs(y)
        k2 = rhs(y + 0.5 * h * k1)
        k3 = rhs(y + 0.5 * h * k2)
        k4 = rhs(y + h * k3)
        y = y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return y


def neutrophil_grade(anc_1e9_per_l: Tensor) -> Tensor:
    """CTCAE v5.0 grade of "Neutrophil count decreased" (brief §3.2).

    G1 < LLN-1.5, G2 < 1.5-1.0, G3 < 1.0-0.5, G4 < 0.5 (x 1e9/L); a count exactly at a
    threshold takes the milder grade.

    Args:
        anc_1e9_per_l: absolute neutrophil count, 1e9/L, any shape.

    Returns:
        int8 grades 0..4, same shape.
    """
    anc = torch.as_tensor(anc_1e9_per_l, dtype=torch.float64)
    grade = (
        (anc < ANC_LLN_1E9_PER_L).to(torch.int8)
        + (anc < ANC_GRADE2_BELOW_1E9_PER_L).to(torch.int8)
        + (anc < ANC_GRADE3_BELOW_1E9_PER_L).to(torch.int8)
        + (anc < ANC_GRADE4_BELOW_1E9_PER_L).to(torch.int8)
    )
    return grade


def febrile_neutropenia_probability_per_day(
    anc_1e9_per_l: Tensor,
    rate_per_day_at_grade4: Tensor | float,
    rate_per_day_at_grade3: Tensor | float,
) -> Tensor:
    """Probability of a febrile-neutropenia episode starting on a day, given that day's ANC.

    A piecewise-constant hazard by neutropenia grade: ``rate_per_day_at_grade4`` below
    0.5 x 1e9/L, ``rate_per_day_at_grade3`` in [0.5, 1.0), and 0 from 1.0 up, since CTCAE v5.0
    febrile neutropenia requires ANC < 1.0 x 1e9/L (brief §3.2). The probability over one day
    is ``1 - exp(-hazard)``. The rates are calibration parameters (brief §3.3), not sourced.

    Args:
        anc_1e9_per_l: (rows,) ANC on the day, 1e9/L.
        rate_per_day_at_grade4: hazard per day at grade 4 neutropenia.
        rate_per_day_at_grade3: hazard per day at grade 3 neutropenia.

    Returns:
        (rows,) probability in [0, 1).
    """
    anc = torch.as_tensor(anc_1e9_per_l, dtype=torch.float64)
    r4 = torch.as_tensor(rate_per_day_at_grade4, dtype=torch.float64, device=anc.device)
    r3 = torch.as_tensor(rate_per_day_at_grade3, dtype=torch.float64, device=anc.device)
    zero = torch.zeros((), dtype=torch.float64, device=anc.device)
    hazard = torch.where(
        anc < ANC_GRADE4_BELOW_1E9_PER_L,
        r4,
        torch.where(anc < FEBRILE_NEUTROPENIA_ANC_BELOW_1E9_PER_L, r3, zero),
    )
    return -torch.expm1(-hazard)
