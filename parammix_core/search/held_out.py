"""How well a GP predicts rows it has not seen, and whether better than shuffles of them.

The multi-fidelity choice says it beats a baseline only when its GP predicts held-out real runs
better than their mean and better than the same runs' utilities shuffled among their mixtures
(`HeldOutRuns`). The GP itself is the caller's: `predict(rest, x)` fits it on the rows `rest`
and gives its predictive mean and standard deviation at mixtures x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from parammix_core.search.base import History

MIN_HELD_OUT = 3  # rows at the highest level below which the GP cannot be judged on held-out ones

Predict = Callable[[History, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class HeldOutRuns:
    """Cross-validation over the rows at the highest level (real runs, unless merges are the
    only fidelity): does the GP predict what it has not seen, and is its uncertainty honest?

    A GP fitted by marginal likelihood on a few noisy runs can read their noise as a surface
    (short length-scales, a tiny noise variance) and then claims a gain where none exists;
    on 20 flat synthetic surfaces of 16 runs its 90 % interval of the gain over uniform
    excluded zero on 8 (`benchmarks/gp_interval.py`). Its held-out errors show it, but a
    held-out R² above zero happens by chance too (on 8 of those 20, five folds), so it is
    compared with the R² of the same GP on the runs' utilities shuffled among their mixtures:
    when the utility does not depend on the mixture, a shuffle is as likely as the truth, and
    the GP beats every one of S shuffles with probability 1 / (S + 1) at most.
    """

    n: int  # rows held out
    folds: int  # groups of rows held out together
    r2: float  # 1 - squared errors / squared deviations from the other rows' mean
    scale: float  # root mean square of the errors over their predictive standard deviations
    shuffled: int  # shuffles cross-validated (none when r2 <= 0; fewer once p passed a bound)
    reached: int  # shuffles whose R² reached r2
    p: float  # (1 + reached) / (1 + shuffles planned): the shuffle test's p-value (a lower
    # bound when it stopped early), 1 when no shuffle ran

    def predicts(self, significance: float) -> bool:
        """The GP predicts held-out rows better than their mean does, and better than it
        predicts them shuffled, at one-sided `significance`."""
        return self.r2 > 0 and self.p <= significance * (1 + 1e-9)

    @property
    def widen(self) -> float:
        """What the GP's standard deviations are multiplied by: its held-out errors' scale,
        never narrower than the GP itself."""
        return max(1.0, self.scale)


def held_out_runs(
    history: History,
    top: np.ndarray,
    predict: Predict,
    folds: int,
    shuffles: int,
    seed: int,
    significance: float = 0.05,
    progress: Callable[[int, int, str], None] | None = None,
) -> HeldOutRuns:
    """The rows `top` (indices into history) in `folds` groups, each predicted from every other
    row, then the same on `shuffles` shuffles of their utilities; shuffling stops once the
    p-value cannot reach `significance`. `progress(done, total, message)` is told after each
    cross-validation (total: the truth and every shuffle; fewer run when shuffling stops)."""
    rng = np.random.default_rng(seed)
    groups = np.array_split(rng.permutation(top), min(folds, len(top)))
    r2, z = _cross_validate(history, groups, predict)
    if progress is not None:
        progress(1, 1 + shuffles, f"held-out R² {r2:+.2f}")
    allowed = significance * (1 + shuffles) * (1 + 1e-9) - 1  # shuffles that may reach r2
    shuffled = reached = 0
    while r2 > 0 and shuffled < shuffles and reached <= allowed:
        y = history.y.copy()
        y[top] = rng.permutation(y[top])
        shuffle = History(history.x, y, None, history.fidelities)
        reached += int(_cross_validate(shuffle, groups, predict)[0] >= r2)
        shuffled += 1
        if progress is not None:
            progress(1 + shuffled, 1 + shuffles, f"{reached} shuffle(s) as predicted")
    return HeldOutRuns(
        n=len(top),
        folds=len(groups),
        r2=r2,
        scale=float(np.sqrt(np.mean(np.square(z)))),
        shuffled=shuffled,
        reached=reached,
        p=(1 + reached) / (1 + shuffles) if shuffled else 1.0,
    )


def _cross_validate(
    history: History, folds: Sequence[np.ndarray], predict: Predict
) -> tuple[float, np.ndarray]:
    """Held-out R² of the rows in `folds`, each fold predicted from every other row, and their
    errors over their predictive standard deviations, (n,)."""
    top = np.concatenate(folds)
    errors, z, spread = [], [], []
    for fold in folds:
        keep = np.ones(history.n, dtype=bool)
        keep[fold] = False
        rest = History(history.x[keep], history.y[keep], None, history.fidelities[keep])
        mean, sd = predict(rest, history.x[fold])
        errors.append(history.y[fold] - mean)
        z.append(errors[-1] / sd)
        spread.append(history.y[fold] - history.y[np.setdiff1d(top, fold)].mean())
    sse = float(np.sum(np.square(np.concatenate(errors))))
    sst = float(np.sum(np.square(np.concatenate(spread))))
    return (1 - sse / sst if sst > 0 else 0.0), np.concatenate(z)
