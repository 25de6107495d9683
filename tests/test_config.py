"""Config: defaults, one clear error per bad key, and one schema for Snakemake and the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncobench.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_default_config_loads():
    cfg = load_config(ROOT / "config" / "config.yaml")
    assert cfg.model == "nsclc" and cfg.cohort.n_patients == 2000 and cfg.gammas == (0.0, 4.0)
    assert cfg.nsclc.horizon_days == 1095 and "keynote010" in cfg.nsclc.trials.specs
    assert load_config().model == "nsclc"  # the schema's default is the NSCLC model too


def test_geng2017_config_loads():
    cfg = load_config(ROOT / "config" / "geng2017.yaml")
    assert cfg.model == "geng2017" and cfg.cohort.n_patients == 2000 and cfg.gammas == (0.0, 4.0)
    assert [r.name for r in cfg.counterfactuals.regimens] == ["no_treatment", "chemo", "radio", "chemo_radio"]
    assert cfg.counterfactuals.regimens[2].radio.days(60) == list(range(30))


def test_scalar_gamma_becomes_a_tuple():
    assert load_config(overrides={"policy": {"gamma": 2}}).gammas == (2.0,)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"cohort": {"n_patient": 3}}, r"'cohort'.*'n_patient' was unexpected.*allowed keys: n_patients, shards"),
        ({"colour": 1}, r"'<root>'.*'colour'"),
        ({"cohort": {"n_patients": "many"}}, r"'cohort.n_patients': 'many' is not of type 'integer'"),
        ({"simulation": {"days": 1}}, r"'simulation.days': 1 is less than the minimum of 2"),
        ({"simulation": {"compat": "old"}}, r"'simulation.compat': 'old' is not one of"),
        ({"policy": {"gamma": -1}}, r"'policy.gamma'"),
        ({"device": "tpu"}, r"'device'"),
        ({"counterfactuals": {"regimens": [{"name": "a", "chemo": {"every_days": 0}}]}}, r"'counterfactuals.regimens\[0\].chemo.every_days'"),
        ({"counterfactuals": {"regimens": [{"name": "a"}, {"name": "a"}]}}, r"duplicate regimen name"),
        ({"counterfactuals": {"horizons_days": [60]}}, r"'counterfactuals.horizons_days\[0\]'.*expected < simulation.days"),
        ({"cohort": {"n_patients": 2, "shards": 3}}, r"'cohort.shards'"),
        ({"evaluate": {"models": [{"name": "oracle", "import": "a:b"}]}}, r"'evaluate.models'.*clash"),
        ({"evaluate": {"models": [{"name": "x", "import": "not a path"}]}}, r"'evaluate.models\[0\].import'"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(overrides=overrides)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("cohort: {n_patients: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_workflow_schema_is_the_package_schema():
    wf = (ROOT / "workflow" / "schemas" / "config.schema.yaml").resolve()
    pkg = (ROOT / "src" / "oncobench" / "data" / "config.schema.yaml").resolve()
    assert wf.read_text() == pkg.read_text()


def test_hash_is_stable_and_sensitive():
    a, b = load_config(), load_config()
    assert a.hash() == b.hash()
    assert load_config(overrides={"seed": 1}).hash() != a.hash()


def test_command_line_strings_are_read_as_yaml():
    from oncobench.config import prepare_workflow_config

    cfg = {"cohort": {"n_patients": "100", "shards": "2"}, "policy": {"gamma": ["0", "2.5"]}, "seed": 3,
           "simulation": {"compat": "reference"}, "tracking": {"release": "2024"}}
    prepare_workflow_config(cfg)
    assert cfg["cohort"] == {"n_patients": 100, "shards": 2}
    assert cfg["policy"]["gamma"] == [0, 2.5]
    assert cfg["tracking"]["release"] == "2024"  # a string where the schema wants one stays a string


def test_workflow_entry_check_exits_with_one_line():
    from oncobench.config import prepare_workflow_config

    with pytest.raises(SystemExit, match=r"^oncobench: invalid configuration: config key 'simulation.days'") as info:
        prepare_workflow_config({"simulation": {"days": "1"}})
    assert "\n" not in str(info.value.code)
