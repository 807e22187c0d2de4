"""Search: choose the mixture, and strategies that propose which mixtures to evaluate.

`choice` holds the final pick over fitted surrogates (`choose_mixture`); `common` the utility
over capability groups and the bounds that searches and judges share. The strategies share
the `Strategy` interface of `base`: random (Dirichlet baseline), surrogate (LightGBM, shrinking
candidate rounds), demix (DeMix's procedure: draws around the natural proportions under usage
caps, then iterations that evaluate half as many mixtures each, drawn from the best a LightGBM
predictor ranks), bayes (botorch GP with expected improvement, optionally per unit cost),
mixmin (convex mixture of the experts' predictive distributions), mergemix (gradient of a
dev-set loss through the merge) and multifidelity (one GP over mixture x fidelity: merges
cheap, real mixed runs dear; expected improvement per unit cost with a decaying exponent).
"""

from parammix_core.search.base import (
    REGISTRY,
    History,
    Strategy,
    UnknownStrategyError,
    get_strategy,
    kl_project,
    project,
    strategy_class,
    strategy_from_config,
)
from parammix_core.search.choice import Choice, choose_mixture
from parammix_core.search.common import (
    SearchError,
    normaliser,
    resolve_weights,
    scale_from_spec,
    search_bounds,
    utility,
)

__all__ = [
    "REGISTRY",
    "Choice",
    "History",
    "SearchError",
    "Strategy",
    "UnknownStrategyError",
    "choose_mixture",
    "get_strategy",
    "kl_project",
    "normaliser",
    "project",
    "resolve_weights",
    "scale_from_spec",
    "search_bounds",
    "strategy_class",
    "strategy_from_config",
    "utility",
]
