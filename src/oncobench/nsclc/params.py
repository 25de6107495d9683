"""Parameters of the NSCLC patient model, read from ``data/nsclc_model.yaml`` (or a user's copy).

The file is the one place where the model's numbers live, each with its source or marked as an
assumption; :func:`load_parameters` checks its shape and returns :class:`ModelParameters`.
``oncobench calibrate --write`` rewrites the calibrated keys in place (see
:func:`with_calibrated` and :data:`CALIBRATED_KEYS`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from oncobench.config import ConfigError
from oncobench.nsclc.drugs import DRUG_CLASSES, DRUG_NAMES

SECTIONS = (
    "tumour",
    "measurement",
    "drug_classes",
    "immunotherapy",
    "radiotherapy",
    "pharmacokinetics",
    "toxicity",
    "survival",
    "pathway",
    "economics",
)
CLASS_KEYS = ("potency_per_day", "sensitivity_log_sd", "resistance_per_day", "nonheme_grade3_per_day")

# The keys `oncobench calibrate` fits: drug-class effects plus the four natural-history numbers
# every arm shares (growth of advanced disease, the survival link with its post-progression
# hazard ratio). Never per trial.
CALIBRATED_KEYS: tuple[str, ...] = (
    *(f"drug_classes.{c}.potency_per_day" for c in DRUG_CLASSES if c != "radiotherapy"),
    *(f"drug_classes.{c}.resistance_per_day" for c in DRUG_CLASSES if c != "radiotherapy"),
    *(f"drug_classes.{c}.nonheme_grade3_per_day" for c in DRUG_CLASSES if c != "radiotherapy"),
    "immunotherapy.responder_scale",
    "immunotherapy.responder_factor.with_chemotherapy",
    "immunotherapy.responder_factor.after_progression",
    "tumour.advanced_growth_multiplier",
    "survival.baseline_per_day",
    "survival.burden_per_log_volume",
    "survival.post_progression_hazard_ratio",
)

SHIPPED = "data/nsclc_model.yaml"


@dataclass(frozen=True)
class ModelParameters:
    """The parsed parameter file; ``raw`` keeps the nested dict (sections of :data:`SECTIONS`)."""

    raw: Mapping[str, Any]
    source: str

    def get(self, dotted: str) -> Any:
        node: Any = self.raw
        for part in dotted.split("."):
            node = node[part]
        return node

    def section(self, name: str) -> Mapping[str, Any]:
        return self.raw[name]

    def drug_class(self, name: str) -> Mapping[str, float]:
        return self.raw["drug_classes"][name]


def _need(node: Mapping[str, Any], key: str, where: str, source: str) -> Any:
    if not isinstance(node, Mapping) or key not in node:
        raise ConfigError(f"{source}: missing key '{where}{key}'")
    return node[key]


def _number(value: Any, where: str, source: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{source}: '{where}' must be a number >= {minimum}, got {value!r}")
    return float(value)


def check(raw: Mapping[str, Any], source: str) -> None:
    """Raise one :class:`ConfigError` naming the first missing or invalid key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections {', '.join(SECTIONS)}")
    for section in SECTIONS:
        _need(raw, section, "", source)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section '{unknown[0]}' (expected one of {', '.join(SECTIONS)})")
    classes = raw["drug_classes"]
    for c in DRUG_CLASSES:
        block = _need(classes, c, "drug_classes.", source)
        for k in CLASS_KEYS:
            _number(_need(block, k, f"drug_classes.{c}.", source), f"drug_classes.{c}.{k}", source)
    prices = _need(raw["economics"], "price_gbp_per_mg", "economics.", source)
    for d in DRUG_NAMES:
        _number(_need(prices, d, "economics.price_gbp_per_mg.", source), f"economics.price_gbp_per_mg.{d}", source)
    for dotted in (
        "tumour.advanced_growth_multiplier",
        "tumour.growth_rate_log_sd",
        "tumour.cytotoxic_kill_growth_exponent",
        "tumour.baseline_sld_log_sd",
        "tumour.new_lesion_rate_per_day",
        "tumour.undetectable_sld_mm",
        "measurement.cv",
        "measurement.sd_mm",
        "immunotherapy.responder_scale",
        "immunotherapy.responder_factor.with_chemotherapy",
        "immunotherapy.responder_factor.after_progression",
        "radiotherapy.alpha_per_gy_median",
        "radiotherapy.alpha_log_sd",
        "radiotherapy.radiosensitive_share",
        "radiotherapy.radiosensitive_alpha_per_gy_median",
        "radiotherapy.clonogens_per_cm3",
        "radiotherapy.alpha_beta_gy",
        "radiotherapy.doomed_clearance_per_day",
        "pharmacokinetics.clearance_log_sd",
        "toxicity.anc_baseline_median",
        "toxicity.anc_baseline_log_sd",
        "toxicity.myelo_potency_scale",
        "toxicity.febrile_neutropenia_death_probability",
        "toxicity.grade4_share_of_nonheme",
        "toxicity.nonheme_event_days",
        "toxicity.discontinue_probability",
        "toxicity.treatment_death_probability",
        "survival.baseline_per_day",
        "survival.burden_per_log_volume",
        "survival.ecog_log_hazard",
        "survival.age_log_hazard_per_decade",
        "survival.reference_sld_mm",
        "pathway.t790m_probability",
        "economics.discount_rate_per_year",
        "economics.cost_per_iv_visit_gbp",
        "economics.cost_per_rt_fraction_gbp",
    ):
        section, *rest = dotted.split(".")
        node: Any = raw[section]
        for i, part in enumerate(rest):
            node = _need(node, part, ".".join([section, *rest[:i]]) + ".", source)
        _number(node, dotted, source, minimum=-10.0 if dotted.startswith("survival.") else 0.0)
    for dotted in ("toxicity.febrile_neutropenia_per_day",):
        block = _need(raw["toxicity"], "febrile_neutropenia_per_day", "toxicity.", source)
        for g in ("grade3", "grade4"):
            _number(_need(block, g, f"{dotted}.", source), f"{dotted}.{g}", source)
    hr = _need(raw["survival"], "post_progression_hazard_ratio", "survival.", source)
    if _number(hr, "survival.post_progression_hazard_ratio", source) <= 0:
        raise ConfigError(f"{source}: 'survival.post_progression_hazard_ratio' must be > 0, got {hr}")
    probs = _need(raw["pathway"], "next_line_probability", "pathway.", source)
    if not isinstance(probs, list) or len(probs) != 3:
        raise ConfigError(f"{source}: 'pathway.next_line_probability' must list 3 probabilities (lines 2, 3, 4+)")
    for i, p in enumerate(probs):
        if _number(p, f"pathway.next_line_probability[{i}]", source) > 1:
            raise ConfigError(f"{source}: 'pathway.next_line_probability[{i}]' must be <= 1, got {p}")
    _need(raw["pathway"], "next_regimen", "pathway.", source)


def load_parameters(path: str | Path | None = None) -> ModelParameters:
    """Read and check a parameter file; ``None`` reads the shipped (calibrated) one."""
    if path is None:
        text = resources.files("oncobench").joinpath(SHIPPED).read_text()
        source = f"oncobench/{SHIPPED}"
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"nsclc.parameters: file not found: {p}")
        text, source = p.read_text(), str(p)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    check(raw, source)
    return ModelParameters(raw=raw, source=source)


def with_values(params: ModelParameters, values: Mapping[str, float]) -> ModelParameters:
    """A copy with dotted keys replaced (used by calibration)."""
    raw = copy.deepcopy(dict(params.raw))
    for dotted, value in values.items():
        node: Any = raw
        *head, last = dotted.split(".")
        for part in head:
            node = node[part]
        if last not in node:
            raise KeyError(f"unknown parameter key {dotted}")
        node[last] = float(value)
    return ModelParameters(raw=raw, source=params.source)
