"""The release gate: summary and tracking refuse a non-passing verdict unless overridden."""

from __future__ import annotations

import pandas as pd
import pytest

from oncobench import io, schemas
from oncobench.config import ConfigError, load_config
from oncobench.inverse.gate import ReleaseRefused, check_release
from oncobench.io import Stamp


def _write_verdicts(results, verdicts: dict[str, str]) -> None:
    for g, v in verdicts.items():
        df = pd.DataFrame({"verdict": [v], "n_checks": [3], "n_failed": [int(v == "fail")], "reasons": ["sbc a ks_p = 0 (needs >= 0.01)" if v != "pass" else ""]})
        io.write_table(df, results / "verification" / f"gamma-{g}" / "verdict.parquet", schemas.Verdict, Stamp("h", 1))


def _cfg(**override):
    return load_config(overrides={"policy": {"gamma": [0, 4]}, "verify": {"override": override} if override else {}})


def test_all_pass_goes_through_unrecorded(tmp_path):
    _write_verdicts(tmp_path, {"0": "pass", "4": "pass"})
    gate = check_release(_cfg(), tmp_path)
    assert not gate.overridden and gate.lines() == []
    assert gate.tags()["oncobench.verify.gate"] == "passed"


@pytest.mark.parametrize("bad", ["fail", "inconclusive"])
def test_a_non_passing_branch_is_refused_with_its_reason(tmp_path, bad):
    _write_verdicts(tmp_path, {"0": "pass", "4": bad})
    with pytest.raises(ReleaseRefused, match=f"gamma 4 is '{bad}'.*sbc a ks_p.*verify.override.accept"):
        check_release(_cfg(), tmp_path)


def test_the_override_is_recorded(tmp_path):
    _write_verdicts(tmp_path, {"0": "fail", "4": "pass"})
    gate = check_release(_cfg(accept=True, reason="known SBC miss, issue 12"), tmp_path)
    assert gate.overridden
    tags = gate.tags()
    assert tags["oncobench.verify.gate"] == "overridden"
    assert tags["oncobench.verify.override_reason"] == "known SBC miss, issue 12"
    assert tags["oncobench.verdict.gamma0"] == "fail"
    assert "known SBC miss" in gate.lines()[0]


def test_an_override_needs_a_reason():
    with pytest.raises(ConfigError, match="verify.override.reason"):
        _cfg(accept=True)


def test_report_command_refuses_with_one_line(tmp_path, capsys):
    from oncobench.cli import main

    _write_verdicts(tmp_path, {"0": "fail", "4": "fail"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("policy: {gamma: [0, 4]}\n")
    rc = main(["report", "--config", str(cfg), "--results-dir", str(tmp_path), "--out", str(tmp_path / "s.md"), "--out-figure", str(tmp_path / "f.png")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "release refused by the verify gate" in err
    assert not (tmp_path / "s.md").exists()
