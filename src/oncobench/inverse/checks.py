"""One verification check, and the checks table every verify stage writes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Check:
    """One measured value, gated against a threshold when ``op`` is set, reported otherwise."""

    check: str
    subject: str
    metric: str
    value: float
    threshold: float = float("nan")
    op: str | None = None  # ">", ">=", "<" or "<=": gated; None: reported only

    @property
    def passed(self) -> bool | None:
        if self.op is None:
            return None
        if not (math.isfinite(self.value) and math.isfinite(self.threshold)):
            return False
        if self.op == ">":
            return self.value > self.threshold
        if self.op == "<":
            return self.value < self.threshold
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold

    def reason(self) -> str:
        return f"{self.check} {self.subject} {self.metric} = {self.value:.4g} (needs {self.op} {self.threshold:.4g})"


def checks_frame(checks: list[Check]) -> pd.DataFrame:
    """The checks as a table (schema VerificationCheck)."""
    return pd.DataFrame(
        {
            "check": [c.check for c in checks],
            "subject": [c.subject for c in checks],
            "metric": [c.metric for c in checks],
            "value": np.array([c.value for c in checks], dtype=np.float64),
            "threshold": np.array([c.threshold for c in checks], dtype=np.float64),
            "passed": pd.array([c.passed for c in checks], dtype="boolean"),
        }
    )


def failed(checks: list[Check]) -> list[Check]:
    """The gated checks that did not pass."""
    return [c for c in checks if c.op is not None and not c.passed]


__all__ = ["Check", "checks_frame", "failed"]
