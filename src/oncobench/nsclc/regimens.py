"""NSCLC treatment regimens: dosing event tables read from YAML, laid out as dense tensors.

A regimen is a list of phases run in order; a phase is ``cycles`` cycles of ``cycle_days``
days, and lists the drugs given on which 1-based cycle days. The shipped library is
``oncobench/data/regimens.yaml`` (doses and schedules from the calibration brief §2 and the
trials cited per regimen); :func:`load_library` reads it, or a user file of the same format::

    regimens:
      carboplatin_pemetrexed:
        label: "Carboplatin AUC5 + pemetrexed 500 mg/m2 q3w x4, then pemetrexed maintenance"
        source: "KEYNOTE-189 (Gandhi NEJM 2018); ALIMTA USPI"
        line: first            # optional, informational: first | second | consolidation | any
        phases:                # [] = no anticancer treatment
          - name: induction
            cycle_days: 21
            cycles: 4          # positive integer, or until_progression (last phase only)
            doses:
              - {drug: carboplatin, dose: 5, unit: auc, days: [1]}
              - {drug: pemetrexed, dose: 500, unit: mg_per_m2, days: [1]}
          - name: maintenance
            cycle_days: 21
            cycles: until_progression
            doses:
              - {drug: pemetrexed, dose: 500, unit: mg_per_m2, days: [1], max_cycles: null}
        rules:                 # optional, each key optional
          hold_if_anc_below_per_mm3: 1500   # a cycle starts only when ANC >= this; checked daily
          max_delay_days: 21                 # a longer delay discontinues the regimen
          reduce_after_febrile_neutropenia: {docetaxel: 0.733}   # dose factor, persists
          max_treatment_days: null           # no dose on or after this day (e.g. 730)

``unit`` must be the drug's unit on the contract's drug axis (``docs/nsclc-contracts.md``);
``max_cycles`` gives a drug only in the first cycles of its phase. Every user error raises
one :class:`~oncobench.config.ConfigError` line naming the file, the regimen and the key.

:class:`RegimenLibrary` holds the library as dense tensors (regimen x phase x cycle day x
drug) for a batched daily simulator; :func:`expand` lays one regimen out day by day without
delays, and :func:`describe` writes its schedule in words.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
import yaml

from oncobench.config import ConfigError
from oncobench.nsclc.drugs import DRUG_NAMES, DRUGS

# The drug axis and each drug's dose unit come from the drug catalogue (docs/nsclc-contracts.md).
DRUG_UNITS: dict[str, str] = {name: DRUGS[name].dose_unit for name in DRUG_NAMES}

# The shipped library's names, in file order (docs/nsclc-contracts.md, "Regimen names").
REGIMEN_NAMES: tuple[str, ...] = (
    "best_supportive_care", "cisplatin_pemetrexed", "carboplatin_pemetrexed",
    "carboplatin_paclitaxel", "cisplatin_gemcitabine", "carboplatin_gemcitabine", "docetaxel",
    "pembrolizumab", "nivolumab", "atezolizumab", "pembrolizumab_carboplatin_pemetrexed",
    "pembrolizumab_cisplatin_pemetrexed", "pembrolizumab_carboplatin_paclitaxel", "gefitinib",
    "erlotinib", "osimertinib", "crizotinib", "alectinib", "chemoradiation",
    "durvalumab_consolidation",
)

LINES: tuple[str, ...] = ("first", "second", "consolidation", "any")
UNTIL_PROGRESSION = "until_progression"
UNLIMITED = -1  # the int64 sentinel for "until progression" / "no cap" / "no limit"

_ANC_PER_MM3_PER_1E9_PER_L = 1000.0  # 1 x 10^9/L = 1000 cells/mm3
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REGIMEN_KEYS = {"label": True, "source": True, "line": False, "phases": True, "rules": False}
_PHASE_KEYS = {"name": True, "cycle_days": True, "cycles": True, "doses": True}
_DOSE_KEYS = {"drug": True, "dose": True, "unit": True, "days": True, "max_cycles": False}
_RULE_KEYS = {
    "hold_if_anc_below_per_mm3": False, "max_delay_days": False,
    "reduce_after_febrile_neutropenia": False, "max_treatment_days": False,
}
_UNIT_TEXT = {"mg_per_m2": "mg/m2", "mg_per_kg": "mg/kg", "mg": "mg", "gy": "Gy"}


@dataclass(frozen=True, eq=False)
class RegimenLibrary:
    """A regimen library as dense tensors; R regimens, P phases, C cycle days, D drugs.

    Attributes:
        names: regimen names (R,).
        labels: one-line labels (R,).
        sources: cited trial / label per regimen (R,).
        lines: treatment line per regimen (informational).
        phase_names: per regimen, the names of its phases.
        drugs: the drug axis (D,), ``DRUG_NAMES``.
        units: the dose unit of each drug (D,).
        n_phases: (R,) int64, phases per regimen (0 = no anticancer treatment).
        cycle_days: (R, P) int64, cycle length in days; 0 where the phase does not exist.
        cycles: (R, P) int64, cycles per phase; -1 = until progression, 0 = no phase.
        dose: (R, P, C, D) float64, amount in the drug's unit given on 0-based cycle day c
            (0 = no dose).
        drug_max_cycles: (R, P, D) int64, the drug is given only in the phase's first
            ``drug_max_cycles`` cycles; -1 = no cap.
        hold_anc_below_1e9_per_l: (R,) float64, a cycle starts only when ANC >= this (10^9/L;
            1500/mm3 = 1.5); 0 = no rule.
        max_delay_days: (R,) int64, a cycle start delayed longer discontinues; -1 = no limit.
        fn_dose_factor: (R, D) float64, factor on every dose after a febrile neutropenia;
            1 = no reduction.
        max_treatment_days: (R,) int64, no dose on or after this day from regimen start;
            -1 = no limit.
    """

    names: tuple[str, ...]
    labels: tuple[str, ...]
    sources: tuple[str, ...]
    lines: tuple[str, ...]
    phase_names: tuple[tuple[str, ...], ...]
    drugs: tuple[str, ...]
    units: tuple[str, ...]
    n_phases: torch.Tensor
    cycle_days: torch.Tensor
    cycles: torch.Tensor
    dose: torch.Tensor
    drug_max_cycles: torch.Tensor
    hold_anc_below_1e9_per_l: torch.Tensor
    max_delay_days: torch.Tensor
    fn_dose_factor: torch.Tensor
    max_treatment_days: torch.Tensor

    def __post_init__(self) -> None:
        r, d = len(self.names), len(self.drugs)
        p, c = self.dose.shape[1], self.dose.shape[2]
        shapes = {
            "n_phases": ((r,), torch.int64), "cycle_days": ((r, p), torch.int64),
            "cycles": ((r, p), torch.int64), "dose": ((r, p, c, d), torch.float64),
            "drug_max_cycles": ((r, p, d), torch.int64),
            "hold_anc_below_1e9_per_l": ((r,), torch.float64),
            "max_delay_days": ((r,), torch.int64), "fn_dose_factor": ((r, d), torch.float64),
            "max_treatment_days": ((r,), torch.int64),
        }
        for field, (shape, dtype) in shapes.items():
            t = getattr(self, field)
            if tuple(t.shape) != shape or t.dtype != dtype:
                raise ValueError(f"RegimenLibrary.{field}: {tuple(t.shape)} {t.dtype}; expected {shape} {dtype}")
        for field in ("labels", "sources", "lines", "phase_names"):
            if len(getattr(self, field)) != r:
                raise ValueError(f"RegimenLibrary.{field}: {len(getattr(self, field))} entries; expected {r}")
        if len(self.units) != d:
            raise ValueError(f"RegimenLibrary.units: {len(self.units)} entries; expected {d}")
        if len(set(self.names)) != r:
            raise ValueError("RegimenLibrary.names: duplicate names; expected unique names")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def device(self) -> torch.device:
        return self.dose.device

    def to(self, device: torch.device | str) -> RegimenLibrary:
        """The same library with every tensor on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)

    def index(self, name: str) -> int:
        """Row of regimen ``name``.

        Raises:
            KeyError: ``name`` is not in the library; the message lists the names.
        """
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"regimen '{name}' is not in the library; expected one of: {', '.join(self.names)}") from None

    def indices(self, names: Iterable[str]) -> torch.Tensor:
        """Rows of ``names`` as an int64 tensor on the library's device."""
        return torch.tensor([self.index(n) for n in names], dtype=torch.int64, device=self.device)

    def subset(self, names: Iterable[str]) -> RegimenLibrary:
        """A library of the regimens ``names``, in that order (phase and day axes kept)."""
        names = tuple(names)
        rows = [self.index(n) for n in names]
        idx = torch.tensor(rows, dtype=torch.int64, device=self.device)
        out: dict[str, Any] = {
            f.name: getattr(self, f.name).index_select(0, idx)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        for field in ("labels", "sources", "lines", "phase_names"):
            values = getattr(self, field)
            out[field] = tuple(values[i] for i in rows)
        return dataclasses.replace(self, names=names, **out)

    def drug_mask(self, name: str) -> torch.Tensor:
        """(D,) bool: the drugs regimen ``name`` gives at some point."""
        return (self.dose[self.index(name)] > 0).any(dim=0).any(dim=0)


def load_library(path: Path | str | None = None) -> RegimenLibrary:
    """Read and validate a regimen YAML file and build its tensors.

    Args:
        path: the YAML file; None reads the shipped ``oncobench/data/regimens.yaml``.

    Returns:
        The library, on the CPU.

    Raises:
        ConfigError: one line naming the file, the regimen and the key that is wrong.
    """
    if path is None:
        resource = resources.files("oncobench.data").joinpath("regimens.yaml")
        where, text = str(resource), resource.read_text()
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ConfigError(f"regimen file '{where}': not found") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"regimen file '{where}': key '{exc.key}' repeated on line {exc.line}; expected each key once") from None
    except yaml.YAMLError as exc:
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"regimen file '{where}': not valid YAML ({one_line})") from None
    if not isinstance(raw, dict) or set(raw) != {"regimens"}:
        found = type(raw).__name__ if not isinstance(raw, dict) else f"keys {sorted(map(str, raw))}"
        raise ConfigError(f"regimen file '{where}': top level has {found}; expected the single key 'regimens'")
    table = raw["regimens"]
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"regimen file '{where}': key 'regimens' is {table!r}; expected a non-empty mapping of regimen names")
    parsed = [_parse_regimen(where, name, body) for name, body in table.items()]
    return _build(parsed)


def expand(library: RegimenLibrary, regimen: str, days: int, *, progression_day: int | None = None) -> torch.Tensor:
    """The dose event table of one regimen laid out day by day, without delays.

    Day 0 is cycle day 1 of the first phase; phases follow each other back to back. Doses stop
    before ``progression_day`` (progression seen that day: no dose), on and after the
    regimen's ``max_treatment_days``, and when its last finite phase ends. The simulator walks
    the same tensors day by day and adds the hold and delay rules.

    Args:
        library: the regimen library.
        regimen: a regimen name of ``library``.
        days: number of days to lay out.
        progression_day: the day of progression, or None.

    Returns:
        (days, D) float64 on the library's device: amount of each drug, in its unit, per day.
    """
    if days < 0:
        raise ValueError(f"days={days}; expected >= 0")
    r = library.index(regimen)
    stop = days
    if progression_day is not None:
        stop = min(stop, max(int(progression_day), 0))
    cap_days = int(library.max_treatment_days[r])
    if cap_days != UNLIMITED:
        stop = min(stop, cap_days)
    out = torch.zeros(days, len(library.drugs), dtype=torch.float64, device=library.device)
    start = 0
    for p in range(int(library.n_phases[r])):
        if start >= stop:
            break
        length = int(library.cycle_days[r, p])
        planned = int(library.cycles[r, p])
        needed = math.ceil((stop - start) / length)
        n = needed if planned == UNLIMITED else min(planned, needed)
        cycle = torch.arange(n, device=library.device)[:, None]
        max_cycles = library.drug_max_cycles[r, p]
        given = (max_cycles == UNLIMITED) | (cycle < max_cycles)  # (n, D)
        table = (library.dose[r, p, :length][None] * given[:, None, :]).reshape(n * length, -1)
        end = min(start + n * length, stop)
        out[start:end] = table[: end - start]
        start += (planned if planned != UNLIMITED else n) * length
    return out


def describe(library: RegimenLibrary, regimen: str) -> str:
    """The schedule of ``regimen`` in words, one line per phase, drug and rule, for reports."""
    r = library.index(regimen)
    out = [f"{regimen}: {library.labels[r]} (line: {library.lines[r]})", f"  source: {library.sources[r]}"]
    n_phases = int(library.n_phases[r])
    if n_phases == 0:
        out.append("  no anticancer treatment")
    for p in range(n_phases):
        length, n = int(library.cycle_days[r, p]), int(library.cycles[r, p])
        span = f"{length}-day cycles until progression" if n == UNLIMITED else f"{n} cycle{'s' * (n != 1)} of {length} days"
        out.append(f"  phase {p + 1} '{library.phase_names[r][p]}': {span}")
        table = library.dose[r, p, :length].cpu()
        for d, drug in enumerate(library.drugs):
            doses = table[:, d]
            for amount in sorted(set(doses[doses > 0].tolist())):
                days = (torch.nonzero(doses == amount).flatten() + 1).tolist()
                text = f"    {drug} {_amount_text(amount, library.units[d])} {_day_ranges(days, length)}"
                cap = int(library.drug_max_cycles[r, p, d])
                if cap != UNLIMITED:
                    text += f", first {cap} cycle{'s' * (cap != 1)} only"
                out.append(text)
    rules = []
    hold = float(library.hold_anc_below_1e9_per_l[r])
    if hold > 0:
        rules.append(f"a cycle starts only when ANC >= {hold * _ANC_PER_MM3_PER_1E9_PER_L:g}/mm3 ({hold:g}e9/L), checked daily")
    delay = int(library.max_delay_days[r])
    if delay != UNLIMITED:
        rules.append(f"a delay over {delay} days discontinues the regimen")
    for d, drug in enumerate(library.drugs):
        factor = float(library.fn_dose_factor[r, d])
        if factor != 1.0:
            rules.append(f"after febrile neutropenia {drug} doses x{factor:g} from then on")
    cap_days = int(library.max_treatment_days[r])
    if cap_days != UNLIMITED:
        rules.append(f"no dose from day {cap_days} of treatment")
    if rules:
        out.append("  rules: " + "; ".join(rules))
    return "\n".join(out)


def _amount_text(amount: float, unit: str) -> str:
    if unit == "auc":
        return f"AUC {amount:g}"
    return f"{amount:g} {_UNIT_TEXT.get(unit, unit)}"


def _day_ranges(days: list[int], length: int) -> str:
    if days == list(range(1, length + 1)):
        return "every day"
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][1] + 1:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return ("on day " if len(days) == 1 else "on days ") + text


# ---------------------------------------------------------------------------- parsing


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated mapping keys (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)):
            continue  # unhashable keys: left to PyYAML's own error
        if key in seen:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


@dataclass(frozen=True)
class _Dose:
    drug: str
    dose: float
    days: tuple[int, ...]
    max_cycles: int


@dataclass(frozen=True)
class _Phase:
    name: str
    cycle_days: int
    cycles: int
    doses: tuple[_Dose, ...]


@dataclass(frozen=True)
class _Regimen:
    name: str
    label: str
    source: str
    line: str
    phases: tuple[_Phase, ...]
    hold_anc_per_mm3: float
    max_delay_days: int
    fn_factors: Mapping[str, float]
    max_treatment_days: int


class _Where:
    """Formats the one-line error for a key of one regimen of one file."""

    def __init__(self, file: str, regimen: str) -> None:
        self.file, self.regimen = file, regimen

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"regimen file '{self.file}': regimen '{self.regimen}', key '{key}': {problem}")

    def keys(self, raw: Any, allowed: Mapping[str, bool], key: str, what: str) -> dict:
        if not isinstance(raw, dict):
            raise self.fail(key or "<regimen>", f"{raw!r} is not a mapping; expected {what} with keys {', '.join(allowed)}")
        prefix = f"{key}." if key else ""
        for k in raw:
            if k not in allowed:
                raise self.fail(f"{prefix}{k}", f"unknown key; expected one of {', '.join(allowed)}")
        for k, required in allowed.items():
            if required and k not in raw:
                needed = ", ".join(k for k, req in allowed.items() if req)
                raise self.fail(f"{prefix}{k}", f"missing; expected {what} to have the keys {needed}")
        return raw


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _parse_regimen(file: str, name: Any, body: Any) -> _Regimen:
    w = _Where(file, str(name))
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"regimen file '{file}': regimen name {name!r} under 'regimens'; expected lower_snake_case text")
    body = w.keys(body, _REGIMEN_KEYS, "", "a regimen")
    for key in ("label", "source"):
        if not isinstance(body[key], str) or not body[key].strip():
            raise w.fail(key, f"{body[key]!r}; expected non-empty text")
    line = body.get("line", "any")
    if line not in LINES:
        raise w.fail("line", f"{line!r}; expected one of {', '.join(LINES)}")
    if not isinstance(body["phases"], list):
        raise w.fail("phases", f"{body['phases']!r}; expected a list of phases ([] for none)")
    phases = tuple(_parse_phase(w, f"phases[{i}]", raw) for i, raw in enumerate(body["phases"]))
    for i, p in enumerate(phases):
        if p.name in [q.name for q in phases[:i]]:
            raise w.fail(f"phases[{i}].name", f"'{p.name}' used twice; expected unique phase names")
        if p.cycles == UNLIMITED and i < len(phases) - 1:
            raise w.fail(f"phases[{i}].cycles", f"'{UNTIL_PROGRESSION}' before phase '{phases[i + 1].name}'; expected it only in the last phase")
    rules = w.keys(body.get("rules") or {}, _RULE_KEYS, "rules", "rules")
    hold = rules.get("hold_if_anc_below_per_mm3")
    if hold is not None and not (_is_number(hold) and 100 <= hold <= 10000):
        raise w.fail("rules.hold_if_anc_below_per_mm3", f"{hold!r}; expected null or an ANC in cells/mm3 between 100 and 10000 (e.g. 1500)")
    delay = rules.get("max_delay_days")
    if delay is not None and not (_is_int(delay) and delay >= 0):
        raise w.fail("rules.max_delay_days", f"{delay!r}; expected null or an integer >= 0")
    cap_days = rules.get("max_treatment_days")
    if cap_days is not None and not (_is_int(cap_days) and cap_days >= 1):
        raise w.fail("rules.max_treatment_days", f"{cap_days!r}; expected null or an integer >= 1")
    reduce = rules.get("reduce_after_febrile_neutropenia") or {}
    if not isinstance(reduce, dict):
        raise w.fail("rules.reduce_after_febrile_neutropenia", f"{reduce!r}; expected a mapping drug: factor")
    given = {d.drug for p in phases for d in p.doses}
    for drug, factor in reduce.items():
        key = f"rules.reduce_after_febrile_neutropenia.{drug}"
        if drug not in given:
            raise w.fail(key, f"'{drug}' is not given by this regimen; expected one of {', '.join(sorted(given)) or 'no drug'}")
        if not (_is_number(factor) and 0 < factor <= 1):
            raise w.fail(key, f"{factor!r}; expected a dose factor in (0, 1]")
    return _Regimen(
        name=name, label=body["label"].strip(), source=body["source"].strip(), line=line, phases=phases,
        hold_anc_per_mm3=float(hold or 0.0),
        max_delay_days=UNLIMITED if delay is None else int(delay),
        fn_factors={k: float(v) for k, v in reduce.items()},
        max_treatment_days=UNLIMITED if cap_days is None else int(cap_days),
    )


def _parse_phase(w: _Where, key: str, raw: Any) -> _Phase:
    raw = w.keys(raw, _PHASE_KEYS, key, "a phase")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise w.fail(f"{key}.name", f"{name!r}; expected non-empty text")
    length = raw["cycle_days"]
    if not (_is_int(length) and length >= 1):
        raise w.fail(f"{key}.cycle_days", f"{length!r}; expected a positive integer")
    cycles = raw["cycles"]
    if cycles == UNTIL_PROGRESSION:
        cycles = UNLIMITED
    elif not (_is_int(cycles) and cycles >= 1):
        raise w.fail(f"{key}.cycles", f"{cycles!r}; expected a positive integer or '{UNTIL_PROGRESSION}'")
    if not isinstance(raw["doses"], list) or not raw["doses"]:
        raise w.fail(f"{key}.doses", f"{raw['doses']!r}; expected a non-empty list of doses")
    doses = tuple(_parse_dose(w, f"{key}.doses[{j}]", d, length, cycles) for j, d in enumerate(raw["doses"]))
    for j, d in enumerate(doses):
        if d.drug in [e.drug for e in doses[:j]]:
            raise w.fail(f"{key}.doses[{j}].drug", f"'{d.drug}' listed twice in phase '{name}'; expected each drug once per phase")
    return _Phase(name=name, cycle_days=length, cycles=cycles, doses=doses)


def _parse_dose(w: _Where, key: str, raw: Any, length: int, cycles: int) -> _Dose:
    raw = w.keys(raw, _DOSE_KEYS, key, "a dose")
    drug = raw["drug"]
    if drug not in DRUG_UNITS:
        raise w.fail(f"{key}.drug", f"unknown drug {drug!r}; expected one of {', '.join(DRUG_NAMES)}")
    amount = raw["dose"]
    if not (_is_number(amount) and amount > 0):
        raise w.fail(f"{key}.dose", f"{amount!r}; expected a positive number")
    if raw["unit"] != DRUG_UNITS[drug]:
        raise w.fail(f"{key}.unit", f"{raw['unit']!r} for {drug}; expected '{DRUG_UNITS[drug]}'")
    days = raw["days"]
    if not isinstance(days, list) or not days:
        raise w.fail(f"{key}.days", f"{days!r}; expected a non-empty list of cycle days")
    for day in days:
        if not (_is_int(day) and 1 <= day <= length):
            raise w.fail(f"{key}.days", f"day {day!r}; expected integers in 1..{length} (cycle_days)")
    if len(set(days)) != len(days):
        raise w.fail(f"{key}.days", f"{days}; expected each day once")
    max_cycles = raw.get("max_cycles")
    if max_cycles is not None:
        if not (_is_int(max_cycles) and max_cycles >= 1):
            raise w.fail(f"{key}.max_cycles", f"{max_cycles!r}; expected null or a positive integer")
        if cycles != UNLIMITED and max_cycles > cycles:
            raise w.fail(f"{key}.max_cycles", f"{max_cycles} exceeds the phase's {cycles} cycles; expected at most {cycles}")
    return _Dose(
        drug=drug, dose=float(amount), days=tuple(sorted(days)),
        max_cycles=UNLIMITED if max_cycles is None else int(max_cycles),
    )


def _build(regimens: list[_Regimen]) -> RegimenLibrary:
    n_r, n_d = len(regimens), len(DRUG_NAMES)
    n_p = max([1] + [len(g.phases) for g in regimens])
    n_c = max([1] + [p.cycle_days for g in regimens for p in g.phases])
    col = {drug: i for i, drug in enumerate(DRUG_NAMES)}
    n_phases = torch.zeros(n_r, dtype=torch.int64)
    cycle_days = torch.zeros(n_r, n_p, dtype=torch.int64)
    cycles = torch.zeros(n_r, n_p, dtype=torch.int64)
    dose = torch.zeros(n_r, n_p, n_c, n_d, dtype=torch.float64)
    drug_max_cycles = torch.full((n_r, n_p, n_d), UNLIMITED, dtype=torch.int64)
    hold = torch.zeros(n_r, dtype=torch.float64)
    max_delay = torch.full((n_r,), UNLIMITED, dtype=torch.int64)
    fn_factor = torch.ones(n_r, n_d, dtype=torch.float64)
    max_days = torch.full((n_r,), UNLIMITED, dtype=torch.int64)
    for r, g in enumerate(regimens):
        n_phases[r] = len(g.phases)
        for p, phase in enumerate(g.phases):
            cycle_days[r, p] = phase.cycle_days
            cycles[r, p] = phase.cycles
            for d in phase.doses:
                dose[r, p, [day - 1 for day in d.days], col[d.drug]] = d.dose
                drug_max_cycles[r, p, col[d.drug]] = d.max_cycles
        hold[r] = g.hold_anc_per_mm3 / _ANC_PER_MM3_PER_1E9_PER_L
        max_delay[r] = g.max_delay_days
        for drug, factor in g.fn_factors.items():
            fn_factor[r, col[drug]] = factor
        max_days[r] = g.max_treatment_days
    return RegimenLibrary(
        names=tuple(g.name for g in regimens),
        labels=tuple(g.label for g in regimens),
        sources=tuple(g.source for g in regimens),
        lines=tuple(g.line for g in regimens),
        phase_names=tuple(tuple(p.name for p in g.phases) for g in regimens),
        drugs=DRUG_NAMES,
        units=tuple(DRUG_UNITS[d] for d in DRUG_NAMES),
        n_phases=n_phases, cycle_days=cycle_days, cycles=cycles, dose=dose,
        drug_max_cycles=drug_max_cycles, hold_anc_below_1e9_per_l=hold, max_delay_days=max_delay,
        fn_dose_factor=fn_factor, max_treatment_days=max_days,
    )


__all__ = [
    "DRUG_NAMES", "DRUG_UNITS", "LINES", "REGIMEN_NAMES", "RegimenLibrary", "UNLIMITED",
    "UNTIL_PROGRESSION", "describe", "expand", "load_library",
]
