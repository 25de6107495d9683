"""The NSCLC model's release tables: cohort, factual trajectories, outcomes per patient x regimen.

Column lists here are the contract the schemas (``oncobench.schemas``), the evaluate and verify
stages and plug-in models rely on. The cohort table holds the observable covariates
(``population.COLUMNS``) and, prefixed ``latent_``, the mechanistic ground truth that a model
under test never sees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from oncobench.nsclc import population as popmod
from oncobench.nsclc import recist
from oncobench.nsclc.latent import LATENT_COLUMNS, Latent, latent_frame_columns
from oncobench.nsclc.simulator import Outcome, Record

LATENT_PREFIX = "latent_"
RESPONSES = tuple(r.name for r in recist.Response)
OUTCOME_COLUMNS = (
    "pfs_days",
    "pfs_event",
    "os_days",
    "os_event",
    "best_response",
    "grade3_ae",
    "worst_grade",
    "days_grade3plus",
    "febrile_neutropenia",
    "treatment_death",
    "qalys",
    "cost_gbp",
    "lines_received",
)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def latent_columns() -> list[str]:
    """Names of the latent (ground-truth) columns of the cohort table."""
    return [LATENT_PREFIX + c for c in LATENT_COLUMNS]


def cohort_frame(pop: popmod.Population, lat: Latent) -> pd.DataFrame:
    """Observable covariates plus ``latent_*`` ground truth, one row per patient."""
    df = popmod.to_frame(pop)
    for name, column in latent_frame_columns(lat).items():
        df[LATENT_PREFIX + name] = _np(column)
    return df


def observable(cohort: pd.DataFrame) -> pd.DataFrame:
    """The cohort without its latent columns: what a clinic (and a plug-in model) sees."""
    return cohort[[c for c in cohort.columns if not c.startswith(LATENT_PREFIX)]]


def outcome_columns(out: Outcome) -> dict[str, np.ndarray]:
    """Per-row outcome columns of :data:`OUTCOME_COLUMNS`."""
    best = _np(out.best_response).astype(int)
    return {
        "pfs_days": _np(out.pfs_days),
        "pfs_event": _np(out.pfs_event).astype(bool),
        "os_days": _np(out.os_days),
        "os_event": _np(out.os_event).astype(bool),
        "best_response": np.array(RESPONSES, dtype=object)[best],
        "grade3_ae": _np(out.grade3_ae_study).astype(bool),
        "worst_grade": _np(out.worst_grade).astype(np.int64),
        "days_grade3plus": _np(out.days_grade3plus).astype(np.int64),
        "febrile_neutropenia": _np(out.febrile_neutropenia).astype(bool),
        "treatment_death": _np(out.treatment_death).astype(bool),
        "qalys": _np(out.qalys),
        "cost_gbp": _np(out.cost_gbp),
        "lines_received": _np(out.lines_received).astype(np.int64),
    }


def outcome_frame(patient_id: torch.Tensor, regimen: list[str] | np.ndarray, out: Outcome, replicate: int = 0) -> pd.DataFrame:
    """One row per simulated row: patient, first-line regimen, replicate and outcomes."""
    df = pd.DataFrame({"patient_id": _np(patient_id).astype(np.int64), "regimen": np.asarray(regimen, dtype=object)})
    df["replicate"] = np.int64(replicate)
    for k, v in outcome_columns(out).items():
        df[k] = v
    return df


def trajectory_frame(patient_id: torch.Tensor, rec: Record, regimen_names: tuple[str, ...], *, record_every: int, scan_days: tuple[int, ...]) -> pd.DataFrame:
    """Long table of the factual course: every ``record_every``-th day and every scan day, alive days only.

    Columns: patient_id, day, regimen (the line's regimen), line (1 = first), drugs_given (bit
    mask over ``drugs.DRUG_NAMES``), sld_true_mm, scanned, sld_measured_mm (NaN if no scan),
    recist (category, NA if no scan), anc_1e9_per_l.
    """
    days, n = rec.alive.shape
    keep_day = np.zeros(days, dtype=bool)
    keep_day[::record_every] = True
    keep_day[[d for d in scan_days if d < days]] = True
    keep_day[0] = True
    alive = _np(rec.alive)
    sel_day = np.nonzero(keep_day)[0]
    mask = alive[sel_day]  # (kept days, rows)
    d_idx, r_idx = np.nonzero(mask)
    day = sel_day[d_idx]

    def pick(x: torch.Tensor) -> np.ndarray:
        return _np(x)[sel_day][d_idx, r_idx]

    code = pick(rec.recist).astype(int)
    meas = pick(rec.sld_measured_mm)
    cats = pd.Categorical.from_codes(np.where(code >= 0, code, -1), categories=list(RESPONSES))
    reg = pick(rec.regimen).astype(int)
    df = pd.DataFrame(
        {
            "patient_id": _np(patient_id).astype(np.int64)[r_idx],
            "day": day.astype(np.int64),
            "regimen": pd.Categorical.from_codes(reg, categories=list(regimen_names)),
            "line": pick(rec.line).astype(np.int64) + 1,
            "drugs_given": pick(rec.drugs_given).astype(np.int64),
            "sld_true_mm": pick(rec.sld_true_mm),
            "scanned": code >= 0,
            "sld_measured_mm": meas,
            "recist": cats,
            "anc_1e9_per_l": pick(rec.anc_1e9_per_l),
        }
    )
    return df.sort_values(["patient_id", "day"], kind="stable").reset_index(drop=True)
