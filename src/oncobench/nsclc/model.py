"""The NSCLC patient model as the workflow uses it: cohort, factual course, counterfactual outcomes.

:class:`NsclcModel` bundles the parameters, regimen library and config keys, and implements the
patient-model protocol of :mod:`oncobench.models` (draw a cohort, simulate the factual course
under the historical policy, simulate every patient under every regimen with common random
numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from oncobench.config import Config, ConfigError
from oncobench.nsclc import policies, tables
from oncobench.nsclc import population as popmod
from oncobench.nsclc.latent import Latent, draw_latent
from oncobench.nsclc.params import ModelParameters, load_parameters
from oncobench.nsclc.regimens import RegimenLibrary, load_library
from oncobench.nsclc.simulator import Assignment, Schedule, Tables, build_tables, simulate

FACTUAL_REPLICATE = 0
COUNTERFACTUAL_REPLICATE = 0  # the factual course is one of the counterfactual rows: same noise


@dataclass(frozen=True)
class NsclcModel:
    """Parameters, library and the run's keys; built by :meth:`from_config`."""

    params: ModelParameters
    library: RegimenLibrary
    seed: int
    region: str
    horizon_days: int
    scan_every_days: int
    record_every: int
    first_line: tuple[str, ...]

    name = "nsclc"

    @classmethod
    def from_config(cls, cfg: Config) -> "NsclcModel":
        n = cfg.nsclc
        params = load_parameters(n.parameters)
        library = load_library(n.regimens)
        for i, r in enumerate(n.first_line_regimens):
            if r not in library.names:
                raise ConfigError(
                    f"config key 'nsclc.first_line_regimens[{i}]': unknown regimen '{r}'; expected one of {list(library.names)}"
                )
        return cls(
            params=params,
            library=library,
            seed=cfg.seed,
            region=n.region,
            horizon_days=n.horizon_days,
            scan_every_days=n.scan_every_days,
            record_every=n.record_every,
            first_line=n.first_line_regimens,
        )

    # ---- cohort ------------------------------------------------------------------------------
    def draw(self, patient_id: torch.Tensor) -> tuple[popmod.Population, Latent]:
        pop = popmod.draw_population(self.seed, patient_id, region=self.region)
        return pop, draw_latent(self.seed, pop, self.params)

    def cohort_frame(self, patient_id: torch.Tensor) -> pd.DataFrame:
        return tables.cohort_frame(*self.draw(patient_id))

    def from_cohort_frame(self, df: pd.DataFrame, device: torch.device | str = "cpu") -> tuple[popmod.Population, Latent]:
        """Population from the frame; latent parameters are redrawn from the patient ids (same seed)."""
        pop = popmod.from_frame(tables.observable(df), device)
        return pop, draw_latent(self.seed, pop, self.params)

    # ---- simulation ----------------------------------------------------------------------------
    @property
    def scan_days(self) -> tuple[int, ...]:
        return tuple(range(self.scan_every_days, self.horizon_days, self.scan_every_days))

    def schedule(self, record: bool = False) -> Schedule:
        return Schedule(days=self.horizon_days, scan_days=self.scan_days, record=record)

    def tables(self, device: torch.device | str) -> Tables:
        return build_tables(self.params, self.library, device)

    def run(self, pop: popmod.Population, lat: Latent, regimen: torch.Tensor, *, record: bool = False, replicate: int = 0, table: Tables | None = None):
        n = len(pop)
        dev = pop.patient_id.device
        assignment = Assignment(regimen.to(dev), torch.full((n,), -1, dtype=torch.int64, device=dev))
        return simulate(
            pop, lat, assignment, self.schedule(record), self.params, self.library, seed=self.seed, replicate=replicate, tables=table
        )

    def factual_choice(self, pop: popmod.Population, lat: Latent, gamma: float) -> torch.Tensor:
        """Index into ``first_line`` of each patient's first-line regimen under the historical policy."""
        measured = lat.baseline_sld_mm  # the baseline scan a clinician reads (before any treatment)
        return policies.historical_choice(pop, measured, self.library, self.first_line, gamma=gamma, seed=self.seed)

    def factual(self, pop: popmod.Population, lat: Latent, gamma: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(trajectory frame, per-patient factual outcome frame) under the historical policy."""
        choice = self.factual_choice(pop, lat, gamma)
        reg = self.library.indices(self.first_line).to(choice.device)[choice]
        names = np.asarray(self.first_line, dtype=object)[choice.cpu().numpy()]
        out = self.run(pop, lat, reg, record=True, replicate=FACTUAL_REPLICATE)
        traj = tables.trajectory_frame(
            pop.patient_id, out.record, self.library.names, record_every=self.record_every, scan_days=self.scan_days
        )
        outcome = tables.outcome_frame(pop.patient_id, names, out, replicate=FACTUAL_REPLICATE)
        return traj, outcome

    def counterfactual(self, pop: popmod.Population, lat: Latent, *, replicates: int = 1) -> pd.DataFrame:
        """Outcomes of every patient under every first-line regimen (rows: patient x regimen x replicate)."""
        frames = []
        dev = pop.patient_id.device
        table = self.tables(dev)
        for rep in range(replicates):
            for r in self.first_line:
                reg = torch.full((len(pop),), self.library.index(r), dtype=torch.int64, device=dev)
                out = self.run(pop, lat, reg, replicate=rep, table=table)
                frames.append(tables.outcome_frame(pop.patient_id, np.full(len(pop), r, dtype=object), out, replicate=rep))
        return pd.concat(frames, ignore_index=True)
