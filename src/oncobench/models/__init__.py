"""Patient models behind one protocol, chosen by the config key ``model``.

A patient model draws a cohort, simulates each patient's factual course under the historical
(confounded) policy, and simulates every patient under every candidate treatment with common
random numbers. The workflow's cohort, simulate and counterfactuals stages call only this
protocol; each model declares the schemas of the tables it produces. ``nsclc`` (the default) is
the precision-oncology model of :mod:`oncobench.nsclc`; ``geng2017`` is the literature's
tumour-growth model (:mod:`oncobench.models.geng2017`, batched by :mod:`oncobench.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

import pandas as pd
import pandera.pandas as pa
import torch

from oncobench.config import Config


@runtime_checkable
class PatientModel(Protocol):
    """What the workflow needs from a patient model."""

    name: str
    cohort_schema: type[pa.DataFrameModel]
    trajectory_schema: type[pa.DataFrameModel]
    outcome_schema: type[pa.DataFrameModel]
    factual_outcome_schema: type[pa.DataFrameModel] | None

    def cohort(self, patient_id: torch.Tensor) -> pd.DataFrame:
        """The cohort table of these patients (their draws depend only on seed and id)."""
        ...

    def factual(self, cohort: pd.DataFrame, gamma: float, device: torch.device) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
        """Batches of (trajectories, per-patient factual outcomes or None) under the policy ``gamma``."""
        ...

    def counterfactual(self, cohort: pd.DataFrame, device: torch.device) -> Iterator[pd.DataFrame]:
        """Batches of outcome rows: every patient x candidate treatment x replicate."""
        ...


@dataclass(frozen=True)
class Geng2017:
    """The geng2017 model (chemo/radio, three patient types) through the protocol."""

    cfg: Config
    name: str = "geng2017"

    @property
    def cohort_schema(self):
        from oncobench import schemas

        return schemas.Cohort

    @property
    def trajectory_schema(self):
        from oncobench import schemas

        return schemas.Trajectory

    @property
    def outcome_schema(self):
        from oncobench import schemas

        return schemas.RegimenOutcome

    factual_outcome_schema = None

    def cohort(self, patient_id: torch.Tensor) -> pd.DataFrame:
        from oncobench import cohort

        return cohort.to_frame(cohort.draw(self.cfg.seed, patient_id))

    def factual(self, cohort_df: pd.DataFrame, gamma: float, device: torch.device):
        from oncobench import cohort, engine, trajectories

        cfg = self.cfg
        c = cohort.from_frame(cohort_df, device=device)
        obs = engine.Observation(cfg.observation.scan_every_days, cfg.observation.diameter_cv)
        for frame in trajectories.simulate_frames(
            c, seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat, gamma=gamma,
            window_days=cfg.policy.window_days, observation=obs, record_every=cfg.simulation.record_every,
            chunk_patients=cfg.simulation.chunk_patients, device=device,
        ):
            yield frame, None

    def counterfactual(self, cohort_df: pd.DataFrame, device: torch.device):
        from oncobench import cohort, counterfactuals, trajectories

        cfg = self.cfg
        c = cohort.from_frame(cohort_df, device=device)
        cf = cfg.counterfactuals
        rows_per_patient = len(cf.regimens) * cf.replicates
        size = max(1, trajectories.batch_size(cfg.simulation.chunk_patients, cfg.simulation.days) // rows_per_patient)
        for part in cohort.batches(c, size):
            yield counterfactuals.regimen_outcomes(
                part, cf.regimens, seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat,
                horizons=cf.horizons_days, replicates=cf.replicates,
            )


@dataclass(frozen=True)
class Nsclc:
    """The precision-oncology NSCLC model through the protocol."""

    cfg: Config
    name: str = "nsclc"

    @property
    def model(self):
        from oncobench.nsclc.model import NsclcModel

        return NsclcModel.from_config(self.cfg)

    @property
    def cohort_schema(self):
        from oncobench import schemas

        return schemas.NsclcCohort

    @property
    def trajectory_schema(self):
        from oncobench import schemas

        return schemas.NsclcTrajectory

    @property
    def outcome_schema(self):
        from oncobench import schemas

        return schemas.NsclcOutcome

    @property
    def factual_outcome_schema(self):
        from oncobench import schemas

        return schemas.NsclcOutcome

    def cohort(self, patient_id: torch.Tensor) -> pd.DataFrame:
        return self.model.cohort_frame(patient_id)

    def _batches(self, m, cohort_df: pd.DataFrame, device: torch.device):
        size = self.cfg.nsclc.chunk_patients
        for start in range(0, len(cohort_df), size):
            yield m.from_cohort_frame(cohort_df.iloc[start : start + size], device)

    def factual(self, cohort_df: pd.DataFrame, gamma: float, device: torch.device):
        m = self.model
        for pop, lat in self._batches(m, cohort_df, device):
            yield m.factual(pop, lat, gamma)

    def counterfactual(self, cohort_df: pd.DataFrame, device: torch.device):
        m = self.model
        per_patient = len(m.first_line) * self.cfg.counterfactuals.replicates
        size = max(1, self.cfg.nsclc.chunk_patients // per_patient)
        for start in range(0, len(cohort_df), size):
            pop, lat = m.from_cohort_frame(cohort_df.iloc[start : start + size], device)
            yield m.counterfactual(pop, lat, replicates=self.cfg.counterfactuals.replicates)


def load(cfg: Config) -> PatientModel:
    """The patient model named by ``cfg.model``."""
    return {"nsclc": Nsclc, "geng2017": Geng2017}[cfg.model](cfg)
