"""Example user models for the evaluate stage's plug-in tests (contract: ``oncobench.predictors``).

Each factory has the plug-in signature ``factory(options, context)``. ``good_model`` and
``big_tumours_get_radio`` are honest models; the others break the contract in one way each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oncobench.predictors import ModelContext

DEATH_VOLUME_CM3 = 4.0 / 3.0 * np.pi * 6.5**3


class LogLinear:
    """Volume changes by a constant log-factor per day, less a fixed kill per chemo dose or radio
    fraction given that day (doses act on the next day's volume)."""

    def __init__(self, growth_per_day: float, chemo_kill: float, radio_kill: float) -> None:
        self.growth_per_day = growth_per_day
        self.chemo_kill = chemo_kill
        self.radio_kill = radio_kill

    def predict_volume(self, start: pd.DataFrame, chemo_plan: np.ndarray, radio_plan: np.ndarray) -> np.ndarray:
        step = self.growth_per_day - self.chemo_kill * chemo_plan - self.radio_kill * radio_plan
        v = start["volume_cm3"].to_numpy()[:, None] * np.exp(np.cumsum(step, axis=1))
        return np.clip(v, 0.0, DEATH_VOLUME_CM3)


def good_model(options: dict, context: ModelContext) -> LogLinear:
    """A working predictor; options: growth_per_day, chemo_kill, radio_kill."""
    assert len(context.train) > 0 and set(context.regimens)
    return LogLinear(
        growth_per_day=float(options.get("growth_per_day", 0.001)),
        chemo_kill=float(options.get("chemo_kill", 0.1)),
        radio_kill=float(options.get("radio_kill", 0.1)),
    )


class BigTumoursGetRadio:
    """Recommend-only: radio above a volume threshold, nothing below."""

    def __init__(self, threshold_cm3: float) -> None:
        self.threshold_cm3 = threshold_cm3

    def recommend(self, patients: pd.DataFrame, regimens: list[str]) -> list[str]:
        big = patients["initial_volume_cm3"].to_numpy() > self.threshold_cm3
        return ["radio" if b else "no_treatment" for b in big]


def big_tumours_get_radio(options: dict, context: ModelContext) -> BigTumoursGetRadio:
    return BigTumoursGetRadio(float(options.get("threshold_cm3", 10.0)))


class _Raises:
    def predict_volume(self, start, chemo_plan, radio_plan):
        raise ValueError("weights were never fitted")


def raising_model(options: dict, context: ModelContext) -> _Raises:
    return _Raises()


class _WrongShape:
    def predict_volume(self, start, chemo_plan, radio_plan):
        return start["volume_cm3"].to_numpy()  # (n,), not (n, tau)


def wrong_shape_model(options: dict, context: ModelContext) -> _WrongShape:
    return _WrongShape()


class _NotFinite:
    def predict_volume(self, start, chemo_plan, radio_plan):
        out = np.ones(chemo_plan.shape)
        out[0, 0] = np.nan
        return out


def nan_model(options: dict, context: ModelContext) -> _NotFinite:
    return _NotFinite()


class _UnknownRegimen:
    def recommend(self, patients, regimens):
        return ["surgery"] * len(patients)


def unknown_regimen_model(options: dict, context: ModelContext) -> _UnknownRegimen:
    return _UnknownRegimen()


def raising_factory(options: dict, context: ModelContext):
    raise RuntimeError("could not fit on the training data")


def no_methods_model(options: dict, context: ModelContext) -> object:
    return object()


# --------------------------------------------------------------------------- NSCLC recommenders
# Plug-ins of the NSCLC evaluate stage (contract: ``oncobench.nsclc.evaluation``); the factory
# gets an ``NsclcContext``.


class NsclcTargetedFirst:
    """Recommend-only: osimertinib for EGFR-mutant, alectinib for ALK-positive tumours, else
    the regimen with the best mean factual utility among the training patients."""

    def __init__(self, fallback: str) -> None:
        self.fallback = fallback

    def recommend(self, patients: pd.DataFrame, regimens: list[str]) -> list[str]:
        out = []
        for egfr, alk in zip(patients["egfr"], patients["alk"]):
            if egfr != "wild_type" and "osimertinib" in regimens:
                out.append("osimertinib")
            elif alk and "alectinib" in regimens:
                out.append("alectinib")
            else:
                out.append(self.fallback)
        return out


def nsclc_targeted_first(options: dict, context) -> NsclcTargetedFirst:
    assert not any(c.startswith("latent_") for c in context.train.columns), "plug-ins never see latent columns"
    means = context.train.groupby("regimen")[context.utility].mean()
    return NsclcTargetedFirst(str(means.idxmax()))


class _NsclcRecommendRaises:
    def recommend(self, patients, regimens):
        raise KeyError("column 'pdl1'\nnot found")


def nsclc_raising_recommend(options: dict, context) -> _NsclcRecommendRaises:
    return _NsclcRecommendRaises()
