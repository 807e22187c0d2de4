"""Bayesian optimisation: a botorch GP on the evaluated mixtures, expected improvement over the
bounded simplex, optionally per unit cost (EIpu, as in the MFMS-BO seed).

The GP lives on the mixture weights themselves; the acquisition is optimised on the box
[lo, hi] with the equality constraint sum(alpha) = 1 that botorch's `optimize_acqf` supports
directly. Unlike a softmax or ILR reparametrisation this keeps the kernel's distances the
simplex's own (equal moves of weight are equally far everywhere), needs no K - 1 coordinate
choice, and enforces per-domain floors and caps exactly as box bounds.

Log-EI (botorch's LogExpectedImprovement) instead of EI: EI underflows to 0 far from the data,
leaving the optimiser flat gradients. With costs, a second GP models log cost and the acquisition
is log EI - cost_exponent * predicted log cost, i.e. EI / cost^exponent. A batch of n is built
greedily: each chosen point joins the data with its posterior mean as the value (kriging
believer) before the next is chosen. Seeded, float64, deterministic on the CPU.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction, LogExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from botorch.optim import optimize_acqf
from gpytorch.mlls import ExactMarginalLogLikelihood

from parammix_core.search.base import History, Strategy
from parammix_core.search.common import SearchError

DTYPE = torch.float64


class _LogEIPerCost(AcquisitionFunction):
    """log EI(x) - exponent * E[log cost(x)]: expected improvement per unit (predicted) cost."""

    def __init__(self, log_ei: LogExpectedImprovement, cost_model: SingleTaskGP, exponent: float):
        super().__init__(model=log_ei.model)
        self.log_ei = log_ei
        self.cost_model = cost_model
        self.exponent = exponent

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (b, 1, K) -> (b,)
        log_cost = self.cost_model.posterior(x).mean[..., 0, 0]  # (b,)
        return self.log_ei(x) - self.exponent * log_cost


class BayesStrategy(Strategy):
    """SingleTaskGP + (log) expected improvement on the bounded simplex.

    Args:
        n_init: Dirichlet draws until this many rows are evaluated (default K + 1).
        num_restarts, raw_samples: `optimize_acqf` effort.
        cost_exponent: EI / cost^exponent when the history has costs; 0 ignores costs.
    """

    name = "bayes"

    def __init__(
        self,
        k: int,
        lo=None,
        hi=None,
        seed: int = 0,
        n_init: int | None = None,
        num_restarts: int = 8,
        raw_samples: int = 256,
        cost_exponent: float = 1.0,
    ):
        super().__init__(k, lo, hi, seed)
        self.n_init = k + 1 if n_init is None else n_init
        if self.n_init < 2 or num_restarts < 1 or raw_samples < num_restarts:
            raise SearchError(
                f"bayes: need n_init >= 2 and raw_samples >= num_restarts >= 1; got "
                f"n_init={self.n_init}, num_restarts={num_restarts}, raw_samples={raw_samples}"
            )
        if cost_exponent < 0:
            raise SearchError(f"bayes: cost_exponent must be >= 0; got {cost_exponent}")
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.cost_exponent = cost_exponent

    def _propose(self, history: History, n: int) -> np.ndarray:
        seed = self._rng_seed(history)
        if history.n < self.n_init:
            return self._dirichlet(n, seed)
        x = torch.tensor(history.x, dtype=DTYPE)  # (N, K)
        y = torch.tensor(history.y, dtype=DTYPE)[:, None]  # (N, 1)
        cost_model = None
        if history.cost is not None and self.cost_exponent > 0:
            cost_model = fit_gp(x, torch.tensor(np.log(history.cost), dtype=DTYPE)[:, None])
        bounds = torch.tensor(np.stack([self.lo, self.hi]), dtype=DTYPE)  # (2, K)
        constraint = [(torch.arange(self.k), torch.ones(self.k, dtype=DTYPE), 1.0)]
        out = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # GP fitting and botorch draw from torch's global RNG
            for i in range(n):
                model = fit_gp(x, y)
                acq: AcquisitionFunction = LogExpectedImprovement(model, best_f=y.max())
                if cost_model is not None:
                    acq = _LogEIPerCost(acq, cost_model, self.cost_exponent)
                # starts: the best of raw_samples bounded Dirichlet draws (botorch's own
                # polytope sampler for equality constraints takes seconds per call)
                raw = torch.tensor(self._dirichlet(self.raw_samples, seed + i), dtype=DTYPE)
                with torch.no_grad():
                    start = raw[acq(raw[:, None, :]).argsort(descending=True)]  # (R, K)
                cand, _ = optimize_acqf(
                    acq,
                    bounds=bounds,
                    q=1,
                    num_restarts=self.num_restarts,
                    batch_initial_conditions=start[: self.num_restarts, None, :],
                    equality_constraints=constraint,
                    options={"maxiter": 100},
                )  # (1, K)
                out.append(cand[0].detach().numpy())
                if i + 1 < n:  # kriging believer: pretend the posterior mean was observed
                    with torch.no_grad():
                        believed = model.posterior(cand).mean.reshape(1, 1)
                    x, y = torch.cat([x, cand]), torch.cat([y, believed])
        return np.asarray(out)  # (n, K)


def fit_gp(x: torch.Tensor, y: torch.Tensor) -> SingleTaskGP:
    """A GP with standardised outcomes, hyper-parameters by marginal likelihood."""
    model = SingleTaskGP(x, y, outcome_transform=Standardize(m=1))
    with warnings.catch_warnings():
        # botorch warns and retries when L-BFGS stops early; the retry is what we want
        warnings.simplefilter("ignore")
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model
