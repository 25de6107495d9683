"""Factual courses under the historical policy, as long tables of patient-days."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

from oncobench import engine
from oncobench.cohort import batches as cohort_batches
from oncobench.models import geng2017 as g
from oncobench.schemas import STATUSES

# At most this many patient-days are held in memory at once (about 60 bytes each in tensors).
MAX_PATIENT_DAYS_PER_BATCH = 6_000_000


def batch_size(chunk_patients: int, days: int) -> int:
    """Patients per batch: the configured chunk, capped so a batch stays within memory."""
    return max(1, min(chunk_patients, MAX_PATIENT_DAYS_PER_BATCH // days))


def sequence_length(course: engine.Course, compat: str) -> torch.Tensor:
    """Active entries per row.

    Reference mode, as the Causal Transformer sets it: the stop day ``t`` for a stopped row
    (the stop day is not an active entry) and ``days - 1`` for a row alive at the horizon
    (the last loop index). Default: ``stop_day + 1`` (the stop day is a real observation),
    ``days`` for rows alive at the horizon.
    """
    if compat == "reference":
        return torch.clamp(course.stop_day, max=course.days - 1)
    return torch.clamp(course.stop_day + 1, max=course.days)


def to_frame(course: engine.Course, cohort: g.Geng2017Cohort, *, compat: str, record_every: int) -> pd.DataFrame:
    """Long table (:class:`oncobench.schemas.Trajectory`) of the recorded days of each row.

    Days after the stop are not written; the stop day is (with status dead or recovered), and
    every ``record_every``-th day before it.
    """
    n, days = course.volume_cm3.shape
    day = torch.arange(days).expand(n, days)
    stop = course.stop_day.cpu().unsqueeze(1)
    keep = (day <= stop) & ((day % record_every == 0) | (day == stop))
    seq_len = sequence_length(course, compat).cpu().unsqueeze(1)
    status_day = torch.zeros((n, days), dtype=torch.int8)
    final = course.status.cpu().unsqueeze(1).expand(n, days)
    status_day = torch.where(day == stop, final, status_day)

    def pick(x: torch.Tensor) -> np.ndarray:
        return x.cpu()[keep].numpy()

    vol = course.volume_cm3.cpu()
    obs = pick(course.diameter_obs_cm)
    return pd.DataFrame(
        {
            "patient_id": pick(cohort.patient_id.cpu().unsqueeze(1).expand(n, days)),
            "day": pick(day).astype(np.int64),
            "active": pick(day < seq_len),
            "status": pd.Categorical.from_codes(pick(status_day).astype(np.int8), categories=STATUSES),
            "volume_cm3": pick(vol),
            "diameter_cm": pick(g.diameter_cm(vol)),
            "chemo_concentration": pick(course.chemo_concentration),
            "radio_dose_gy": pick(course.radio_dose_gy),
            "chemo_given": pick(course.chemo_given),
            "radio_given": pick(course.radio_given),
            "scanned": ~np.isnan(obs),
            "diameter_obs_cm": obs,
        },
        copy=False,  # the picked arrays are fresh; consolidating them into blocks costs a full copy
    )


def simulate_frames(
    cohort: g.Geng2017Cohort,
    *,
    seed: int,
    days: int,
    compat: str,
    gamma: float,
    window_days: int,
    observation: engine.Observation,
    record_every: int,
    chunk_patients: int,
    device: torch.device,
) -> Iterator[pd.DataFrame]:
    """Simulate the factual courses batch by batch and yield their long tables in order."""
    for part in cohort_batches(cohort, batch_size(chunk_patients, days)):
        part = part.to(device)
        course = engine.simulate_course(
            part, seed=seed, days=days, compat=compat,
            treatment=engine.Policy(gamma=gamma, window_days=window_days), observation=observation,
        )
        yield to_frame(course, part, compat=compat, record_every=record_every)
