"""The virtual-trial specification: YAML file -> frozen :class:`TrialSpec`.

A spec names the population drawn, the eligibility rule (a boolean expression over the cohort
columns of ``docs/nsclc-contracts.md``), the line of therapy at which patients enrol, the arms
(regimen names of the contract, or an investigator's-choice mixture), accrual and data cut-off,
post-progression crossover, the tumour-scan schedule, the endpoints and the published results a
calibration compares against. Every user error is one :class:`~oncobench.config.ConfigError`
line naming the file, the key and what was expected.

Example (abridged)::

    name: keynote024
    title: KEYNOTE-024
    reference: Reck et al., N Engl J Med 2016;375:1823-33
    population: {region: western, stage: [IV]}
    eligibility: "stage == 'IV' and pdl1_tps >= 0.5 and egfr == 'wild_type' and not alk and ecog <= 1"
    line: first
    arms:
      - {name: pembrolizumab, regimen: pembrolizumab, ratio: 1}
      - {name: chemotherapy, regimen: {carboplatin_pemetrexed: 67, carboplatin_paclitaxel: 30}, ratio: 1, control: true}
    sample_size: 305
    accrual_months: 13.3
    data_cutoff_months: {pfs: 19.6, os: 33.7, orr: 19.6, grade3_ae: 19.6}
    crossover: [{from_arm: chemotherapy, to_regimen: pembrolizumab, probability: 0.63}]
    scans: [{every_weeks: 9}]
    endpoints: [pfs, os, orr, grade3_ae]
    published:
      pfs_hr: {estimate: 0.50, lower: 0.37, upper: 0.68}
      pfs_median_months: {experimental: 10.3, control: 6.0}
    calibration: true
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import yaml

from oncobench.config import ConfigError

DAYS_PER_MONTH = 365.25 / 12
"""Days in an average month (30.4375); months in every spec and result use it."""

REGIMENS: tuple[str, ...] = (
    "best_supportive_care", "cisplatin_pemetrexed", "carboplatin_pemetrexed", "carboplatin_paclitaxel",
    "cisplatin_gemcitabine", "carboplatin_gemcitabine", "docetaxel", "pembrolizumab", "nivolumab",
    "atezolizumab", "pembrolizumab_carboplatin_pemetrexed", "pembrolizumab_cisplatin_pemetrexed",
    "pembrolizumab_carboplatin_paclitaxel", "gefitinib", "erlotinib", "osimertinib", "crizotinib",
    "alectinib", "chemoradiation", "durvalumab_consolidation",
)
"""Regimen names of the shipped library (docs/nsclc-contracts.md, "Regimen names")."""

COHORT_COLUMNS: dict[str, str] = {
    "patient_id": "int", "age_years": "float", "sex": "str", "ecog": "int", "stage": "str",
    "histology": "str", "smoking": "str", "height_cm": "float", "weight_kg": "float", "bsa_m2": "float",
    "creatinine_clearance_ml_min": "float", "egfr": "str", "alk": "bool", "kras_g12c": "bool",
    "pdl1_tps": "float", "pdl1_group": "str", "region": "str",
}
"""Cohort columns an eligibility rule may use, with their kind (docs/nsclc-contracts.md, "Cohort columns")."""

COHORT_LEVELS: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male"),
    "stage": ("IIIA", "IIIB", "IIIC", "IV"),
    "histology": ("adenocarcinoma", "squamous"),
    "smoking": ("never", "former", "current"),
    "egfr": ("wild_type", "ex19del", "l858r"),
    "pdl1_group": ("<1%", "1-49%", ">=50%"),
    "region": ("western", "east_asian"),
}
"""The values each text column takes (contract); a rule comparing with any other string is a typo."""

STAGES = COHORT_LEVELS["stage"]
REGIONS = COHORT_LEVELS["region"]
ENDPOINTS: tuple[str, ...] = ("pfs", "os", "orr", "grade3_ae")
LINE_SETTINGS: tuple[str, ...] = ("progression", "completion_without_progression")
AE_KINDS: tuple[str, ...] = ("all_cause", "treatment_related")
NOT_REACHED = "not_reached"

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TOP_KEYS = (
    "name", "title", "reference", "population", "eligibility", "line", "arms", "experimental_arm",
    "sample_size", "accrual_months", "data_cutoff_months", "dropout_per_year", "crossover", "scans",
    "endpoints", "replicates", "published", "calibration",
)
_REQUIRED = (
    "name", "title", "reference", "population", "eligibility", "line", "arms", "sample_size",
    "accrual_months", "data_cutoff_months", "scans", "endpoints",
)


# --------------------------------------------------------------------------------------------
# The dataclasses


@dataclass(frozen=True)
class Population:
    """Who is drawn before eligibility: region weights (normalised) and the stages drawn."""

    region_mix: tuple[tuple[str, float], ...]
    stage: tuple[str, ...]

    @property
    def region_weights(self) -> dict[str, float]:
        """Probability of each region (sums to 1)."""
        return dict(self.region_mix)

    @property
    def region(self) -> str | None:
        """The single region drawn, or None for a mixture."""
        return self.region_mix[0][0] if len(self.region_mix) == 1 else None


@dataclass(frozen=True)
class Line:
    """Enrolment setting: first line (``after_regimen is None``), or ``at`` an event on a prior regimen.

    ``at`` is ``'progression'`` (enrol at progression on ``after_regimen``) or
    ``'completion_without_progression'`` (e.g. after chemoradiation, PACIFIC-like).
    """

    after_regimen: str | None = None
    at: str | None = None

    @property
    def is_first(self) -> bool:
        return self.after_regimen is None


@dataclass(frozen=True)
class Arm:
    """One arm: its regimen choice (probabilities summing to 1) and randomisation ratio."""

    name: str
    regimens: tuple[tuple[str, float], ...]
    ratio: int = 1
    control: bool = False

    @property
    def regimen_weights(self) -> dict[str, float]:
        """Probability that a patient of this arm gets each regimen (investigator's choice)."""
        return dict(self.regimens)


@dataclass(frozen=True)
class Crossover:
    """At progression, a patient of ``from_arm`` switches to ``to_regimen`` with ``probability``."""

    from_arm: str
    to_regimen: str
    probability: float


@dataclass(frozen=True)
class ScanPhase:
    """Scans every ``every_weeks`` from ``first_week`` (default: one interval after the previous
    phase's last scan, or after randomisation) up to ``until_week`` inclusive (None: no end)."""

    every_weeks: float
    until_week: float | None = None
    first_week: float | None = None


@dataclass(frozen=True)
class HazardRatio:
    """A published hazard ratio (experimental vs control) with its 95% CI."""

    estimate: float
    lower: float
    upper: float
    source: str | None = None


@dataclass(frozen=True)
class ArmValues:
    """A published per-arm value; a median may be ``None`` meaning not reached."""

    experimental: float | None
    control: float | None
    source: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Published:
    """The published results a virtual trial is compared with (all optional)."""

    pfs_hr: HazardRatio | None = None
    os_hr: HazardRatio | None = None
    pfs_median_months: ArmValues | None = None
    os_median_months: ArmValues | None = None
    orr: ArmValues | None = None
    grade3_ae: ArmValues | None = None
    n: ArmValues | None = None
    source: str | None = None


@dataclass(frozen=True)
class TrialSpec:
    """A validated virtual-trial specification (see the module docstring for the YAML form).

    Times: ``accrual_months`` and the data cut-offs are months (30.4375 days) from the first
    enrolment; scans are weeks from randomisation; ``dropout_per_year`` is a loss-to-follow-up
    hazard per year.
    """

    name: str
    title: str
    reference: str
    population: Population
    eligibility: str
    line: Line
    arms: tuple[Arm, ...]
    sample_size: int
    accrual_months: float
    data_cutoff_months: tuple[tuple[str, float], ...]
    scans: tuple[ScanPhase, ...]
    endpoints: tuple[str, ...]
    dropout_per_year: float = 0.0
    crossover: tuple[Crossover, ...] = ()
    replicates: int = 200
    published: Published | None = None
    calibration: bool = False
    experimental_arm_name: str | None = None
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            self._fail("arms", f"duplicate arm name(s) {dupes}", "unique names")
        controls = [a.name for a in self.arms if a.control]
        if len(controls) != 1:
            self._fail("arms", f"{len(controls)} arms flagged control ({controls})", "exactly one arm with 'control: true'")
        if len(self.arms) < 2:
            self._fail("arms", f"{len(self.arms)} arm(s)", "at least two arms")
        others = [n for n in names if n not in controls]
        if self.experimental_arm_name is not None and self.experimental_arm_name not in others:
            self._fail("experimental_arm", f"{self.experimental_arm_name!r} is not a non-control arm", f"one of {others}")
        if self.experimental_arm_name is None and len(others) > 1:
            self._fail("experimental_arm", f"missing with {len(others)} experimental arms", f"one of {others}")
        if self.sample_size < len(self.arms):
            self._fail("sample_size", f"{self.sample_size} for {len(self.arms)} arms", "at least one patient per arm")
        probs: dict[str, float] = {}
        for i, c in enumerate(self.crossover):
            if c.from_arm not in names:
                self._fail(f"crossover[{i}].from_arm", f"{c.from_arm!r} is not an arm", f"one of {names}")
            probs[c.from_arm] = probs.get(c.from_arm, 0.0) + c.probability
        for arm, p in probs.items():
            if p > 1.0 + 1e-12:
                self._fail("crossover", f"probabilities from arm {arm!r} sum to {p:g}", "a total <= 1")
        cut = dict(self.data_cutoff_months)
        missing = [e for e in self.endpoints if e not in cut]
        if missing:
            self._fail("data_cutoff_months", f"no cut-off for endpoint(s) {missing}", "a cut-off for every endpoint")
        if self.published is not None:
            for key, endpoint in (("pfs_hr", "pfs"), ("os_hr", "os"), ("pfs_median_months", "pfs"),
                                  ("os_median_months", "os"), ("orr", "orr"), ("grade3_ae", "grade3_ae")):
                if getattr(self.published, key) is not None and endpoint not in self.endpoints:
                    self._fail(f"published.{key}", f"endpoint {endpoint!r} is not in endpoints {list(self.endpoints)}",
                               "published values only for simulated endpoints")
        _check_expression(self.eligibility, self.source, "eligibility")

    def _fail(self, key: str, problem: str, expected: str) -> None:
        raise ConfigError(f"trial spec '{self.source}' key '{key}': {problem}; expected {expected}")

    @property
    def control_arm(self) -> Arm:
        return next(a for a in self.arms if a.control)

    @property
    def experimental_arm(self) -> Arm:
        """The arm compared with the control (the only other arm, or ``experimental_arm``)."""
        name = self.experimental_arm_name
        return next(a for a in self.arms if (a.name == name if name else not a.control))

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"trial '{self.name}' has no arm {name!r}; arms: {[a.name for a in self.arms]}")

    def arm_sizes(self) -> dict[str, int]:
        """Patients per arm: ``sample_size`` split by ``ratio`` (largest remainder, ties to the earlier arm)."""
        total = sum(a.ratio for a in self.arms)
        exact = [self.sample_size * a.ratio / total for a in self.arms]
        sizes = [math.floor(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - sizes[i]), i))
        for i in order[: self.sample_size - sum(sizes)]:
            sizes[i] += 1
        return {a.name: s for a, s in zip(self.arms, sizes)}

    def cutoff_months(self, endpoint: str) -> float:
        """Data cut-off of ``endpoint`` in months from the first enrolment."""
        return dict(self.data_cutoff_months)[endpoint]

    def cutoff_day(self, endpoint: str) -> float:
        """Data cut-off of ``endpoint`` in days from the first enrolment."""
        return self.cutoff_months(endpoint) * DAYS_PER_MONTH

    @property
    def accrual_days(self) -> float:
        return self.accrual_months * DAYS_PER_MONTH

    @property
    def horizon_days(self) -> float:
        """Days from the first enrolment to the latest data cut-off (how long to simulate)."""
        return max(m for _, m in self.data_cutoff_months) * DAYS_PER_MONTH

    def crossover_from(self, arm: str) -> dict[str, float]:
        """Regimen -> probability of switching to it at progression, for patients of ``arm``."""
        out: dict[str, float] = {}
        for c in self.crossover:
            if c.from_arm == arm:
                out[c.to_regimen] = out.get(c.to_regimen, 0.0) + c.probability
        return out


# --------------------------------------------------------------------------------------------
# Eligibility expressions

_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Invert,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.BitAnd, ast.BitOr,
    ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple,
)


def expression_names(expression: str, source: str = "<memory>", key: str = "eligibility") -> set[str]:
    """Column names used by an eligibility expression, after checking it is a safe boolean rule.

    Allowed: column names, numbers, strings, True/False, lists/tuples of literals, comparisons
    (``== != < <= > >= in not in``), ``and or not``, ``& | ~`` and arithmetic ``+ - * /``.
    Anything else (calls, attributes, subscripts, ``@`` variables) raises :class:`ConfigError`.
    """
    where = f"trial spec '{source}' key '{key}'"
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError(f"{where}: {expression!r}; expected a non-empty boolean expression over cohort columns")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: {expression!r} is not a valid expression ({exc.msg})") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ConfigError(
                f"{where}: '{type(node).__name__}' is not allowed in {expression!r}; "
                "expected column names, literals, comparisons, and/or/not, & | ~ and + - * /"
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, (str, int, float, bool)):
            raise ConfigError(f"{where}: literal {node.value!r} in {expression!r}; expected a number, string or True/False")
        if isinstance(node, ast.Name):
            names.add(node.id)
        if isinstance(node, ast.Compare):
            _check_levels(node, expression, where)
    return names


def _literal_strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _check_levels(node: ast.Compare, expression: str, where: str) -> None:
    operands = [node.left, *node.comparators]
    for a, b in zip(operands, operands[1:]):
        for col_node, lit_node in ((a, b), (b, a)):
            if isinstance(col_node, ast.Name) and col_node.id in COHORT_LEVELS:
                levels = COHORT_LEVELS[col_node.id]
                for value in _literal_strings(lit_node):
                    if value not in levels:
                        raise ConfigError(
                            f"{where}: {value!r} is not a value of column '{col_node.id}' in {expression!r}; "
                            f"expected one of {list(levels)}"
                        )


def _template_cohort() -> pd.DataFrame:
    """Two contract-typed rows, used to check at load time that a rule evaluates to booleans."""
    cols: dict[str, Any] = {}
    for name, kind in COHORT_COLUMNS.items():
        if name in COHORT_LEVELS:
            lv = COHORT_LEVELS[name]
            cols[name] = [lv[0], lv[-1]]
        elif kind == "int":
            cols[name] = np.array([0, 1], dtype=np.int64)
        elif kind == "bool":
            cols[name] = np.array([False, True])
        else:
            cols[name] = np.array([0.1, 0.9])
    return pd.DataFrame(cols)


def _check_expression(expression: str, source: str, key: str) -> None:
    names = expression_names(expression, source, key)
    unknown = sorted(n for n in names if n not in COHORT_COLUMNS and n not in ("True", "False"))
    if unknown:
        raise ConfigError(
            f"trial spec '{source}' key '{key}': unknown name(s) {unknown} in {expression!r}; "
            f"expected cohort columns {list(COHORT_COLUMNS)}"
        )
    _evaluate(expression, _template_cohort(), source, key)


def _evaluate(expression: str, cohort: pd.DataFrame, source: str, key: str) -> np.ndarray:
    where = f"trial spec '{source}' key '{key}'"
    try:
        result = cohort.eval(expression.strip(), engine="python")
    except Exception as exc:  # pandas raises many types for a rule that does not fit the columns
        raise ConfigError(f"{where}: {expression!r} cannot be evaluated on the cohort ({type(exc).__name__}: {exc})") from None
    if np.ndim(result) == 0:
        result = np.full(len(cohort), result)
    out = np.asarray(result)
    if out.dtype != np.bool_:
        raise ConfigError(f"{where}: {expression!r} gives {out.dtype} values; expected a boolean (true/false) rule")
    return out


def eligible(spec: TrialSpec, cohort_df: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the cohort rows meeting ``spec.eligibility``.

    Args:
        spec: the trial.
        cohort_df: one row per patient with (at least) the columns the rule names.

    Returns:
        ``np.ndarray`` of bool, one per row of ``cohort_df``.
    """
    names = expression_names(spec.eligibility, spec.source)
    missing = sorted(n for n in names if n not in cohort_df.columns and n not in ("True", "False"))
    if missing:
        raise ConfigError(
            f"trial spec '{spec.source}' key 'eligibility': name(s) {missing} are not columns of the cohort; "
            f"expected columns among {list(cohort_df.columns)}"
        )
    return _evaluate(spec.eligibility, cohort_df, spec.source, "eligibility")


# --------------------------------------------------------------------------------------------
# Scan schedule


def scan_days(spec: TrialSpec, horizon_days: float) -> np.ndarray:
    """Days from randomisation of the scheduled tumour assessments, up to ``horizon_days`` inclusive.

    Each phase scans every ``every_weeks`` from its ``first_week`` (default: one interval after the
    previous phase's last scan) through ``until_week``; e.g. ``[{every_weeks: 6, until_week: 18},
    {every_weeks: 9}]`` gives weeks 6, 12, 18, 27, 36, ...
    """
    weeks: list[float] = []
    horizon_weeks = horizon_days / 7.0
    anchor = 0.0  # week of the last scan so far (randomisation before the first)
    for phase in spec.scans:
        start = phase.first_week if phase.first_week is not None else anchor + phase.every_weeks
        end = min(phase.until_week if phase.until_week is not None else math.inf, horizon_weeks)
        if start <= end + 1e-9:
            count = int(math.floor((end - start) / phase.every_weeks + 1e-9)) + 1
            w = start + phase.every_weeks * np.arange(count)
            weeks.extend(w.tolist())
            anchor = float(w[-1])
        if phase.until_week is None or horizon_weeks <= phase.until_week:
            break
    return np.asarray(weeks, dtype=float) * 7.0


# --------------------------------------------------------------------------------------------
# Loading


class _Reader:
    """Typed access to a raw mapping; every failure is one ConfigError naming file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str, expected: str) -> None:
        raise ConfigError(f"trial spec '{self.source}' key '{key}': {problem}; expected {expected}")

    def mapping(self, value: Any, key: str, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(key, f"{value!r}", "a mapping")
        allowed = tuple(allowed)
        for k in value:
            if k not in allowed:
                self.fail(_join(key, str(k)), "unknown key", f"one of {list(allowed)}")
        for k in required:
            if k not in value or value[k] is None:
                self.fail(_join(key, k), "missing", "a value")
        return dict(value)

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"{value!r}", "a non-empty string")
        return value

    def slug(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not _SLUG.match(value):
            self.fail(key, f"{value!r}", "a slug (lower-case letters, digits, '_' or '-')")
        return value

    def choice(self, value: Any, key: str, options: Iterable[str]) -> str:
        options = tuple(options)
        if value not in options:
            self.fail(key, f"{value!r}", f"one of {list(options)}")
        return value

    def number(self, value: Any, key: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"{value!r}", "a number")
        v = float(value)
        if low is not None and (v < low or (low_open and v == low)):
            self.fail(key, f"{v:g}", f"a number {'>' if low_open else '>='} {low:g}")
        if high is not None and v > high:
            self.fail(key, f"{v:g}", f"a number <= {high:g}")
        return v

    def integer(self, value: Any, key: str, *, low: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"{value!r}", "an integer")
        if value < low:
            self.fail(key, f"{value}", f"an integer >= {low}")
        return int(value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"{value!r}", "true or false")
        return value

    def listing(self, value: Any, key: str, *, nonempty: bool = True) -> list[Any]:
        if not isinstance(value, list) or (nonempty and not value):
            self.fail(key, f"{value!r}", "a non-empty list" if nonempty else "a list")
        return value


def _join(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _population(r: _Reader, raw: Any) -> Population:
    d = r.mapping(raw, "population", ("region", "region_mix", "stage"), ("stage",))
    if "region" in d and "region_mix" in d:
        r.fail("population.region_mix", "given together with population.region", "only one of region and region_mix")
    if "region_mix" in d:
        mix = r.mapping(d["region_mix"], "population.region_mix", REGIONS)
        if not mix:
            r.fail("population.region_mix", "empty", f"weights for regions among {list(REGIONS)}")
        weights = {k: r.number(v, f"population.region_mix.{k}", low=0.0, low_open=True) for k, v in mix.items()}
    else:
        weights = {r.choice(d.get("region", "western"), "population.region", REGIONS): 1.0}
    total = sum(weights.values())
    stages = r.listing(d["stage"], "population.stage")
    for i, s in enumerate(stages):
        r.choice(s, f"population.stage[{i}]", STAGES)
    if len(set(stages)) != len(stages):
        r.fail("population.stage", f"{stages} repeats a stage", "distinct stages")
    return Population(tuple((k, w / total) for k, w in weights.items()), tuple(stages))


def _line(r: _Reader, raw: Any) -> Line:
    if raw == "first":
        return Line()
    if isinstance(raw, str):
        r.fail("line", f"{raw!r}", "'first' or a mapping {after_regimen: <regimen>, at: progression|completion_without_progression}")
    d = r.mapping(raw, "line", ("after_regimen", "at"), ("after_regimen", "at"))
    return Line(r.choice(d["after_regimen"], "line.after_regimen", REGIMENS), r.choice(d["at"], "line.at", LINE_SETTINGS))


def _arm(r: _Reader, raw: Any, key: str) -> Arm:
    d = r.mapping(raw, key, ("name", "regimen", "ratio", "control"), ("name", "regimen"))
    name = r.slug(d["name"], f"{key}.name")
    reg = d["regimen"]
    if isinstance(reg, str):
        weights = {r.choice(reg, f"{key}.regimen", REGIMENS): 1.0}
    elif isinstance(reg, Mapping) and reg:
        weights = {}
        for k, v in reg.items():
            r.choice(k, f"{key}.regimen", REGIMENS)
            weights[k] = r.number(v, f"{key}.regimen.{k}", low=0.0, low_open=True)
    else:
        r.fail(f"{key}.regimen", f"{reg!r}", "a regimen name or a mapping {regimen: weight} (investigator's choice)")
    total = sum(weights.values())
    ratio = r.integer(d.get("ratio", 1), f"{key}.ratio")
    control = r.boolean(d.get("control", False), f"{key}.control")
    return Arm(name, tuple((k, w / total) for k, w in weights.items()), ratio, control)


def _crossover(r: _Reader, raw: Any, key: str) -> Crossover:
    d = r.mapping(raw, key, ("from_arm", "to_regimen", "probability"), ("from_arm", "to_regimen", "probability"))
    return Crossover(
        r.slug(d["from_arm"], f"{key}.from_arm"),
        r.choice(d["to_regimen"], f"{key}.to_regimen", REGIMENS),
        r.number(d["probability"], f"{key}.probability", low=0.0, high=1.0),
    )


def _scans(r: _Reader, raw: Any) -> tuple[ScanPhase, ...]:
    phases: list[ScanPhase] = []
    items = r.listing(raw, "scans")
    prev_until = 0.0
    for i, item in enumerate(items):
        key = f"scans[{i}]"
        d = r.mapping(item, key, ("every_weeks", "until_week", "first_week"), ("every_weeks",))
        every = r.number(d["every_weeks"], f"{key}.every_weeks", low=0.0, low_open=True)
        until = None if d.get("until_week") is None else r.number(d["until_week"], f"{key}.until_week", low=prev_until, low_open=True)
        first = None if d.get("first_week") is None else r.number(d["first_week"], f"{key}.first_week", low=prev_until, low_open=True)
        if first is not None and until is not None and first > until:
            r.fail(f"{key}.first_week", f"{first:g} is after until_week {until:g}", "first_week <= until_week")
        if until is None and i < len(items) - 1:
            r.fail(f"{key}.until_week", "missing on a phase followed by another", "an end week on every phase but the last")
        phases.append(ScanPhase(every, until, first))
        prev_until = until if until is not None else prev_until
    return tuple(phases)


def _cutoffs(r: _Reader, raw: Any, endpoints: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    if isinstance(raw, Mapping):
        d = r.mapping(raw, "data_cutoff_months", ENDPOINTS)
        return tuple((k, r.number(v, f"data_cutoff_months.{k}", low=0.0, low_open=True)) for k, v in d.items())
    months = r.number(raw, "data_cutoff_months", low=0.0, low_open=True)
    return tuple((e, months) for e in endpoints)


def _hazard_ratio(r: _Reader, raw: Any, key: str) -> HazardRatio:
    d = r.mapping(raw, key, ("estimate", "lower", "upper", "source"), ("estimate", "lower", "upper"))
    est = r.number(d["estimate"], f"{key}.estimate", low=0.0, low_open=True)
    lo = r.number(d["lower"], f"{key}.lower", low=0.0, low_open=True)
    hi = r.number(d["upper"], f"{key}.upper", low=0.0, low_open=True)
    if not lo <= est <= hi:
        r.fail(key, f"estimate {est:g} outside ({lo:g}, {hi:g})", "lower <= estimate <= upper")
    src = None if d.get("source") is None else r.string(d["source"], f"{key}.source")
    return HazardRatio(est, lo, hi, src)


def _arm_values(r: _Reader, raw: Any, key: str, kind: str) -> ArmValues:
    allowed = ("experimental", "control", "source") + (("kind",) if kind == "rate_ae" else ())
    d = r.mapping(raw, key, allowed, ("experimental", "control"))
    vals: list[float | None] = []
    for side in ("experimental", "control"):
        v = d[side]
        if kind == "median":
            vals.append(None if v == NOT_REACHED else r.number(v, f"{key}.{side}", low=0.0, low_open=True))
        elif kind == "count":
            vals.append(float(r.integer(v, f"{key}.{side}")))
        else:
            vals.append(r.number(v, f"{key}.{side}", low=0.0, high=1.0))
    src = None if d.get("source") is None else r.string(d["source"], f"{key}.source")
    ae_kind = None if d.get("kind") is None else r.choice(d["kind"], f"{key}.kind", AE_KINDS)
    return ArmValues(vals[0], vals[1], src, ae_kind)


def _published(r: _Reader, raw: Any) -> Published:
    keys = ("pfs_hr", "os_hr", "pfs_median_months", "os_median_months", "orr", "grade3_ae", "n", "source")
    d = r.mapping(raw, "published", keys)
    kinds = {"pfs_median_months": "median", "os_median_months": "median", "orr": "rate", "grade3_ae": "rate_ae", "n": "count"}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None:
            continue
        if k in ("pfs_hr", "os_hr"):
            out[k] = _hazard_ratio(r, v, f"published.{k}")
        elif k == "source":
            out[k] = r.string(v, "published.source")
        else:
            out[k] = _arm_values(r, v, f"published.{k}", kinds[k])
    return Published(**out)


def spec_from_mapping(raw: Any, source: str = "<memory>") -> TrialSpec:
    """Validate a raw mapping (as read from YAML) and build the :class:`TrialSpec`."""
    r = _Reader(source)
    d = r.mapping(raw, "", _TOP_KEYS, _REQUIRED)
    endpoints = tuple(r.listing(d["endpoints"], "endpoints"))
    for i, e in enumerate(endpoints):
        r.choice(e, f"endpoints[{i}]", ENDPOINTS)
    if len(set(endpoints)) != len(endpoints):
        r.fail("endpoints", f"{list(endpoints)} repeats an endpoint", "distinct endpoints")
    elig = r.string(d["eligibility"], "eligibility")
    return TrialSpec(
        name=r.slug(d["name"], "name"),
        title=r.string(d["title"], "title"),
        reference=r.string(d["reference"], "reference"),
        population=_population(r, d["population"]),
        eligibility=" ".join(elig.split()),
        line=_line(r, d["line"]),
        arms=tuple(_arm(r, a, f"arms[{i}]") for i, a in enumerate(r.listing(d["arms"], "arms"))),
        sample_size=r.integer(d["sample_size"], "sample_size"),
        accrual_months=r.number(d["accrual_months"], "accrual_months", low=0.0),
        data_cutoff_months=_cutoffs(r, d["data_cutoff_months"], endpoints),
        scans=_scans(r, d["scans"]),
        endpoints=endpoints,
        dropout_per_year=r.number(d.get("dropout_per_year", 0.0), "dropout_per_year", low=0.0),
        crossover=tuple(_crossover(r, c, f"crossover[{i}]")
                        for i, c in enumerate(r.listing(d.get("crossover") or [], "crossover", nonempty=False))),
        replicates=r.integer(d.get("replicates", 200), "replicates"),
        published=None if d.get("published") is None else _published(r, d["published"]),
        calibration=r.boolean(d.get("calibration", False), "calibration"),
        experimental_arm_name=None if d.get("experimental_arm") is None else r.slug(d["experimental_arm"], "experimental_arm"),
        source=source,
    )


def _parse(text: str, source: str) -> TrialSpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = " ".join(str(exc).split())
        raise ConfigError(f"trial spec '{source}': not valid YAML ({msg})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"trial spec '{source}': top level is {type(raw).__name__}; expected a mapping of keys")
    return spec_from_mapping(raw, source)


def load_spec(path: str | Path) -> TrialSpec:
    """Read and validate one trial-spec YAML file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"trial spec '{p}': not found") from None
    return _parse(text, str(p))


def load_specs(paths: Iterable[str | Path]) -> dict[str, TrialSpec]:
    """Read several spec files; returns name -> spec, rejecting two files with the same name."""
    out: dict[str, TrialSpec] = {}
    for path in paths:
        spec = load_spec(path)
        if spec.name in out:
            raise ConfigError(f"trial spec '{path}' key 'name': {spec.name!r} also in '{out[spec.name].source}'; expected unique names")
        out[spec.name] = spec
    return out


def shipped_specs() -> dict[str, TrialSpec]:
    """The specs shipped in ``oncobench/data/trials/*.yaml``, by name."""
    folder = resources.files("oncobench").joinpath("data/trials")
    out: dict[str, TrialSpec] = {}
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        if item.name.endswith(".yaml"):
            spec = _parse(item.read_text(), f"oncobench/data/trials/{item.name}")
            if spec.name in out:
                raise ConfigError(f"trial spec '{spec.source}' key 'name': {spec.name!r} repeats a shipped spec; expected unique names")
            out[spec.name] = spec
    return out


__all__ = [
    "AE_KINDS", "Arm", "ArmValues", "COHORT_COLUMNS", "COHORT_LEVELS", "Crossover", "DAYS_PER_MONTH", "ENDPOINTS",
    "HazardRatio", "Line", "NOT_REACHED", "Population", "Published", "REGIMENS", "ScanPhase", "TrialSpec",
    "eligible", "expression_names", "load_spec", "load_specs", "scan_days", "shipped_specs", "spec_from_mapping",
]
