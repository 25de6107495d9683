# Input functions and helpers shared by the rules; no rules here.
import json
from pathlib import Path

from snakemake import __version__ as SNAKEMAKE_VERSION

from oncobench.config import format_gamma, from_mapping

CFG = from_mapping(config)  # validated already by the Snakefile's entry check

R = CFG.results_dir
SHARDS = list(range(CFG.cohort.shards))
GAMMAS = [format_gamma(g) for g in CFG.gammas]


wildcard_constraints:
    shard=r"\d+",
    gamma=r"[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?",


CONFIG_FILE = f"{R}/config.resolved.yaml"


def resolved_config_json():
    """The validated config, defaults filled, as JSON for the `resolve_config` rule."""
    return json.dumps(dict(CFG.raw), sort_keys=True)


def results_root(wildcards, input):
    """The results folder, inferred from the resolved config file that every rule reads."""
    return str(Path(input.config).parent)


def cohort_shards(wildcards):
    return expand(f"{R}/cohort/shard-{{shard}}.parquet", shard=SHARDS)


def trajectory_shards(wildcards):
    return expand(f"{R}/trajectories/gamma-{{gamma}}/shard-{{shard}}.parquet", gamma=wildcards.gamma, shard=SHARDS)


def regimen_shards(wildcards):
    return expand(f"{R}/counterfactuals/regimens/shard-{{shard}}.parquet", shard=SHARDS)


def onestep_shards(wildcards):
    return expand(f"{R}/counterfactuals/gamma-{{gamma}}/onestep/shard-{{shard}}.parquet", gamma=wildcards.gamma, shard=SHARDS)


def taustep_shards(wildcards):
    return expand(f"{R}/counterfactuals/gamma-{{gamma}}/taustep/shard-{{shard}}.parquet", gamma=wildcards.gamma, shard=SHARDS)


def factual_shards(wildcards):
    return expand(f"{R}/factual/gamma-{{gamma}}/shard-{{shard}}.parquet", gamma=wildcards.gamma, shard=SHARDS)


def model_extras(wildcards=None):
    """Inputs of the summary and tracking rules that only one model has."""
    if CFG.model == "nsclc":
        return {
            "trials": f"{R}/trials/summary.parquet",
            "factual": expand(f"{R}/factual/gamma-{{gamma}}/shard-{{shard}}.parquet", gamma=GAMMAS, shard=SHARDS),
        }
    return {}


def verify_controls_input(wildcards=None):
    """The release's negative-control table, when the config runs the controls."""
    return [f"{R}/verification/controls.parquet"] if CFG.verify.controls.enabled else []


def verification_dirs(wildcards=None):
    return expand(f"{R}/verification/gamma-{{gamma}}/verdict.parquet", gamma=GAMMAS)


def metric_files(wildcards=None):
    return expand(f"{R}/metrics/gamma-{{gamma}}.parquet", gamma=GAMMAS)


def benchmark_path(rule_name, pattern=""):
    return f"{R}/benchmarks/{rule_name}/{pattern or 'all'}.tsv"


def log_path(rule_name, pattern=""):
    return f"{R}/logs/{rule_name}/{pattern or 'all'}.log"


def all_outputs():
    return [
        f"{R}/summary/summary.md",
        f"{R}/tracking/mlflow_run.json",
    ]
