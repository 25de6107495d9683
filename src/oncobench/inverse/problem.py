"""What a patient model must provide for inverse verification (the ``InverseProblem`` protocol).

The verify stage (``oncobench.inverse.stage``) is model-agnostic: it trains a neural posterior
on simulations, judges identifiability and calibration on held-out simulations, compares the
release with a reference data set, runs the model's causal checks, and proves its own power on
negative controls. A model takes part by implementing this protocol (``oncobench.inverse.geng2017``
and ``oncobench.inverse.nsclc``).

Encoding rules every implementation follows:

- ``x`` is what a clinic observes, as a float32 tensor (patients, channels, time): a measured
  value and a mask channel for each observed quantity. Missing visits, censoring and death are
  encoded as value 0 plus mask 0 (or as explicit indicator channels), never as NaN or inf, because
  sbi silently drops non-finite rows.
- ``theta`` holds the continuous per-patient latents on an unbounded scale (logs of positive
  quantities), one column per name in ``parameters``.
- The same patient encodes to the same ``x`` whether it comes from ``simulate`` (tensors) or from
  ``encode`` (the release's written tables): tests hold each implementation to that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pandas as pd
import torch

# Planted defects every model implements for the negative controls (``simulate(defect=...)``):
#   wrong_sign        the treatment effect on the tumour has the wrong sign (treatment grows it)
#   no_noise          measurement noise removed (scans report the true burden)
#   non_identifiable  the first name in ``identifiable`` no longer influences anything observed
#                     (the simulator uses its population median for every patient; theta keeps
#                     the drawn values)
# and one perturbation for the perturbed-simulator posterior control:
#   perturbed         a plausible but wrong simulator (growth and measurement noise shifted), whose
#                     posterior must fail calibration when judged on the shipped simulator
DEFECTS = ("wrong_sign", "no_noise", "non_identifiable")
PERTURBED = "perturbed"


@dataclass(frozen=True)
class Draw:
    """Patients in an inverse problem's encoding (CPU tensors).

    theta: (n, D) float32 continuous latents, columns as ``InverseProblem.parameters``; NaN only
        where the truth is unknown (a real-world reference set).
    x: (n, C, T) float32 observed channels, finite everywhere.
    label: (n,) int64 discrete latent class in ``range(len(label_classes))``, or None if the model
        has no discrete latent.
    treatment: (n,) int64 treatment class in ``range(len(treatment_classes))`` (the regimen or
        treatment sequence given), -1 where none.
    summary: one row per patient, numeric columns only, computed from observed quantities only:
        the features the realism test compares with a reference data set.
    """

    theta: torch.Tensor
    x: torch.Tensor
    label: torch.Tensor | None
    treatment: torch.Tensor
    summary: pd.DataFrame

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, rows: torch.Tensor) -> "Draw":
        """The patients at ``rows`` (an index tensor)."""
        idx = rows.cpu().numpy()
        return Draw(
            theta=self.theta[rows],
            x=self.x[rows],
            label=None if self.label is None else self.label[rows],
            treatment=self.treatment[rows],
            summary=self.summary.iloc[idx].reset_index(drop=True),
        )


class InverseProblem(Protocol):
    """One patient model as an inverse problem: simulate, encode, check causal relations."""

    model: str
    parameters: tuple[str, ...]
    # Parameters the observation design must identify (posterior contraction gated); the others
    # are reported, and a contraction under the threshold is a finding.
    identifiable: tuple[str, ...]
    label_name: str | None
    label_classes: tuple[str, ...]
    label_identifiable: bool
    treatment_classes: tuple[str, ...]
    # Channels of x that record the treatment given; they are hidden from the treatment-inference
    # classifier (which must recover the treatment from everything else).
    treatment_channels: tuple[int, ...]

    def simulate(self, n: int, *, key: int, defect: str | None = None) -> Draw:
        """``n`` fresh patients (ids disjoint from any release cohort and from other keys),
        simulated under the release's clinic and policy, with the named defect or perturbation
        (``DEFECTS``, ``PERTURBED``) planted when given. Deterministic in (n, key, defect)."""
        ...

    def encode(self, cohort: pd.DataFrame, trajectories: pd.DataFrame) -> Draw:
        """The release patients, encoded from their written tables (observed columns give x and
        the summary; latent columns, where present, give theta, label and treatment)."""
        ...

    def causal_checks(self, *, defect: str | None = None) -> list:
        """The model's causal and analytic checks (``oncobench.inverse.checks.Check``), run on
        the simulator with the named defect planted when given."""
        ...
