"""Virtual cohorts: patient ids per shard and the per-patient draws as a table."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

from oncobench.models import geng2017 as g


def shard_patient_ids(n_patients: int, shards: int, shard: int) -> torch.Tensor:
    """Patient ids of ``shard``: the contiguous block ``[k N / K, (k+1) N / K)``.

    A patient id always names the same patient (its draws are keyed by the id), so sharding
    decides only which job simulates whom.
    """
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside 0..{shards - 1}")
    lo = shard * n_patients // shards
    hi = (shard + 1) * n_patients // shards
    return torch.arange(lo, hi, dtype=torch.int64)


def draw(seed: int, patient_id: torch.Tensor) -> g.Geng2017Cohort:
    """Draw the given patients of the geng2017 model."""
    return g.draw_cohort(seed, patient_id)


def to_frame(cohort: g.Geng2017Cohort) -> pd.DataFrame:
    """The cohort as a :class:`oncobench.schemas.Cohort` table."""
    c = cohort.to("cpu")
    return pd.DataFrame(
        {
            "patient_id": c.patient_id.numpy(),
            "stage": np.asarray(g.STAGES, dtype=object)[c.stage.numpy()],
            "patient_type": c.patient_type.numpy(),
            "difficulty_tier": c.tier.numpy(),
            "initial_diameter_cm": c.initial_diameter_cm.numpy(),
            "initial_volume_cm3": c.initial_volume_cm3.numpy(),
            "growth_rate_per_day": c.growth_rate_per_day.numpy(),
            "radio_alpha_per_gy": c.radio_alpha_per_gy.numpy(),
            "radio_beta_per_gy2": c.radio_beta_per_gy2.numpy(),
            "chemo_beta_c": c.chemo_beta_c.numpy(),
            "carrying_capacity_cm3": c.carrying_capacity_cm3.numpy(),
        }
    )


def from_frame(df: pd.DataFrame, device: torch.device | str = "cpu") -> g.Geng2017Cohort:
    """Rebuild the model's cohort tensors from a validated Cohort table."""
    stage_index = {s: i for i, s in enumerate(g.STAGES)}

    def t(col: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.as_tensor(df[col].to_numpy(), dtype=dtype, device=device)

    return g.Geng2017Cohort(
        patient_id=t("patient_id", torch.int64),
        stage=torch.as_tensor(df["stage"].map(stage_index).to_numpy(), dtype=torch.int64, device=device),
        patient_type=t("patient_type", torch.int64),
        initial_diameter_cm=t("initial_diameter_cm"),
        initial_volume_cm3=t("initial_volume_cm3"),
        growth_rate_per_day=t("growth_rate_per_day"),
        radio_alpha_per_gy=t("radio_alpha_per_gy"),
        radio_beta_per_gy2=t("radio_beta_per_gy2"),
        chemo_beta_c=t("chemo_beta_c"),
        carrying_capacity_cm3=t("carrying_capacity_cm3"),
    )


def is_test_patient(seed: int, patient_id: torch.Tensor, test_fraction: float) -> torch.Tensor:
    """Deterministic train/test split by a keyed hash of the patient id (not by shard or N)."""
    from oncobench import rng
    from oncobench.rng import Stream

    return rng.uniform(rng.patient_keys(seed, Stream.SPLIT, patient_id), 0) < test_fraction


def batches(cohort: g.Geng2017Cohort, size: int) -> Iterator[g.Geng2017Cohort]:
    """Consecutive patient batches of at most ``size`` patients (bounds memory)."""
    for lo in range(0, len(cohort), size):
        yield cohort.take(torch.arange(lo, min(lo + size, len(cohort)), device=cohort.patient_id.device))
