"""The run configuration: YAML validated by one JSON schema, then frozen dataclasses.

The schema (``oncobench/data/config.schema.yaml``, also ``workflow/schemas/``) is the single
list of keys, defaults and ranges. :func:`load_config` fills defaults, validates, and builds
:class:`Config`; every user error becomes one :class:`ConfigError` line that names the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message names the key."""


def schema() -> dict[str, Any]:
    """The JSON schema of the configuration, as a dict."""
    text = resources.files("oncobench").joinpath("data/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = root
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return target


def fill_defaults(value: Any, node: dict[str, Any], root: dict[str, Any]) -> Any:
    """Return ``value`` with the schema's defaults filled in, recursively (arrays included)."""
    node = _resolve(node, root)
    if isinstance(value, dict) and "properties" in node:
        out = dict(value)
        for key, sub in node["properties"].items():
            sub_r = _resolve(sub, root)
            if key not in out and "default" in sub_r:
                out[key] = copy.deepcopy(sub_r["default"])
            if key in out:
                out[key] = fill_defaults(out[key], sub_r, root)
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [fill_defaults(item, node["items"], root) for item in value]
    return value


def _allows_string(node: dict[str, Any], root: dict[str, Any]) -> bool:
    node = _resolve(node, root)
    if "oneOf" in node:
        return any(_allows_string(n, root) for n in node["oneOf"])
    types = node.get("type")
    if types is None:
        return "enum" in node and any(isinstance(v, str) for v in node["enum"])
    return "string" in (types if isinstance(types, list) else [types])


def _array_items(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any] | None:
    node = _resolve(node, root)
    if isinstance(node.get("items"), dict):
        return node["items"]
    for branch in node.get("oneOf", []):
        items = _array_items(branch, root)
        if items is not None:
            return items
    return None


def coerce_strings(value: Any, node: dict[str, Any], root: dict[str, Any]) -> Any:
    """Read strings as YAML where the schema expects no string.

    Snakemake's ``--config key='{a: 1}'`` hands nested values over as strings ('1'); this
    turns them into the numbers, booleans and lists the schema asks for.
    """
    node = _resolve(node, root)
    if isinstance(value, str) and not _allows_string(node, root):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return coerce_strings(parsed, node, root) if not isinstance(parsed, str) else value
    if isinstance(value, dict) and "properties" in node:
        return {k: coerce_strings(v, node["properties"][k], root) if k in node["properties"] else v for k, v in value.items()}
    if isinstance(value, list):
        items = _array_items(node, root)
        if items is not None:
            return [coerce_strings(v, items, root) for v in value]
    return value


def prepare_workflow_config(config: dict[str, Any]) -> None:
    """Entry check of the Snakefile: coerce command-line strings in place, then validate.

    Exits with one line naming the bad key, before Snakemake builds any job.
    """
    import sys

    root = schema()
    coerced = coerce_strings(config, root, root)
    config.clear()
    config.update(coerced)
    try:
        from_mapping(config)
    except ConfigError as exc:
        sys.exit(f"oncobench: invalid configuration: {exc}")


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "<root>"


def validate_mapping(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate; raise :class:`ConfigError` naming the first bad key."""
    root = schema()
    filled = fill_defaults(dict(raw), root, root)
    validator = jsonschema.Draft202012Validator(root)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties":
            allowed = sorted(_resolve(err.schema, root).get("properties", {}))
            raise ConfigError(f"config key '{_key_path(err)}': {err.message}; allowed keys: {', '.join(allowed)}")
        if err.validator == "oneOf":
            raise ConfigError(f"config key '{_key_path(err)}': {err.instance!r} is not valid; expected {err.schema.get('description', 'see schema')}")
        raise ConfigError(f"config key '{_key_path(err)}': {err.message}")
    return filled


@dataclass(frozen=True)
class Schedule:
    """Doses on days start_day, start_day + every_days, ...; ``doses == 0`` means until the horizon."""

    every_days: int
    start_day: int = 0
    doses: int = 0

    def days(self, horizon_days: int) -> list[int]:
        """Dosing days strictly before ``horizon_days``."""
        out = list(range(self.start_day, horizon_days, self.every_days))
        return out[: self.doses] if self.doses else out


@dataclass(frozen=True)
class Regimen:
    """A fixed treatment plan of the geng2017 model: optional chemo and radio schedules."""

    name: str
    chemo: Schedule | None = None
    radio: Schedule | None = None


@dataclass(frozen=True)
class CohortConfig:
    n_patients: int
    shards: int

    def __post_init__(self) -> None:
        if self.shards > self.n_patients:
            raise ConfigError(
                f"config key 'cohort.shards': {self.shards} shards for {self.n_patients} patients; expected shards <= n_patients"
            )


@dataclass(frozen=True)
class SimulationConfig:
    days: int
    record_every: int
    compat: str
    chunk_patients: int


@dataclass(frozen=True)
class PolicyConfig:
    gamma: tuple[float, ...]
    window_days: int


@dataclass(frozen=True)
class ObservationConfig:
    scan_every_days: int
    diameter_cv: float


@dataclass(frozen=True)
class CounterfactualConfig:
    regimens: tuple[Regimen, ...]
    horizons_days: tuple[int, ...]
    replicates: int
    tau_max: int
    tau_start_every_days: int
    test_fraction: float


@dataclass(frozen=True)
class VerifyThresholds:
    identifiable: tuple[str, ...] | None  # None: the model's default
    contraction_min: float
    sbc_alpha: float
    dap_c2st_z: float
    coverage_levels: tuple[float, ...]
    coverage_z: float
    coverage_slack: float
    tarp_atc_max: float
    realism_z: float


@dataclass(frozen=True)
class NpeConfig:
    density_estimator: str
    hidden_features: int
    num_transforms: int
    embedding_dim: int
    embedding_hidden: int
    embedding_layers: int
    batch_size: int
    learning_rate: float
    stop_after_epochs: int
    max_epochs: int
    restarts: int
    ensemble_tolerance: float


@dataclass(frozen=True)
class ReferenceData:
    cohort: str
    trajectories: str


@dataclass(frozen=True)
class ControlsConfig:
    enabled: bool
    train_patients: int
    shrink_factor: float


@dataclass(frozen=True)
class OverrideConfig:
    accept: bool
    reason: str


@dataclass(frozen=True)
class VerifyConfig:
    train_patients: int | None  # None: sized to the number of parameters (inverse.stage.training_budget)
    simulations_per_parameter: int
    min_train_patients: int
    test_patients: int
    posterior_samples: int
    npe: NpeConfig
    reference: ReferenceData | None
    realism_permutations: int
    controls: ControlsConfig
    override: OverrideConfig
    thresholds: VerifyThresholds


@dataclass(frozen=True)
class FactualModelConfig:
    epochs: int
    hidden_units: int
    max_train_rows: int


@dataclass(frozen=True)
class ModelSpec:
    """A user model: ``import`` is ``module.path:factory``; the factory gets ``options``."""

    name: str
    import_path: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluateConfig:
    bootstrap: int
    horizon_days: int
    cost_per_chemo_dose_cm3: float
    cost_per_radio_fraction_cm3: float
    factual_model: FactualModelConfig
    models: tuple[ModelSpec, ...]


@dataclass(frozen=True)
class TrackingConfig:
    uri: str | None
    experiment: str
    release: str
    max_artifact_mb: float


@dataclass(frozen=True)
class NsclcTrialsConfig:
    specs: tuple[str, ...]
    replicates: int


@dataclass(frozen=True)
class NsclcEvaluateConfig:
    utility: str
    guideline: str


@dataclass(frozen=True)
class NsclcConfig:
    """Keys of the precision-oncology NSCLC model (``nsclc:`` in the YAML)."""

    parameters: str | None
    regimens: str | None
    region: str
    horizon_days: int
    record_every: int
    scan_every_days: int
    chunk_patients: int
    first_line_regimens: tuple[str, ...]
    trials: NsclcTrialsConfig
    evaluate: NsclcEvaluateConfig


@dataclass(frozen=True)
class Config:
    """The whole, validated run configuration."""

    seed: int
    model: str
    results_dir: str
    device: str
    nsclc: NsclcConfig
    cohort: CohortConfig
    simulation: SimulationConfig
    policy: PolicyConfig
    observation: ObservationConfig
    counterfactuals: CounterfactualConfig
    verify: VerifyConfig
    evaluate: EvaluateConfig
    tracking: TrackingConfig
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        days = self.simulation.days
        for i, h in enumerate(self.counterfactuals.horizons_days):
            if h >= days:
                raise ConfigError(
                    f"config key 'counterfactuals.horizons_days[{i}]': {h} is not a simulated day; expected < simulation.days ({days})"
                )
        if self.evaluate.horizon_days >= days:
            raise ConfigError(
                f"config key 'evaluate.horizon_days': {self.evaluate.horizon_days}; expected < simulation.days ({days})"
            )
        if self.evaluate.horizon_days not in self.counterfactuals.horizons_days:
            raise ConfigError(
                f"config key 'evaluate.horizon_days': {self.evaluate.horizon_days} is not one of "
                f"counterfactuals.horizons_days {list(self.counterfactuals.horizons_days)}; expected one of them"
            )
        if self.counterfactuals.tau_max >= days:
            raise ConfigError(
                f"config key 'counterfactuals.tau_max': {self.counterfactuals.tau_max}; expected < simulation.days ({days})"
            )
        names = [r.name for r in self.counterfactuals.regimens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"config key 'counterfactuals.regimens': duplicate regimen name(s) {dupes}; expected unique names")
        model_names = [m.name for m in self.evaluate.models]
        builtin = {"oracle", "factual_mlp"} | {f"always_{n}" for n in names}
        clash = sorted((set(model_names) & builtin) | {n for n in model_names if model_names.count(n) > 1})
        if clash:
            raise ConfigError(f"config key 'evaluate.models': name(s) {clash} clash with built-in or repeated models; expected unique names")

    @property
    def gammas(self) -> tuple[float, ...]:
        return self.policy.gamma

    def hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the canonical JSON of the resolved config."""
        return config_hash(self.raw)


def config_hash(raw: Mapping[str, Any]) -> str:
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def format_gamma(gamma: float) -> str:
    """The path form of a confounding strength (``4`` for 4.0, ``0.5`` for 0.5)."""
    return f"{float(gamma):g}"


def _schedule(raw: Mapping[str, Any] | None) -> Schedule | None:
    return None if raw is None else Schedule(every_days=raw["every_days"], start_day=raw["start_day"], doses=raw["doses"])


def _nsclc(n: Mapping[str, Any]) -> NsclcConfig:
    return NsclcConfig(
        parameters=n["parameters"],
        regimens=n["regimens"],
        region=n["region"],
        horizon_days=n["horizon_days"],
        record_every=n["record_every"],
        scan_every_days=n["scan_every_days"],
        chunk_patients=n["chunk_patients"],
        first_line_regimens=tuple(n["first_line_regimens"]),
        trials=NsclcTrialsConfig(specs=tuple(n["trials"]["specs"]), replicates=n["trials"]["replicates"]),
        evaluate=NsclcEvaluateConfig(**n["evaluate"]),
    )


def _verify(vt: Mapping[str, Any]) -> VerifyConfig:
    th = dict(vt["thresholds"])
    ident = th.pop("identifiable")
    if vt["override"]["accept"] and not vt["override"]["reason"].strip():
        raise ConfigError("verify.override.accept is true but verify.override.reason is empty: say why the release may ship")
    ref = vt["reference"]
    return VerifyConfig(
        train_patients=vt["train_patients"],
        simulations_per_parameter=vt["simulations_per_parameter"],
        min_train_patients=vt["min_train_patients"],
        test_patients=vt["test_patients"],
        posterior_samples=vt["posterior_samples"],
        npe=NpeConfig(**vt["npe"]),
        reference=None if ref is None else ReferenceData(**ref),
        realism_permutations=vt["realism_permutations"],
        controls=ControlsConfig(**vt["controls"]),
        override=OverrideConfig(**vt["override"]),
        thresholds=VerifyThresholds(
            **{**th, "coverage_levels": tuple(th["coverage_levels"])}, identifiable=None if ident is None else tuple(ident)
        ),
    )


def from_mapping(raw: Mapping[str, Any]) -> Config:
    """Validate a raw mapping (defaults filled) and build the frozen :class:`Config`."""
    d = validate_mapping(raw)
    gamma = d["policy"]["gamma"]
    gammas = tuple(float(g) for g in (gamma if isinstance(gamma, list) else [gamma]))
    cf = d["counterfactuals"]
    ev = d["evaluate"]
    vt = d["verify"]
    return Config(
        seed=d["seed"],
        model=d["model"],
        results_dir=d["results_dir"],
        device=d["device"],
        nsclc=_nsclc(d["nsclc"]),
        cohort=CohortConfig(**d["cohort"]),
        simulation=SimulationConfig(**d["simulation"]),
        policy=PolicyConfig(gamma=gammas, window_days=d["policy"]["window_days"]),
        observation=ObservationConfig(**d["observation"]),
        counterfactuals=CounterfactualConfig(
            regimens=tuple(Regimen(r["name"], _schedule(r.get("chemo")), _schedule(r.get("radio"))) for r in cf["regimens"]),
            horizons_days=tuple(cf["horizons_days"]),
            replicates=cf["replicates"],
            tau_max=cf["tau_max"],
            tau_start_every_days=cf["tau_start_every_days"],
            test_fraction=cf["test_fraction"],
        ),
        verify=_verify(vt),
        evaluate=EvaluateConfig(
            bootstrap=ev["bootstrap"],
            horizon_days=ev["horizon_days"],
            cost_per_chemo_dose_cm3=ev["cost_per_chemo_dose_cm3"],
            cost_per_radio_fraction_cm3=ev["cost_per_radio_fraction_cm3"],
            factual_model=FactualModelConfig(**ev["factual_model"]),
            models=tuple(ModelSpec(m["name"], m["import"], dict(m.get("options", {}))) for m in ev["models"]),
        ),
        tracking=TrackingConfig(**d["tracking"]),
        raw=d,
    )


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read a YAML config file (or only defaults when ``path`` is None) and validate it."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file '{p}': not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{p}': not valid YAML ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{p}': top level is {type(loaded).__name__}; expected a mapping of keys")
        raw = loaded
    if overrides:
        raw = _deep_merge(raw, overrides)
    return from_mapping(raw)


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def as_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data (defaults filled), for logging."""
    return copy.deepcopy(dict(cfg.raw))


__all__ = [
    "Config", "ConfigError", "Regimen", "Schedule", "as_dict", "config_hash", "format_gamma",
    "from_mapping", "load_config", "schema", "validate_mapping", "asdict",
]
