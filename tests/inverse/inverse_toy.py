"""A toy InverseProblem whose answers are known: linear-Gaussian growth with a treatment.

theta = (level, slope) ~ N(0, I). Eight visits at t = k/8 measure level + slope t - EFFECT k_trt t
with Gaussian noise (SD ``NOISE``); 10% of visits are missed (value 0, mask 0). The treatment
(0/1) is assigned from the first measurement (confounded, like a clinic), and is recorded in a
channel. The slope's sign is the latent class. Planted defects follow ``problem.DEFECTS``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from oncobench.inverse.checks import Check
from oncobench.inverse.problem import Draw

T = 8
NOISE = 0.3
EFFECT = 1.0


class ToyProblem:
    model = "toy"
    parameters = ("level", "slope")
    identifiable = ("level", "slope")
    label_name = "slope_sign"
    label_classes = ("negative", "positive")
    label_identifiable = True
    treatment_classes = ("untreated", "treated")
    treatment_channels = (2,)

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken  # the shipped simulator itself carries the wrong-sign defect

    def _signal(self, theta: torch.Tensor, treated: torch.Tensor, defect: str | None) -> torch.Tensor:
        t = torch.arange(1, T + 1, dtype=torch.float32) / T
        level, slope = theta[:, :1], theta[:, 1:]
        if defect == "non_identifiable":
            level = torch.zeros_like(level)
        if defect == "perturbed":
            slope = 1.5 * slope
        sign = -1.0 if (defect == "wrong_sign" or self.broken) else 1.0
        return level + slope * t - sign * EFFECT * treated[:, None] * t

    def simulate(self, n: int, *, key: int, defect: str | None = None) -> Draw:
        g = torch.Generator().manual_seed(1000 + key)
        theta = torch.randn(n, 2, generator=g)
        noise = torch.randn(n, T, generator=g)
        seen = (torch.rand(n, T, generator=g) > 0.1).float()
        sd = {"no_noise": 0.0, "perturbed": 0.5 * NOISE}.get(defect or "", NOISE)
        # the clinic treats on what it sees at the first visit (before any treatment)
        first = self._signal(theta, torch.zeros(n), defect)[:, 0] + sd * noise[:, 0]
        treated = (torch.rand(n, generator=g) < torch.sigmoid(2 * first)).float()
        y = (self._signal(theta, treated, defect) + sd * noise) * seen
        x = torch.stack([y, seen, treated[:, None].expand(n, T)], dim=1)
        return Draw(theta=theta, x=x, label=(theta[:, 1] > 0).long(), treatment=treated.long(), summary=self._summary(y, seen))

    @staticmethod
    def _summary(y: torch.Tensor, seen: torch.Tensor) -> pd.DataFrame:
        v = y.numpy().astype(np.float64)
        m = seen.numpy() > 0
        mean = np.where(m, v, 0).sum(1) / np.maximum(m.sum(1), 1)
        d2 = np.abs(np.diff(v, 2, axis=1)) * (m[:, 2:] & m[:, 1:-1] & m[:, :-2])
        return pd.DataFrame({"mean": mean, "last": v[:, -1], "first": v[:, 0], "roughness": d2.sum(1) / np.maximum((m[:, 2:] & m[:, 1:-1] & m[:, :-2]).sum(1), 1)})

    def encode(self, cohort: pd.DataFrame, trajectories: pd.DataFrame) -> Draw:
        raise NotImplementedError("the toy problem has no release tables")

    def causal_checks(self, *, defect: str | None = None) -> list[Check]:
        theta = torch.randn(200, 2, generator=torch.Generator().manual_seed(7))
        untreated = self._signal(theta, torch.zeros(200), defect)
        treated = self._signal(theta, torch.ones(200), defect)
        return [Check("causal_dose", "treated <= untreated", "violations", float((treated > untreated + 1e-9).sum()), 0.0, "<=")]
