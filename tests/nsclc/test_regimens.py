"""Regimen library: the shipped YAML, its dense tensors, day-by-day expansion and bad files."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from oncobench.config import ConfigError
from oncobench.nsclc import regimens as rg
from oncobench.nsclc.regimens import DRUG_NAMES, REGIMEN_NAMES, RegimenLibrary, describe, expand, load_library


@pytest.fixture(scope="module")
def lib() -> RegimenLibrary:
    return load_library()


def _days_given(table: torch.Tensor, drug: str) -> list[int]:
    return torch.nonzero(table[:, DRUG_NAMES.index(drug)] > 0).flatten().tolist()


def _given_drugs(table: torch.Tensor) -> set[str]:
    return {DRUG_NAMES[d] for d in torch.nonzero((table > 0).any(dim=0)).flatten().tolist()}


# ---------------------------------------------------------------- the shipped library


def test_shipped_library_has_exactly_the_contract_regimens(lib):
    assert lib.names == REGIMEN_NAMES
    assert len(REGIMEN_NAMES) == 20
    assert lib.drugs == DRUG_NAMES
    assert all(lib.labels) and all(lib.sources)
    assert set(lib.lines) <= set(rg.LINES)
    assert lib.units == tuple(rg.DRUG_UNITS[d] for d in DRUG_NAMES)


def test_drug_axis_matches_contract():
    # docs/nsclc-contracts.md, "Drug axis", in order.
    assert DRUG_NAMES == (
        "cisplatin", "carboplatin", "pemetrexed", "paclitaxel", "docetaxel", "gemcitabine",
        "pembrolizumab", "nivolumab", "atezolizumab", "durvalumab", "gefitinib", "erlotinib",
        "osimertinib", "crizotinib", "alectinib", "thoracic_rt",
    )
    assert rg.DRUG_UNITS["carboplatin"] == "auc" and rg.DRUG_UNITS["thoracic_rt"] == "gy"


def test_tensor_dtypes_and_shapes(lib):
    r, d = len(lib.names), len(DRUG_NAMES)
    assert lib.dose.dtype == torch.float64 and lib.dose.shape[0] == r and lib.dose.shape[3] == d
    assert lib.dose.shape[1] == 2  # induction + maintenance is the longest
    assert lib.dose.shape[2] == 42  # chemoradiation's 42-day phase is the longest cycle
    for name in ("n_phases", "cycle_days", "cycles", "drug_max_cycles", "max_delay_days", "max_treatment_days"):
        assert getattr(lib, name).dtype == torch.int64
    assert lib.fn_dose_factor.dtype == torch.float64 and lib.hold_anc_below_1e9_per_l.dtype == torch.float64
    # No dose beyond a phase's cycle length, no dose in a phase that does not exist.
    days = torch.arange(lib.dose.shape[2])
    outside = days[None, None, :] >= lib.cycle_days[:, :, None]
    assert not (lib.dose > 0)[outside].any()


def test_carboplatin_pemetrexed_event_table(lib):
    table = expand(lib, "carboplatin_pemetrexed", 400)
    assert _days_given(table, "carboplatin") == [0, 21, 42, 63]
    assert table[[0, 21, 42, 63], DRUG_NAMES.index("carboplatin")].tolist() == [5.0] * 4
    assert _days_given(table, "pemetrexed") == list(range(0, 400, 21))
    assert set(table[:, DRUG_NAMES.index("pemetrexed")].unique().tolist()) == {0.0, 500.0}
    assert _given_drugs(table) == {"carboplatin", "pemetrexed"}


def test_progression_stops_dosing_that_day(lib):
    table = expand(lib, "carboplatin_pemetrexed", 400, progression_day=84)
    assert _days_given(table, "pemetrexed") == [0, 21, 42, 63]
    table = expand(lib, "carboplatin_pemetrexed", 400, progression_day=85)
    assert _days_given(table, "pemetrexed") == [0, 21, 42, 63, 84]
    assert not expand(lib, "osimertinib", 50, progression_day=0).any()


@pytest.mark.parametrize("name", ["pembrolizumab_carboplatin_pemetrexed", "pembrolizumab_cisplatin_pemetrexed"])
def test_pembrolizumab_chemo_caps_pembrolizumab_at_35(lib, name):
    table = expand(lib, name, 1500)
    assert _days_given(table, "pembrolizumab") == [21 * k for k in range(35)]
    assert _days_given(table, "pemetrexed") == list(range(0, 1500, 21))  # maintenance goes on
    platinum = "carboplatin" if "carboplatin" in name else "cisplatin"
    assert _days_given(table, platinum) == [0, 21, 42, 63]


def test_keynote_407_regimen(lib):
    table = expand(lib, "pembrolizumab_carboplatin_paclitaxel", 1500)
    assert _days_given(table, "pembrolizumab") == [21 * k for k in range(35)]
    assert _days_given(table, "paclitaxel") == [0, 21, 42, 63]
    assert table[0, DRUG_NAMES.index("carboplatin")] == 6.0
    assert table[0, DRUG_NAMES.index("paclitaxel")] == 200.0
    assert not table[35 * 21:].any()


def test_pembrolizumab_monotherapy_35_cycles_within_24_months(lib):
    table = expand(lib, "pembrolizumab", 1500)
    assert _days_given(table, "pembrolizumab") == [21 * k for k in range(35)]
    assert int(lib.max_treatment_days[lib.index("pembrolizumab")]) == 730


def test_chemoradiation_60_gy_in_30_fractions_with_weekly_chemo(lib):
    table = expand(lib, "chemoradiation", 100)
    rt = table[:, DRUG_NAMES.index("thoracic_rt")]
    fractions = _days_given(table, "thoracic_rt")
    assert len(fractions) == 30
    assert rt.sum().item() == pytest.approx(60.0)
    assert set(rt[rt > 0].tolist()) == {2.0}
    # Monday-Friday for six weeks: day 0 is a Monday.
    assert fractions == [7 * w + d for w in range(6) for d in range(5)]
    weekly = [0, 7, 14, 21, 28, 35]
    assert _days_given(table, "carboplatin") == weekly
    assert _days_given(table, "paclitaxel") == weekly
    assert table[weekly, DRUG_NAMES.index("carboplatin")].tolist() == [2.0] * 6
    assert table[weekly, DRUG_NAMES.index("paclitaxel")].tolist() == [45.0] * 6
    assert not table[42:].any()


def test_durvalumab_26_doses_over_12_months(lib):
    table = expand(lib, "durvalumab_consolidation", 800)
    days = _days_given(table, "durvalumab")
    assert days == [14 * k for k in range(26)]
    assert days[-1] < 365
    assert set(table[days, DRUG_NAMES.index("durvalumab")].tolist()) == {10.0}


def test_docetaxel_rule_tensors(lib):
    r = lib.index("docetaxel")
    assert lib.hold_anc_below_1e9_per_l[r].item() == pytest.approx(1.5)  # 1500/mm3
    assert lib.max_delay_days[r].item() == 21
    factor = lib.fn_dose_factor[r]
    dtx = DRUG_NAMES.index("docetaxel")
    assert factor[dtx].item() == pytest.approx(0.733)
    assert 75 * factor[dtx].item() == pytest.approx(55, abs=0.05)  # brief §2: 75 -> 55 mg/m2
    others = torch.ones(len(DRUG_NAMES), dtype=torch.bool)
    others[dtx] = False
    assert torch.all(factor[others] == 1.0)
    assert lib.cycles[r, 0].item() == rg.UNLIMITED
    assert _days_given(expand(lib, "docetaxel", 100), "docetaxel") == [0, 21, 42, 63, 84]
    # Only docetaxel carries a febrile-neutropenia reduction in the shipped library.
    rows = torch.ones(len(lib), dtype=torch.bool)
    rows[r] = False
    assert torch.all(lib.fn_dose_factor[rows] == 1.0)


def test_oral_drugs_daily_totals(lib):
    expected = {"gefitinib": 250, "erlotinib": 150, "osimertinib": 80, "crizotinib": 500, "alectinib": 1200}
    for drug, daily in expected.items():
        table = expand(lib, drug, 100)
        assert torch.all(table[:, DRUG_NAMES.index(drug)] == daily), drug
        assert _given_drugs(table) == {drug}


def test_immunotherapy_schedules(lib):
    assert _days_given(expand(lib, "nivolumab", 100), "nivolumab") == list(range(0, 100, 14))
    assert expand(lib, "nivolumab", 1)[0, DRUG_NAMES.index("nivolumab")] == 3.0
    assert _days_given(expand(lib, "atezolizumab", 100), "atezolizumab") == list(range(0, 100, 21))


def test_gemcitabine_doublets(lib):
    for name, platinum, gem in (("cisplatin_gemcitabine", "cisplatin", 1250.0), ("carboplatin_gemcitabine", "carboplatin", 1000.0)):
        table = expand(lib, name, 200)
        assert _days_given(table, "gemcitabine") == [0, 7, 21, 28, 42, 49, 63, 70]
        assert _days_given(table, platinum) == [0, 21, 42, 63]
        assert table[7, DRUG_NAMES.index("gemcitabine")] == gem


def test_best_supportive_care_gives_nothing(lib):
    r = lib.index("best_supportive_care")
    assert lib.n_phases[r].item() == 0
    assert not expand(lib, "best_supportive_care", 30).any()
    assert not lib.drug_mask("best_supportive_care").any()
    assert "no anticancer treatment" in describe(lib, "best_supportive_care")


def _reference_expand(lib: RegimenLibrary, r: int, days: int) -> list[list[float]]:
    """An independent day-by-day walk of the tensors: phase, cycle and cycle day per day."""
    dose = lib.dose[r].tolist()
    caps = lib.drug_max_cycles[r].tolist()
    out = [[0.0] * len(lib.drugs) for _ in range(days)]
    stop = days if lib.max_treatment_days[r] < 0 else min(days, int(lib.max_treatment_days[r]))
    p, cycle, cday = 0, 0, 0
    for t in range(stop):
        if p >= int(lib.n_phases[r]):
            break
        for d in range(len(lib.drugs)):
            if caps[p][d] < 0 or cycle < caps[p][d]:
                out[t][d] = dose[p][cday][d]
        cday += 1
        if cday == int(lib.cycle_days[r, p]):
            cday, cycle = 0, cycle + 1
            if cycle == int(lib.cycles[r, p]):
                p, cycle = p + 1, 0
    return out


def test_dense_tensors_agree_with_expand(lib):
    for r, name in enumerate(lib.names):
        table = expand(lib, name, 800)
        assert table.tolist() == _reference_expand(lib, r, 800), name
        assert torch.equal(lib.drug_mask(name), (table > 0).any(dim=0)), name
        if lib.n_phases[r] > 0:
            length = int(lib.cycle_days[r, 0])
            assert torch.equal(table[:length], lib.dose[r, 0, :length]), name


def test_index_subset_indices_and_to(lib):
    sub = lib.subset(["docetaxel", "pembrolizumab"])
    assert sub.names == ("docetaxel", "pembrolizumab")
    assert torch.equal(sub.dose[1], lib.dose[lib.index("pembrolizumab")])
    assert torch.equal(sub.fn_dose_factor[0], lib.fn_dose_factor[lib.index("docetaxel")])
    assert sub.labels[0] == lib.labels[lib.index("docetaxel")]
    assert torch.equal(expand(sub, "docetaxel", 100), expand(lib, "docetaxel", 100))
    assert lib.indices(["osimertinib", "best_supportive_care"]).tolist() == [REGIMEN_NAMES.index("osimertinib"), 0]
    with pytest.raises(KeyError, match="not in the library.*docetaxel"):
        lib.index("vinorelbine")
    moved = lib.to("cpu")
    assert moved.names == lib.names and torch.equal(moved.dose, lib.dose)


def test_drug_mask(lib):
    mask = lib.drug_mask("pembrolizumab_carboplatin_pemetrexed")
    assert {DRUG_NAMES[i] for i in torch.nonzero(mask).flatten().tolist()} == {"carboplatin", "pemetrexed", "pembrolizumab"}
    assert mask.dtype == torch.bool and mask.shape == (len(DRUG_NAMES),)


def test_describe_reads_as_a_schedule(lib):
    text = describe(lib, "chemoradiation")
    assert "thoracic_rt 2 Gy on days 1-5, 8-12, 15-19, 22-26, 29-33, 36-40" in text
    assert "carboplatin AUC 2 on days 1, 8, 15, 22, 29, 36" in text
    text = describe(lib, "docetaxel")
    assert "until progression" in text and "ANC >= 1500/mm3" in text and "x0.733" in text
    assert "first 31 cycles only" in describe(lib, "pembrolizumab_carboplatin_pemetrexed")
    assert "osimertinib 80 mg every day" in describe(lib, "osimertinib")


@pytest.mark.gpu
def test_library_moves_to_gpu(lib):
    gpu = lib.to("cuda")
    assert gpu.dose.is_cuda and gpu.indices(["docetaxel"]).is_cuda
    assert torch.equal(expand(gpu, "chemoradiation", 60).cpu(), expand(lib, "chemoradiation", 60))


# ---------------------------------------------------------------- bad files

VALID = {
    "regimens": {
        "test_regimen": {
            "label": "test",
            "source": "test",
            "phases": [
                {
                    "name": "induction",
                    "cycle_days": 21,
                    "cycles": 4,
                    "doses": [
                        {"drug": "carboplatin", "dose": 5, "unit": "auc", "days": [1]},
                        {"drug": "pemetrexed", "dose": 500, "unit": "mg_per_m2", "days": [1]},
                    ],
                },
                {
                    "name": "maintenance",
                    "cycle_days": 21,
                    "cycles": "until_progression",
                    "doses": [{"drug": "pemetrexed", "dose": 500, "unit": "mg_per_m2", "days": [1], "max_cycles": None}],
                },
            ],
            "rules": {"hold_if_anc_below_per_mm3": 1500, "reduce_after_febrile_neutropenia": {"pemetrexed": 0.75}},
        }
    }
}


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "my_regimens.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_valid_user_file_loads(tmp_path):
    lib = load_library(_write(tmp_path, VALID))
    assert lib.names == ("test_regimen",)
    assert lib.lines == ("any",)
    table = expand(lib, "test_regimen", 100)
    assert _days_given(table, "pemetrexed") == [0, 21, 42, 63, 84]
    assert lib.fn_dose_factor[0, DRUG_NAMES.index("pemetrexed")].item() == 0.75


def _set(path: str, value):
    """A mutation of VALID: set the key at the dotted path (list indices as ints)."""

    def mutate(data):
        *parents, last = path.split(".")
        node = data["regimens"]["test_regimen"]
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()

BAD = {
    "unknown regimen key": (_set("dose_units", "mg"), "dose_units"),
    "missing label": (_set("label", _DELETE), "label"),
    "bad line": (_set("line", "third"), "line"),
    "phases not a list": (_set("phases", {"name": "x"}), "phases"),
    "unknown phase key": (_set("phases.0.cycle_length", 21), "phases[0].cycle_length"),
    "unknown dose key": (_set("phases.0.doses.0.route", "iv"), "phases[0].doses[0].route"),
    "unknown drug": (_set("phases.0.doses.0.drug", "vinorelbine"), "phases[0].doses[0].drug"),
    "wrong unit": (_set("phases.0.doses.0.unit", "mg"), "phases[0].doses[0].unit"),
    "day zero": (_set("phases.0.doses.0.days", [0]), "phases[0].doses[0].days"),
    "day past cycle": (_set("phases.0.doses.1.days", [1, 22]), "phases[0].doses[1].days"),
    "repeated day": (_set("phases.0.doses.1.days", [1, 1]), "phases[0].doses[1].days"),
    "negative dose": (_set("phases.0.doses.0.dose", -5), "phases[0].doses[0].dose"),
    "cycles zero": (_set("phases.0.cycles", 0), "phases[0].cycles"),
    "cycles text": (_set("phases.0.cycles", "forever"), "phases[0].cycles"),
    "cycles float": (_set("phases.0.cycles", 1.5), "phases[0].cycles"),
    "cycle_days zero": (_set("phases.0.cycle_days", 0), "phases[0].cycle_days"),
    "progression not last": (_set("phases.0.cycles", "until_progression"), "phases[0].cycles"),
    "duplicate drug": (_set("phases.0.doses.1", {"drug": "carboplatin", "dose": 6, "unit": "auc", "days": [1]}), "phases[0].doses[1].drug"),
    "duplicate phase name": (_set("phases.1.name", "induction"), "phases[1].name"),
    "max_cycles over cycles": (_set("phases.0.doses.0.max_cycles", 5), "phases[0].doses[0].max_cycles"),
    "max_cycles zero": (_set("phases.1.doses.0.max_cycles", 0), "phases[1].doses[0].max_cycles"),
    "empty doses": (_set("phases.0.doses", []), "phases[0].doses"),
    "unknown rule": (_set("rules.max_cycles", 6), "rules.max_cycles"),
    "reduction zero": (_set("rules.reduce_after_febrile_neutropenia", {"pemetrexed": 0}), "rules.reduce_after_febrile_neutropenia.pemetrexed"),
    "reduction above one": (_set("rules.reduce_after_febrile_neutropenia", {"pemetrexed": 1.2}), "rules.reduce_after_febrile_neutropenia.pemetrexed"),
    "reduction of a drug not given": (_set("rules.reduce_after_febrile_neutropenia", {"docetaxel": 0.733}), "rules.reduce_after_febrile_neutropenia.docetaxel"),
    "ANC in 1e9/L": (_set("rules.hold_if_anc_below_per_mm3", 1.5), "rules.hold_if_anc_below_per_mm3"),
    "negative delay": (_set("rules.max_delay_days", -1), "rules.max_delay_days"),
    "treatment days zero": (_set("rules.max_treatment_days", 0), "rules.max_treatment_days"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_yaml_raises_one_line_config_error(tmp_path, case):
    mutate, key = BAD[case]
    data = copy.deepcopy(VALID)
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_library(path)
    message = str(info.value)
    assert str(path) in message
    assert "regimen 'test_regimen'" in message
    assert f"key '{key}'" in message
    assert "expected" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("regimens:\n  a:\n    label: x\n  a:\n    label: y\n", "key 'a' repeated on line 4"),
        ("regimen:\n  a: {}\n", "expected the single key 'regimens'"),
        ("regimens: []\n", "key 'regimens'"),
        ("regimens: {Bad-Name: {}}\n", "'Bad-Name'"),
        ("regimens: {a: [1, 2}\n", "not valid YAML"),
    ],
)
def test_bad_file_structure(tmp_path, text, fragment):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_library(path)
    assert str(path) in str(info.value) and fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_library(tmp_path / "absent.yaml")
