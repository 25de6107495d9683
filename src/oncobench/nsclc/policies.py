"""First-line treatment choice: guideline care, clinical eligibility, and a confounded historical policy.

Guideline care follows the biomarker-driven first-line algorithm the shipped trials established:
EGFR ex19del/L858R → osimertinib (FLAURA); ALK → alectinib (ALEX); PD-L1 TPS ≥ 50% →
pembrolizumab (KEYNOTE-024); otherwise pembrolizumab with platinum-pemetrexed for non-squamous
(KEYNOTE-189) or with carboplatin-paclitaxel for squamous histology (KEYNOTE-407).

The historical (observational) policy chooses among the clinically eligible regimens with
probabilities ``softmax(gamma * score)``: the score favours the guideline regimen and steers
patients with a poor prognosis (ECOG, tumour burden, age) away from chemotherapy. ``gamma = 0``
is a randomised allocation among eligible regimens; a larger ``gamma`` makes the choice depend
on prognosis, so a model that learns from factual data meets confounding by indication.
"""

from __future__ import annotations

import torch

from oncobench import rng
from oncobench.nsclc import population as popmod
from oncobench.nsclc.drugs import CYTOTOXIC_CLASSES, DRUGS
from oncobench.nsclc.latent import ModelStream
from oncobench.nsclc.regimens import RegimenLibrary

EGFR_CLASSES = ("egfr_tki_1g", "egfr_tki_3g")
ALK_CLASSES = ("alk_tki_1g", "alk_tki_2g")


def _classes(library: RegimenLibrary, name: str) -> set[str]:
    mask = library.drug_mask(name)
    return {DRUGS[d].drug_class for d, m in zip(library.drugs, mask.tolist()) if m}


GUIDELINE_REGIMENS = (
    "osimertinib",
    "alectinib",
    "pembrolizumab",
    "pembrolizumab_carboplatin_paclitaxel",
    "pembrolizumab_carboplatin_pemetrexed",
)


def guideline_index(pop: popmod.Population) -> torch.Tensor:
    """Index into :data:`GUIDELINE_REGIMENS` of each patient's guideline regimen (module docstring)."""
    egfr = pop.egfr != popmod.EGFR.index("wild_type")
    alk = pop.alk.bool()
    high = pop.pdl1_group == popmod.PDL1_GROUPS.index(">=50%")
    squamous = pop.histology == popmod.HISTOLOGIES.index("squamous")
    idx = torch.where(squamous, 3, 4)
    idx = torch.where(high, 2, idx)
    idx = torch.where(alk, 1, idx)
    return torch.where(egfr, 0, idx).to(torch.int64)


def guideline_names(pop: popmod.Population) -> list[str]:
    """The guideline first-line regimen of each patient, by name."""
    return [GUIDELINE_REGIMENS[i] for i in guideline_index(pop).tolist()]


def eligible(pop: popmod.Population, library: RegimenLibrary, regimens: tuple[str, ...]) -> torch.Tensor:
    """(patients, regimens) bool: targeted therapy needs its target; pemetrexed is for non-squamous.

    Pemetrexed is indicated for non-squamous NSCLC only (ALIMTA USPI).
    """
    egfr = pop.egfr != popmod.EGFR.index("wild_type")
    alk = pop.alk.bool()
    squamous = pop.histology == popmod.HISTOLOGIES.index("squamous")
    cols = []
    for r in regimens:
        cls = _classes(library, r)
        ok = torch.ones_like(egfr)
        if cls & set(EGFR_CLASSES):
            ok = ok & egfr
        if cls & set(ALK_CLASSES):
            ok = ok & alk
        if "pemetrexed" in [d for d, m in zip(library.drugs, library.drug_mask(r).tolist()) if m]:
            ok = ok & ~squamous
        cols.append(ok)
    return torch.stack(cols, dim=1)


def prognosis_score(pop: popmod.Population, baseline_sld_mm: torch.Tensor) -> torch.Tensor:
    """A clinician's prognosis score from observables (higher = worse): ECOG, burden, age."""
    return 0.8 * pop.ecog.to(torch.float64) + torch.log(baseline_sld_mm / 70.0) + (pop.age_years - 68.0) / 10.0


def historical_choice(
    pop: popmod.Population,
    baseline_sld_mm: torch.Tensor,
    library: RegimenLibrary,
    regimens: tuple[str, ...],
    *,
    gamma: float,
    seed: int,
) -> torch.Tensor:
    """Index into ``regimens`` of each patient's factual first-line regimen (module docstring).

    The measured baseline diameter sum is an observable a clinician sees; the draw uses the
    ALLOCATION stream keyed by patient, so a patient's choice does not depend on the cohort.
    """
    elig = eligible(pop, library, regimens)
    # column of each guideline regimen among ``regimens`` (-1 where it is not offered)
    column = torch.tensor([regimens.index(g) if g in regimens else -1 for g in GUIDELINE_REGIMENS], device=elig.device)
    is_guide = column[guideline_index(pop)].unsqueeze(1) == torch.arange(len(regimens), device=elig.device)
    chemo = torch.tensor(
        [bool(_classes(library, r) & set(CYTOTOXIC_CLASSES)) for r in regimens], dtype=torch.float64, device=elig.device
    )
    risk = prognosis_score(pop, baseline_sld_mm)
    score = is_guide.to(torch.float64) - 0.5 * risk.unsqueeze(1) * chemo
    logits = torch.where(elig, gamma * score, torch.full_like(score, -torch.inf))
    p = torch.softmax(logits, dim=1)
    u = rng.uniform(rng.patient_keys(seed, ModelStream.ALLOCATION, pop.patient_id), int(round(gamma * 1000)))
    cdf = torch.cumsum(p, dim=1)
    idx = torch.searchsorted(cdf, u.unsqueeze(1).contiguous(), right=True).squeeze(1)
    return idx.clamp(max=len(regimens) - 1)
