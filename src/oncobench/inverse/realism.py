"""Realism: a classifier two-sample test between the release and a reference data set, and the
classifiers that recover discrete latents and treatments from what a clinic observes.

C2ST (Lopez-Paz & Oquab 2017): a classifier is trained to tell release patients from reference
patients on per-patient summary features; under "same distribution" its cross-validated accuracy
is about N(1/2, 1/(4n)) for n patients in all, so the gate is 1/2 + z / (2 sqrt(n)). A
permutation null (labels shuffled, sklearn's ``permutation_test_score``) is reported beside it
and drawn in the figure. Gradient-boosted trees (sklearn) serve as the classifier: they need no
feature scaling and find the non-linear differences (a missing noise floor, a sign error) that a
linear model would miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, permutation_test_score

from oncobench.inverse.checks import Check

CV_FOLDS = 5
BOOTSTRAP = 500


def _classifier(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, random_state=seed)


@dataclass(frozen=True)
class Realism:
    accuracy: float
    threshold: float
    null: np.ndarray  # accuracies under shuffled labels
    p_value: float
    n_release: int
    n_reference: int
    features: tuple[str, ...]

    def checks(self, subject: str) -> list[Check]:
        return [
            Check("realism_c2st", subject, "accuracy", self.accuracy, self.threshold, "<="),
            Check("realism_c2st", subject, "permutation_p", self.p_value),
            Check("realism_c2st", subject, "null_q95", float(np.quantile(self.null, 0.95)) if len(self.null) else float("nan")),
            Check("realism_c2st", subject, "patients", float(self.n_release + self.n_reference)),
        ]

    def frame(self, subject: str) -> pd.DataFrame:
        """The accuracy and its null draws (schema RealismNull)."""
        return pd.DataFrame(
            {
                "subject": subject,
                "kind": ["observed"] + ["permutation"] * len(self.null),
                "accuracy": np.concatenate([[self.accuracy], self.null]).astype(np.float64),
                "threshold": self.threshold,
            }
        )


def _matrix(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return df[columns].to_numpy(dtype=np.float64)


def c2st(release: pd.DataFrame, reference: pd.DataFrame, *, seed: int, permutations: int, z: float) -> Realism:
    """Cross-validated accuracy of telling ``release`` rows from ``reference`` rows.

    Raises:
        ValueError: if the two tables do not share their summary columns, or hold non-finite
            values (a reference file with a broken column names it here).
    """
    columns = list(release.columns)
    missing = [c for c in columns if c not in reference.columns]
    if missing:
        raise ValueError(f"realism reference lacks summary column(s) {missing}; it has {list(reference.columns)}")
    X = np.vstack([_matrix(release, columns), _matrix(reference, columns)])
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        raise ValueError(f"realism summary column(s) {[c for c, b in zip(columns, bad) if b]} hold non-finite values")
    y = np.r_[np.zeros(len(release), dtype=int), np.ones(len(reference), dtype=int)]
    cv = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
    if permutations > 0:
        score, null, p = permutation_test_score(
            _classifier(seed), X, y, cv=cv, n_permutations=permutations, random_state=seed, scoring="accuracy", n_jobs=1,
        )
    else:
        score, null, p = cross_val_score(_classifier(seed), X, y, cv=cv, scoring="accuracy").mean(), np.array([]), float("nan")
    n = len(y)
    # a balanced design's null accuracy is 1/2; with unequal sizes the majority rate is the floor
    base = max(len(release), len(reference)) / n
    return Realism(
        accuracy=float(score), threshold=base + z / (2.0 * math.sqrt(n)), null=np.asarray(null, dtype=np.float64),
        p_value=float(p), n_release=len(release), n_reference=len(reference), features=tuple(columns),
    )


@dataclass(frozen=True)
class Recovered:
    """A discrete quantity (a latent class or the treatment given) recovered from x."""

    name: str
    classes: tuple[str, ...]
    f1: np.ndarray  # per class
    support: np.ndarray  # per class, in the evaluated rows
    accuracy: float
    majority: float
    macro_f1: float
    chance_macro_f1: float
    margin_low: float  # lower 95% bootstrap bound of macro F1 - chance macro F1

    def checks(self, check: str, *, gated: bool, z_label: str = "") -> list[Check]:
        out = [
            Check(check, self.name, "macro_f1_minus_chance_ci_low", self.margin_low, 0.0, ">" if gated else None),
            Check(check, self.name, "macro_f1", self.macro_f1),
            Check(check, self.name, "chance_macro_f1", self.chance_macro_f1),
            Check(check, self.name, "accuracy", self.accuracy),
            Check(check, self.name, "majority_rate", self.majority),
        ]
        for c, f, s in zip(self.classes, self.f1, self.support):
            if s > 0:
                out.append(Check(check, f"{self.name}={c}", "f1", float(f)))
        return out


def _macro_f1_and_chance(truth: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float]:
    """Macro F1 over the classes present, and that of a classifier whose predictions have the
    same class shares but carry no information (F1_c = 2 p_c q_c / (p_c + q_c))."""
    present = np.bincount(truth, minlength=k) > 0
    f1 = f1_score(truth, pred, labels=np.arange(k), average=None, zero_division=0.0)
    p = np.bincount(truth, minlength=k) / len(truth)
    q = np.bincount(pred, minlength=k) / len(pred)
    chance = np.where(p + q > 0, 2 * p * q / np.maximum(p + q, 1e-12), 0.0)
    return float(f1[present].mean()), float(chance[present].mean())


def recover_class(
    name: str, classes: tuple[str, ...], x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
    y_test: np.ndarray, *, seed: int,
) -> Recovered:
    """Train on simulated patients, predict the held-out ones, score with a bootstrap margin."""
    k = len(classes)
    keep = y_train >= 0
    clf = _classifier(seed).fit(x_train[keep], y_train[keep])
    ok = y_test >= 0
    truth, pred = y_test[ok], clf.predict(x_test[ok]).astype(int)
    f1 = f1_score(truth, pred, labels=np.arange(k), average=None, zero_division=0.0)
    macro, chance = _macro_f1_and_chance(truth, pred, k)
    rng = np.random.default_rng(seed)
    margins = np.empty(BOOTSTRAP)
    for b in range(BOOTSTRAP):
        i = rng.integers(0, len(truth), len(truth))
        m, c = _macro_f1_and_chance(truth[i], pred[i], k)
        margins[b] = m - c
    return Recovered(
        name=name, classes=classes, f1=f1, support=np.bincount(truth, minlength=k), accuracy=float((truth == pred).mean()),
        majority=float(np.bincount(truth, minlength=k).max() / len(truth)), macro_f1=macro, chance_macro_f1=chance,
        margin_low=float(np.quantile(margins, 0.025)),
    )


__all__ = ["BOOTSTRAP", "CV_FOLDS", "Realism", "Recovered", "c2st", "recover_class"]
