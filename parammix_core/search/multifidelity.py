"""Multi-fidelity search: merges as the cheap fidelity, real mixed runs as the expensive one.

A mixture can be measured two ways: the merge of the experts (seconds; biased, a merge is not
a mixed run) and a real mixed run from the base at the experts' budget (minutes; unbiased up
to run-to-run noise). As in the MFMS-BO seed, one GP models the utility over (mixture,
fidelity): the fidelity is one more input in [0, 1], 0 the merge and 1 the real run; the
caller may add levels in between. botorch's SingleTaskGP with its ARD RBF kernel over
(alpha, s) is the seed's product of RBF kernels, one over the mixture and one over the
fidelity, so how far the merges' landscape carries over to the real runs' is a length-scale
fitted to the data, not assumed. Each fidelity has its own noise variance (`level_noise`): a
merge is deterministic, a real run is not.

Each proposal is a (mixture, fidelity) pair chosen by expected improvement per unit cost: for
every level s, log EI of the posterior at (alpha, s) over the best posterior mean at s among the
evaluated mixtures, minus exponent_t * log cost(s). The exponent decays over the iterations,
exponent_t = cost_exponent * exponent_decay^t, so early rounds buy cheap merges and later ones
real runs (the seed's decaying EIpu). cost(s) is the geometric mean of the measured costs of
the rows at s, or the caller's prior while none was measured. A batch is built greedily with
the kriging believer, as in `bayes`; a pair already evaluated or proposed is never proposed
again (merges and runs are deterministic for a mixture and seed, so a repeat would be a cache
hit that tells nothing), and when every level's best is such a repeat a random merge explores.
Given what is left of the budget, a level whose cost exceeds it is not proposed (the cheapest
always may be), so a search stops near its budget rather than a round of long runs past it.
The choice is the argmax of the posterior at the highest fidelity: what a real run is
predicted to score, not what a merge scores; by the lower end of its central `level` interval
(`choice="lower_bound"`, the default), which keeps the choice where runs were measured rather
than in a corner the GP extrapolates to from a few runs, or by its mean (`"mean"`). Its gain
over a baseline comes with the joint posterior's standard deviation, so the choice says how
sure it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from botorch.acquisition import (
    AcquisitionFunction,
    FixedFeatureAcquisitionFunction,
    LogExpectedImprovement,
    PosteriorMean,
)
from botorch.acquisition.analytic import AnalyticAcquisitionFunction
from botorch.models import SingleTaskGP
from botorch.optim import optimize_acqf
from botorch.utils.transforms import t_batch_mode_transform
from scipy.stats import norm

from parammix_core.search.base import History, Strategy, project
from parammix_core.search.bayes import DTYPE
from parammix_core.search.common import SearchError
from parammix_core.search.held_out import MIN_HELD_OUT, HeldOutRuns, held_out_runs
from parammix_core.search.level_noise import fit_levels_gp

REPEAT = 1e-3  # L1 distance under which two mixtures are the same evaluation


@dataclass(frozen=True)
class Proposal:
    """Mixtures to evaluate, (n, K), and the fidelity to evaluate each at, (n,)."""

    x: np.ndarray
    fidelity: np.ndarray


@dataclass(frozen=True)
class TargetChoice:
    """The mixture the posterior at the highest fidelity ranks first, and its prediction."""

    alpha: np.ndarray  # (K,)
    mean: float  # posterior mean of the utility at the highest fidelity
    std: float  # its posterior standard deviation


class LowerBound(AnalyticAcquisitionFunction):
    """Posterior mean minus z standard deviations: the lower end of a central interval."""

    def __init__(self, model: SingleTaskGP, z: float):
        super().__init__(model=model)
        self.z = z

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        mean, sigma = self._mean_and_sigma(X)
        return (mean - self.z * sigma).squeeze(-1)


def decayed_exponent(cost_exponent: float, exponent_decay: float, iteration: int) -> float:
    """The cost exponent of iteration t: cost_exponent * exponent_decay^t."""
    return cost_exponent * exponent_decay**iteration


class MultiFidelityStrategy(Strategy):
    """One GP over (mixture, fidelity) and EI per unit cost with a decaying exponent.

    Args:
        levels: the fidelities a proposal may take, increasing in [0, 1]; the last is the
            target (the choice is made there and costs are counted in its units). One level
            is plain BO with costs (a constant fidelity input, whose length-scale then does
            nothing).
        prior_costs: cost of one evaluation at each level (F,), used until one is measured;
            None: every level costs the same until measured.
        cost_exponent, exponent_decay, iteration: the exponent of this iteration's cost.
        n_init: draws at the first level until this many rows are evaluated (default K + 1).
        num_restarts, raw_samples: `optimize_acqf` effort per level.
        held_out_folds, shuffles: how the choice's GP is judged on held-out rows (`held_out`).
    """

    name = "multifidelity"

    def __init__(
        self,
        k: int,
        lo=None,
        hi=None,
        seed: int = 0,
        levels: Sequence[float] = (0.0, 1.0),
        prior_costs: Sequence[float] | None = None,
        cost_exponent: float = 1.0,
        exponent_decay: float = 0.8,
        iteration: int = 0,
        n_init: int | None = None,
        num_restarts: int = 8,
        raw_samples: int = 256,
        held_out_folds: int = 5,
        shuffles: int = 19,
        choice: str = "lower_bound",
        level: float = 0.9,
    ):
        super().__init__(k, lo, hi, seed)
        if choice not in ("mean", "lower_bound") or not 0 < level < 1:
            raise SearchError(
                "multifidelity: choice must be mean or lower_bound and 0 < level < 1; got "
                f"{choice!r}, {level}"
            )
        self.choice, self.level = choice, level
        self.levels = np.asarray(levels, dtype=float)
        if self.levels.ndim != 1 or len(self.levels) < 1:
            raise SearchError(f"multifidelity: need at least one level; got {levels}")
        if not (np.diff(self.levels) > 0).all() or self.levels[0] < 0 or self.levels[-1] > 1:
            raise SearchError(f"multifidelity: levels must increase inside [0, 1]; got {levels}")
        self.prior_costs = None if prior_costs is None else np.asarray(prior_costs, dtype=float)
        if self.prior_costs is not None and (
            self.prior_costs.shape != self.levels.shape
            or not (np.isfinite(self.prior_costs) & (self.prior_costs > 0)).all()
        ):
            raise SearchError(
                f"multifidelity: prior_costs must be {len(self.levels)} positive costs, one per "
                f"level; got {prior_costs}"
            )
        if cost_exponent < 0 or not 0 < exponent_decay <= 1 or iteration < 0:
            raise SearchError(
                "multifidelity: need cost_exponent >= 0, 0 < exponent_decay <= 1 and "
                f"iteration >= 0; got {cost_exponent}, {exponent_decay}, {iteration}"
            )
        self.n_init = k + 1 if n_init is None else n_init
        if self.n_init < 2 or num_restarts < 1 or raw_samples < num_restarts:
            raise SearchError(
                f"multifidelity: need n_init >= 2 and raw_samples >= num_restarts >= 1; got "
                f"n_init={self.n_init}, num_restarts={num_restarts}, raw_samples={raw_samples}"
            )
        if held_out_folds < 2 or shuffles < 0:
            raise SearchError(
                "multifidelity: need held_out_folds >= 2 and shuffles >= 0; got "
                f"{held_out_folds}, {shuffles}"
            )
        self.exponent = decayed_exponent(cost_exponent, exponent_decay, iteration)
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.held_out_folds = held_out_folds
        self.shuffles = shuffles
        self._last_fit: tuple[bytes, SingleTaskGP] | None = None

    def propose_pairs(self, history: History, n: int, left: float = np.inf) -> Proposal:
        """n (mixture, fidelity) pairs: mixtures (n, K) inside the bounds, fidelities (n,);
        `left`: what remains of the budget, in the units of the costs."""
        self._check_request(history, n)
        x, fidelity = self._pairs(history, n, left)
        return Proposal(project(x, self.lo, self.hi), fidelity)

    def _propose(self, history: History, n: int) -> np.ndarray:
        return self._pairs(history, n)[0]

    def _pairs(
        self, history: History, n: int, left: float = np.inf
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw mixtures (n, K) and their fidelities (n,), each level's cost within `left`."""
        seed = self._rng_seed(history)
        if history.n < self.n_init:
            return self._dirichlet(n, seed), np.full(n, self.levels[0])
        cost = self.level_costs(history)  # (F,)
        log_cost = np.log(cost)
        xs = _inputs(history.x, history.fidelities)  # (N, K + 1)
        y = torch.tensor(history.y, dtype=DTYPE)[:, None]  # (N, 1)
        out_x, out_s = [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # GP fitting and botorch draw from torch's global RNG
            for i in range(n):
                model = fit_levels_gp(xs, y, self.levels)
                scored = []  # (EI per unit cost, level index, mixture) of each level's best
                for j, level in enumerate(self.levels):
                    if j > 0 and cost[j] > left:
                        continue  # past the budget: only the cheapest level may go there
                    acq = self._log_ei_at(model, xs[:, : self.k].numpy(), float(level))
                    cand, value = self._maximise(acq, seed + i * len(self.levels) + j)
                    if _repeats(cand, xs, float(level)):
                        value = -np.inf  # evaluations are deterministic: a repeat tells nothing
                    scored.append((value - self.exponent * float(log_cost[j]), j, cand))
                score, j, cand = max(scored, key=lambda t: (t[0], t[1]))
                if score == -np.inf:  # every level's best is taken: explore at the cheapest
                    j, cand = 0, torch.tensor(self._dirichlet(1, seed + i), dtype=DTYPE)
                level = float(self.levels[j])
                left -= cost[j]
                out_x.append(cand[0].numpy())
                out_s.append(level)
                if i + 1 < n:  # kriging believer: pretend the posterior mean was observed
                    point = _inputs(cand.numpy(), np.array([level]))
                    with torch.no_grad():
                        believed = model.posterior(point).mean.reshape(1, 1)
                    xs, y = torch.cat([xs, point]), torch.cat([y, believed])
        return np.asarray(out_x), np.asarray(out_s)  # (n, K), (n,)

    def level_costs(self, history: History) -> np.ndarray:
        """Cost of one evaluation per level (F,): the geometric mean of the measured costs of
        the rows at that level, else the prior, else (nothing measured, no prior) 1."""
        costs = np.ones(len(self.levels)) if self.prior_costs is None else self.prior_costs.copy()
        if history.cost is None:
            return costs
        for j, level in enumerate(self.levels):
            at = np.isclose(history.fidelities, level)
            if at.any():
                costs[j] = float(np.exp(np.log(history.cost[at]).mean()))
            elif self.prior_costs is None:
                raise SearchError(
                    f"multifidelity: no row measured at fidelity {level:g} and no prior cost "
                    "for it; give prior_costs"
                )
        return costs

    def choose(self, history: History) -> TargetChoice:
        """The argmax over the bounded simplex, at the highest level, of the posterior mean
        or of the lower end of its central `level` interval (`choice`)."""
        if history.n < 2:
            raise SearchError(f"multifidelity: choosing needs at least 2 rows; got {history.n}")
        top = float(self.levels[-1])
        model, seed = self._fit(history), self._rng_seed(history)
        target = (
            PosteriorMean(model)
            if self.choice == "mean"
            else LowerBound(model, float(norm.ppf((1 + self.level) / 2)))
        )
        acq = FixedFeatureAcquisitionFunction(target, self.k + 1, [self.k], [top])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # botorch may draw from torch's global RNG
            cand, _ = self._maximise(acq, seed, extra_starts=history.x)
        alpha = project(cand.numpy(), self.lo, self.hi)  # (1, K)
        with torch.no_grad():
            post = model.posterior(_inputs(alpha, np.array([top])))
        return TargetChoice(alpha[0], float(post.mean), float(post.variance.sqrt()))

    def predict(self, history: History, x: np.ndarray) -> np.ndarray:
        """Posterior mean at the highest level of mixtures x (M, K), shape (M,)."""
        top = np.full(len(np.atleast_2d(x)), self.levels[-1])
        model = self._fit(history)
        with torch.no_grad():
            return model.posterior(_inputs(x, top)).mean[:, 0].numpy()

    def gains(
        self, history: History, chosen: np.ndarray, baselines: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of f(chosen) - f(b) at the highest level for
        each baseline b (B, K), each (B,). From the joint posterior, so what the two mixtures
        share cancels: the gain is predicted for the expected run, without its run-to-run
        noise."""
        x = np.vstack([chosen, baselines])  # (1 + B, K)
        model = self._fit(history)
        with torch.no_grad():
            post = model.posterior(_inputs(x, np.full(len(x), self.levels[-1])))
            mean, cov = post.mean[:, 0], post.covariance_matrix  # (1 + B,), (1 + B, 1 + B)
        var = cov[0, 0] + cov.diagonal()[1:] - 2 * cov[0, 1:]
        return (mean[0] - mean[1:]).numpy(), var.clamp_min(0).sqrt().numpy()

    def held_out(
        self,
        history: History,
        significance: float = 0.05,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> HeldOutRuns:
        """The rows at the highest level in `held_out_folds` groups, each predicted by the GP
        refitted without it (its hyper-parameters too), then the same on `shuffles` shuffles of
        their utilities; shuffling stops once the p-value cannot reach `significance`.
        `progress(done, total, message)` is told after each cross-validation (total: the
        truth and every shuffle; fewer run when shuffling stops early)."""
        top = np.flatnonzero(np.isclose(history.fidelities, self.levels[-1]))
        if len(top) < MIN_HELD_OUT:
            raise SearchError(
                f"multifidelity: judging the GP needs {MIN_HELD_OUT} rows at fidelity "
                f"{self.levels[-1]:g}; got {len(top)}"
            )
        return held_out_runs(
            history,
            top,
            self._predict_held_out,
            self.held_out_folds,
            self.shuffles,
            self._rng_seed(history),
            significance,
            progress,
        )

    def _predict_held_out(self, rest: History, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and standard deviation (run-to-run noise included) at the highest
        level of mixtures x (M, K), from the GP fitted on `rest`; each (M,)."""
        model = self._fit(rest)
        point = _inputs(x, np.full(len(x), self.levels[-1]))
        with torch.no_grad():
            post = model.posterior(point, observation_noise=True)
        return post.mean[:, 0].numpy(), post.variance[:, 0].sqrt().numpy()

    def _fit(self, history: History) -> SingleTaskGP:
        """The GP over (mixture, fidelity) on every row, seeded by the history. The last fit is
        kept: choosing and the choice's gains ask for the same history's GP in turn."""
        key = b"".join(
            np.ascontiguousarray(a).tobytes() for a in (history.x, history.y, history.fidelities)
        )
        if self._last_fit is None or self._last_fit[0] != key:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._rng_seed(history))
                model = fit_levels_gp(
                    _inputs(history.x, history.fidelities),
                    torch.tensor(history.y, dtype=DTYPE)[:, None],
                    self.levels,
                )
            self._last_fit = (key, model)
        return self._last_fit[1]

    def _log_ei_at(self, model: SingleTaskGP, x: np.ndarray, level: float) -> AcquisitionFunction:
        """log EI over mixtures (K inputs) at fixed fidelity `level`, against the best posterior
        mean at that level among the evaluated mixtures."""
        with torch.no_grad():
            best = model.posterior(_inputs(x, np.full(len(x), level))).mean.max()
        acq = LogExpectedImprovement(model, best_f=best)
        return FixedFeatureAcquisitionFunction(acq, self.k + 1, [self.k], [level])

    def _maximise(
        self, acq: AcquisitionFunction, seed: int, extra_starts: np.ndarray | None = None
    ) -> tuple[torch.Tensor, float]:
        """argmax of `acq` over the bounded simplex, (1, K), and its value; starts are the best
        of raw_samples bounded Dirichlet draws (and `extra_starts`)."""
        raw = self._dirichlet(self.raw_samples, seed)
        if extra_starts is not None:
            raw = np.vstack([raw, project(extra_starts, self.lo, self.hi)])
        starts = torch.tensor(raw, dtype=DTYPE)
        with torch.no_grad():
            starts = starts[acq(starts[:, None, :]).argsort(descending=True)]  # (R, K)
        cand, value = optimize_acqf(
            acq,
            bounds=torch.tensor(np.stack([self.lo, self.hi]), dtype=DTYPE),
            q=1,
            num_restarts=self.num_restarts,
            batch_initial_conditions=starts[: self.num_restarts, None, :],
            equality_constraints=[(torch.arange(self.k), torch.ones(self.k, dtype=DTYPE), 1.0)],
            options={"maxiter": 100},
        )
        return cand.detach(), float(value)


def _repeats(cand: torch.Tensor, xs: torch.Tensor, level: float) -> bool:
    """Whether mixture cand (1, K) was already evaluated or proposed (xs, (N, K + 1)) at
    `level`, within REPEAT in L1."""
    same = xs[torch.isclose(xs[:, -1], torch.tensor(level, dtype=DTYPE))][:, :-1]  # (M, K)
    return bool(len(same)) and float((same - cand).abs().sum(dim=1).min()) < REPEAT


def _inputs(x: np.ndarray, fidelity: np.ndarray) -> torch.Tensor:
    """The GP's inputs: mixtures (N, K) with their fidelities as a last column, (N, K + 1)."""
    return torch.tensor(np.c_[np.atleast_2d(x), fidelity], dtype=DTYPE)
