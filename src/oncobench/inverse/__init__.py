"""Inverse verification of a patient model: neural posterior estimation (sbi), calibration,
realism, causal checks and negative controls, with one verdict (``oncobench.inverse.stage``)."""

from __future__ import annotations

import torch

from oncobench.config import Config
from oncobench.inverse.problem import DEFECTS, PERTURBED, Draw, InverseProblem


def problem_for(cfg: Config, gamma: float, device: torch.device) -> InverseProblem:
    """The configured model as an inverse problem under the release's policy ``gamma``."""
    if cfg.model == "nsclc":
        from oncobench.inverse.nsclc import NsclcProblem

        return NsclcProblem(cfg, gamma, device)
    from oncobench.inverse.geng2017 import Geng2017Problem

    return Geng2017Problem(cfg, gamma, device)


__all__ = ["DEFECTS", "PERTURBED", "Draw", "InverseProblem", "problem_for"]
