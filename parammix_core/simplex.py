"""Mixtures live on the probability simplex: one non-negative weight per domain, summing to 1.

Arrays of mixtures have shape (N, K): N mixtures over K domains, in the config's domain order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

TOLERANCE = 1e-6


class SimplexError(ValueError):
    """A mixture that is not a point of the simplex."""


def vertices(k: int) -> np.ndarray:
    """The K pure-domain mixtures, shape (K, K)."""
    return np.eye(k)


def uniform(k: int) -> np.ndarray:
    """Equal weight on every domain, shape (K,)."""
    return np.full(k, 1.0 / k)


def dirichlet(k: int, n: int, concentration: float = 1.0, seed: int = 0) -> np.ndarray:
    """n mixtures drawn from a symmetric Dirichlet, shape (n, K)."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(k, concentration), size=n)


def grid(k: int, resolution: int) -> np.ndarray:
    """Every mixture with weights in multiples of 1/resolution, shape (C(res+k-1, k-1), K)."""
    points = [c for c in itertools.product(range(resolution + 1), repeat=k) if sum(c) == resolution]
    return np.asarray(points, dtype=float) / resolution


def validate(
    alpha: Sequence[float] | np.ndarray, domains: Sequence[str], tol: float = TOLERANCE
) -> np.ndarray:
    """Check one mixture and return it as a float array; the error names what is wrong."""
    a = validate_affine(alpha, domains, tol)
    neg = [d for d, w in zip(domains, a, strict=True) if w < -tol]
    if neg:
        raise SimplexError(f"mixture weight is negative for domain(s) {neg}")
    return np.clip(a, 0.0, None)


def validate_affine(
    weights: Sequence[float] | np.ndarray, names: Sequence[str], tol: float = TOLERANCE
) -> np.ndarray:
    """Check weights of an affine combination: one finite weight per name, summing to 1, of
    any sign (merge weights that extrapolate past an expert, `merge.replay`)."""
    a = np.asarray(weights, dtype=float)
    if a.ndim != 1 or a.shape[0] != len(names):
        raise SimplexError(
            f"mixture has {a.size} weight(s) but there are {len(names)} domains {list(names)}"
        )
    bad = [d for d, w in zip(names, a, strict=True) if not np.isfinite(w)]
    if bad:
        raise SimplexError(f"mixture weight is not finite for domain(s) {bad}")
    total = float(a.sum())
    if abs(total - 1.0) > tol:
        raise SimplexError(f"mixture weights sum to {total:.6g}, not 1")
    return a


def from_mapping(weights: dict[str, float], domains: Sequence[str]) -> np.ndarray:
    """A mixture given as {domain: weight}; unknown or missing domains are errors."""
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise SimplexError(f"weights for unknown domain(s) {unknown}; domains are {list(domains)}")
    missing = [d for d in domains if d not in weights]
    if missing:
        raise SimplexError(f"no weight for domain(s) {missing}")
    return validate([weights[d] for d in domains], domains)


def from_mappings(
    mixtures: Sequence[dict[str, float]], domains: Sequence[str], name: str = "mixtures"
) -> np.ndarray:
    """Mixtures given as {domain: weight} mappings, (N, K); an error names the item
    (`mixtures.2: ...`), which a list pasted into the UI's run form needs."""
    if not mixtures:
        raise SimplexError(f"{name}: give at least one {{domain: weight}} mapping, or null")
    rows = []
    for i, weights in enumerate(mixtures):
        try:
            rows.append(from_mapping(weights, domains))
        except SimplexError as err:
            raise SimplexError(f"{name}.{i}: {err}") from None
    return np.array(rows)


def within_bounds(mixtures: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mask of the mixtures (N, K) that respect per-domain floors and caps, shape (N,)."""
    return np.all((mixtures >= lo - TOLERANCE) & (mixtures <= hi + TOLERANCE), axis=1)


def sample_bounded(
    k: int, n: int, lo: np.ndarray, hi: np.ndarray, concentration: float = 1.0, seed: int = 0
) -> np.ndarray:
    """n Dirichlet mixtures inside the box [lo, hi] (rejection on the rescaled simplex)."""
    free = 1.0 - lo.sum()
    if free < -TOLERANCE:
        raise SimplexError(f"domain floors sum to {lo.sum():.6g} > 1")
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for _ in range(1000):
        draw = lo + max(free, 0.0) * rng.dirichlet(np.full(k, concentration), size=4 * n)
        out.extend(draw[within_bounds(draw, lo, hi)])
        if len(out) >= n:
            return np.asarray(out[:n]).reshape(n, k)  # (0, K) when none are asked for
    raise SimplexError("could not sample mixtures inside the bounds; are they feasible?")


def entropy(mixtures: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each mixture, shape (N,)."""
    p = np.clip(mixtures, 1e-12, 1.0)
    return -(mixtures * np.log(p)).sum(axis=-1)
