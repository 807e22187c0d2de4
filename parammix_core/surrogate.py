"""Surrogates: learn mixture -> score from the evaluated merges, so the search can score
thousands of mixtures without merging them.

One LightGBM regressor per target (a benchmark, a capability group or a domain loss), sized for
what merge_and_evaluate produces: ~50-500 mixtures over K = 2..10 domains. Beside it a linear
model on the same inputs: a surrogate is only worth its trees if it beats that baseline in
cross-validation, so both are scored on the same shuffled K folds (out-of-fold R², Spearman,
Pearson). The final models are fitted on all rows.

A `SurrogateSet` serialises to plain JSON (LightGBM's text model format, linear coefficients as
lists) - never pickle - and predicts identically after a round trip: fresh and loaded sets go
through the same `Booster.predict` and the same matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import lightgbm
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from parammix_core.simplex import TOLERANCE

FORMAT = "parammix.surrogates/1"
RIDGE_ALPHA = 1e-3  # a whisker of shrinkage: simplex inputs are collinear with the intercept


class SurrogateError(ValueError):
    """Inputs a surrogate cannot be fitted on or predict from, or a bad serialised set."""


MIN_CHILD_SAMPLES = 5  # rows per leaf: a table of fewer than twice this gets no split


def lightgbm_params(seed: int) -> dict:
    """Settings for ~50-500 rows and a handful of inputs: small trees, many slow steps.

    Single-threaded and deterministic so the same rows and seed give the same model
    anywhere (the flow runs many tasks at once; threads inside each only contend).
    """
    return {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "num_leaves": 8,
        "min_child_samples": MIN_CHILD_SAMPLES,
        "min_data_in_bin": 1,  # the default 3 merges distinct weights when rows are few
        "reg_lambda": 1.0,
        "random_state": seed,
        "deterministic": True,
        "force_col_wise": True,
        "n_jobs": 1,
        "verbose": -1,
    }


@dataclass
class LinearModel:
    """y = X @ coef + intercept; stored as numbers so it round-trips through JSON exactly."""

    coef: np.ndarray  # (K,)
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept  # (N,)


@dataclass
class SurrogateSet:
    """Fitted surrogates for several targets over the same K mixture weights.

    Attributes:
        targets: target names, in fitting order.
        n_inputs: K, the number of domain weights per mixture.
        boosters: target -> LightGBM booster fitted on all rows.
        linear: target -> linear baseline fitted on all rows.
        cv: target -> {r2, spearman, pearson, r2_linear, spearman_linear, pearson_linear}
            from out-of-fold predictions (NaN where undefined, e.g. a constant target).
        oof: target -> out-of-fold LightGBM predictions, shape (N,), in the rows' order.
        params: the LightGBM settings (for the record).
    """

    targets: list[str]
    n_inputs: int
    boosters: dict[str, lightgbm.Booster]
    linear: dict[str, LinearModel]
    cv: dict[str, dict[str, float]]
    oof: dict[str, np.ndarray]
    params: dict

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """LightGBM predictions per target for mixtures x (N, K); each (N,)."""
        x = self._check(x)
        return {t: self.boosters[t].predict(x, num_threads=1) for t in self.targets}

    def uses_linear(self, target: str) -> bool:
        """The linear baseline predicts `target` better out of fold (higher R²) than
        LightGBM: then it is the one the choice trusts."""
        cv = self.cv[target]
        return bool(cv.get("r2_linear", -np.inf) > cv.get("r2", -np.inf))

    def predict_best(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per target, the prediction of the model that wins cross-validation."""
        lgbm, linear = self.predict(x), self.predict_linear(x)
        return {t: linear[t] if self.uses_linear(t) else lgbm[t] for t in self.targets}

    def predict_linear(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Linear-baseline predictions per target for mixtures x (N, K); each (N,)."""
        x = self._check(x)
        return {t: self.linear[t].predict(x) for t in self.targets}

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise SurrogateError(
                f"mixtures have shape {x.shape}; the surrogates take (N, {self.n_inputs})"
            )
        if not np.isfinite(x).all():
            raise SurrogateError("mixtures contain NaN or inf")
        return x

    def to_json(self) -> dict:
        """Plain-JSON form: text LightGBM models, coefficients and CV numbers as lists/floats."""
        return {
            "format": FORMAT,
            "targets": list(self.targets),
            "n_inputs": self.n_inputs,
            "params": dict(self.params),
            "lightgbm": {t: self.boosters[t].model_to_string() for t in self.targets},
            "linear": {
                t: {"coef": self.linear[t].coef.tolist(), "intercept": self.linear[t].intercept}
                for t in self.targets
            },
            "cv": {t: {k: _json_float(v) for k, v in m.items()} for t, m in self.cv.items()},
            "oof": {t: self.oof[t].tolist() for t in self.targets},
        }

    @classmethod
    def from_json(cls, d: dict) -> SurrogateSet:
        """Inverse of `to_json`; the error names the missing key or target."""
        if d.get("format") != FORMAT:
            raise SurrogateError(
                f"not a surrogate set: format is {d.get('format')!r}, not {FORMAT}"
            )
        keys = ("targets", "n_inputs", "params", "lightgbm", "linear", "cv", "oof")
        missing = [k for k in keys if k not in d]
        if missing:
            raise SurrogateError(f"surrogate set JSON lacks key(s) {missing}")
        targets = list(d["targets"])
        for part in ("lightgbm", "linear", "cv", "oof"):
            absent = [t for t in targets if t not in d[part]]
            if absent:
                raise SurrogateError(f"surrogate set JSON: '{part}' lacks target(s) {absent}")
        return cls(
            targets=targets,
            n_inputs=int(d["n_inputs"]),
            boosters={t: lightgbm.Booster(model_str=d["lightgbm"][t]) for t in targets},
            linear={
                t: LinearModel(
                    coef=np.asarray(d["linear"][t]["coef"], dtype=float),
                    intercept=float(d["linear"][t]["intercept"]),
                )
                for t in targets
            },
            cv={t: {k: _from_json_float(v) for k, v in d["cv"][t].items()} for t in targets},
            oof={t: np.asarray(d["oof"][t], dtype=float) for t in targets},
            params=dict(d["params"]),
        )


def fit_surrogates(
    x: np.ndarray, targets: dict[str, np.ndarray], folds: int, seed: int
) -> SurrogateSet:
    """Fit LightGBM and a linear baseline per target; score both by K-fold CV.

    Args:
        x: mixtures, shape (N, K), each row on the simplex.
        targets: name -> measured values, each shape (N,), finite.
        folds: CV folds (shuffled with `seed`); needs N >= folds >= 2.
        seed: seeds the fold split and LightGBM.
    """
    x = _check_inputs(x, targets, folds)
    params = lightgbm_params(seed)
    splits = list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(x))
    boosters: dict[str, lightgbm.Booster] = {}
    linear: dict[str, LinearModel] = {}
    cv: dict[str, dict[str, float]] = {}
    oof: dict[str, np.ndarray] = {}
    for name, raw in targets.items():
        y = np.asarray(raw, dtype=float)  # (N,)
        pred = np.empty_like(y)
        pred_linear = np.empty_like(y)
        for train, test in splits:
            pred[test] = _fit_lightgbm(x[train], y[train], params).predict(x[test], num_threads=1)
            pred_linear[test] = _fit_linear(x[train], y[train]).predict(x[test])
        boosters[name] = _fit_lightgbm(x, y, params)
        linear[name] = _fit_linear(x, y)
        oof[name] = pred
        scores = _scores(y, pred)
        scores.update({f"{k}_linear": v for k, v in _scores(y, pred_linear).items()})
        cv[name] = scores
    return SurrogateSet(
        targets=list(targets),
        n_inputs=x.shape[1],
        boosters=boosters,
        linear=linear,
        cv=cv,
        oof=oof,
        params=params,
    )


def _check_inputs(x: np.ndarray, targets: dict[str, np.ndarray], folds: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] < 1:
        raise SurrogateError(f"mixtures must have shape (N, K); got {x.shape}")
    n = x.shape[0]
    if folds < 2:
        raise SurrogateError(f"cv folds must be at least 2; got {folds}")
    smallest_train = n - -(-n // folds)  # rows left to fit on when the largest fold is held out
    if n < folds or smallest_train < 2:
        raise SurrogateError(
            f"{n} mixture(s) are too few for {folds}-fold cross-validation (each fit needs 2 "
            "rows): raise search.n_mixtures or lower search.cv_folds"
        )
    bad = ~np.isfinite(x).all(axis=1) | (x < -TOLERANCE).any(axis=1)
    bad |= np.abs(x.sum(axis=1) - 1.0) > TOLERANCE
    if bad.any():
        rows = np.flatnonzero(bad)
        raise SurrogateError(
            f"mixture row(s) {rows[:10].tolist()} are not on the simplex "
            f"(e.g. row {rows[0]}: {x[rows[0]].tolist()})"
        )
    if not targets:
        raise SurrogateError("no targets to fit")
    for name, y in targets.items():
        y = np.asarray(y, dtype=float)
        if y.shape != (n,):
            raise SurrogateError(f"target {name!r} has shape {y.shape}; expected ({n},)")
        if not np.isfinite(y).all():
            rows = np.flatnonzero(~np.isfinite(y))[:10].tolist()
            raise SurrogateError(f"target {name!r} has NaN or inf at row(s) {rows}")
    return x


def lightgbm_predictor(seed: int) -> Callable[[np.ndarray, np.ndarray], Callable]:
    """fit(x, y) -> predict(x): one target's LightGBM with the pipeline's settings."""

    def fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        booster = _fit_lightgbm(x, y, lightgbm_params(seed))
        return lambda at: booster.predict(at, num_threads=1)

    return fit


def linear_fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """fit(x, y) -> predict(x): one target's linear baseline."""
    return _fit_linear(x, y).predict


def _fit_lightgbm(x: np.ndarray, y: np.ndarray, params: dict) -> lightgbm.Booster:
    return lightgbm.LGBMRegressor(**params).fit(x, y).booster_


def _fit_linear(x: np.ndarray, y: np.ndarray) -> LinearModel:
    model = Ridge(alpha=RIDGE_ALPHA).fit(x, y)
    return LinearModel(coef=np.asarray(model.coef_, dtype=float), intercept=float(model.intercept_))


def _scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R², Spearman and Pearson of predictions; NaN where undefined (a constant side)."""
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan
    if np.ptp(y) == 0 or np.ptp(pred) == 0:
        return {"r2": r2, "spearman": math.nan, "pearson": math.nan}
    return {
        "r2": r2,
        "spearman": float(spearmanr(y, pred).statistic),
        "pearson": float(pearsonr(y, pred).statistic),
    }


def _json_float(v: float) -> float | None:
    """JSON has no NaN: undefined scores are stored as null."""
    return None if v is None or not math.isfinite(v) else float(v)


def _from_json_float(v: float | None) -> float:
    return math.nan if v is None else float(v)
