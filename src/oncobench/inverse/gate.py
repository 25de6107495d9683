"""The release gate: summary and tracking refuse a release whose verify verdict is not 'pass',
unless the config overrides it explicitly (``verify.override``), and then the override is
recorded (summary page and MLflow tags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oncobench import io, schemas
from oncobench.config import Config, format_gamma


class ReleaseRefused(RuntimeError):
    """A verify verdict is 'fail' or 'inconclusive' and ``verify.override.accept`` is false."""


@dataclass(frozen=True)
class GateDecision:
    verdicts: dict[str, str]  # formatted gamma -> verdict
    reasons: dict[str, str]
    overridden: bool  # a non-pass verdict let through by verify.override
    override_reason: str

    def tags(self) -> dict[str, str]:
        """MLflow tags recording the verdicts and any override."""
        out = {f"oncobench.verdict.gamma{g}": v for g, v in self.verdicts.items()}
        out["oncobench.verify.gate"] = "overridden" if self.overridden else "passed"
        if self.overridden:
            out["oncobench.verify.override_reason"] = self.override_reason
        return out

    def lines(self) -> list[str]:
        """Markdown lines for the summary page (empty when every verdict passed)."""
        if not self.overridden:
            return []
        bad = ", ".join(f"γ = {g}: {v}" for g, v in self.verdicts.items() if v != "pass")
        return [f"> **Released under a verification override** ({bad}). Reason given: {self.override_reason}\n"]


def check_release(cfg: Config, results_dir: str | Path) -> GateDecision:
    """Read every branch's verdict; raise ReleaseRefused unless all pass or the override is set."""
    results_dir = Path(results_dir)
    verdicts, reasons = {}, {}
    for g in cfg.gammas:
        v = io.read_table(results_dir / "verification" / f"gamma-{format_gamma(g)}" / "verdict.parquet", schemas.Verdict).iloc[0]
        verdicts[format_gamma(g)] = str(v.verdict)
        reasons[format_gamma(g)] = str(v.reasons)
    bad = {g: v for g, v in verdicts.items() if v != "pass"}
    override = cfg.verify.override
    if bad and not override.accept:
        detail = "; ".join(f"gamma {g} is '{v}' ({reasons[g]})" for g, v in bad.items())
        raise ReleaseRefused(
            f"release refused by the verify gate: {detail}. Fix the simulator, or set verify.override.accept: true "
            f"with verify.override.reason to release anyway (the override is recorded in MLflow)"
        )
    return GateDecision(verdicts, reasons, bool(bad), override.reason if bad else "")


__all__ = ["GateDecision", "ReleaseRefused", "check_release"]
