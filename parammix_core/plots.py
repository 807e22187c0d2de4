"""Figures for the report: capability landscapes, surrogate fit, the chosen mixture.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas - no pyplot - so there is
no global figure state and plots can be drawn from worker threads. PNGs are small (100 dpi)
and the same inputs give the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
# Baselines first in this order after the chosen mixture; colours fixed so figures compare.
BAR_COLOURS = {"chosen": "#d62728", "uniform": "#7f7f7f", "natural": "#1f77b4"}


class PlotError(ValueError):
    """Inputs a figure cannot be drawn from (missing columns, mismatched lengths)."""


def polygon_vertices(k: int) -> np.ndarray:
    """Corners of a regular K-gon on the unit circle, the first at the top, shape (K, 2)."""
    if k < 2:
        raise PlotError(f"need at least 2 domains to project mixtures; got {k}")
    angles = np.pi / 2 + 2 * np.pi * np.arange(k) / k
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def simplex_projection(x: np.ndarray) -> np.ndarray:
    """Barycentric projection of mixtures (N, K) onto the regular K-gon, shape (N, 2).

    A pure-domain mixture lands on its corner and the uniform mixture at the centre; for K = 3
    this is the ternary triangle (exact), for K > 3 different mixtures may share a point.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise PlotError(f"mixtures must have shape (N, K); got {x.shape}")
    return x @ polygon_vertices(x.shape[1])  # (N, K) @ (K, 2)


def plot_landscape(
    rows: pd.DataFrame,
    domains: list[str],
    groups: list[str],
    out: Path,
    chosen: dict[str, float] | None = None,
) -> Path:
    """One panel per group: evaluated mixtures on the K-gon, coloured by measured score."""
    alpha_cols = [f"alpha.{d}" for d in domains]
    group_cols = [f"group.{g}" for g in groups]
    _require(rows, alpha_cols + group_cols)
    xy = simplex_projection(rows[alpha_cols].to_numpy(dtype=float))  # (N, 2)
    star = None
    if chosen is not None:
        missing = [d for d in domains if d not in chosen]
        if missing:
            raise PlotError(f"chosen mixture has no weight for domain(s) {missing}")
        star = simplex_projection(np.array([[chosen[d] for d in domains]]))[0]  # (2,)
    corners = polygon_vertices(len(domains))  # (K, 2)
    outline = np.vstack([corners, corners[:1]])

    ncols = min(len(groups), 3)
    nrows = math.ceil(len(groups) / ncols)
    fig = _figure(3.4 * ncols, 3.2 * nrows)
    for i, (group, col) in enumerate(zip(groups, group_cols, strict=True)):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(outline[:, 0], outline[:, 1], color="0.6", lw=0.8)
        points = ax.scatter(
            xy[:, 0], xy[:, 1], c=rows[col].to_numpy(dtype=float), cmap="viridis", s=22
        )
        fig.colorbar(points, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
        for name, (cx, cy) in zip(domains, corners, strict=True):
            ax.annotate(
                short(name),
                (cx, cy),
                xytext=(cx * 1.13, cy * 1.13),
                ha="center",
                va="center",
                fontsize=8,
            )
        if star is not None:
            ax.scatter(
                [star[0]],
                [star[1]],
                marker="*",
                s=220,
                color=BAR_COLOURS["chosen"],
                edgecolor="black",
                linewidth=0.6,
                label="chosen",
                zorder=3,
            )
            if i == 0:
                ax.legend(loc="lower right", fontsize=7, frameon=False)
        ax.set_title(f"{group} (measured)", fontsize=9)
        ax.set_xlim(-1.35, 1.35)
        ax.set_ylim(-1.35, 1.35)
        ax.set_aspect("equal")
        ax.axis("off")
    return _save(fig, out)


def plot_surrogate_fit(
    y_true: dict[str, np.ndarray],
    y_oof: dict[str, np.ndarray],
    cv: dict[str, dict[str, float]],
    out: Path,
) -> Path:
    """Out-of-fold prediction against measurement per target; R² and Spearman in titles."""
    missing = [t for t in y_true if t not in y_oof or t not in cv]
    if missing:
        raise PlotError(f"no out-of-fold predictions or CV scores for target(s) {missing}")
    if not y_true:
        raise PlotError("no targets to plot")
    ncols = min(len(y_true), 4)
    nrows = math.ceil(len(y_true) / ncols)
    fig = _figure(2.8 * ncols, 2.7 * nrows)
    for i, (name, truth) in enumerate(y_true.items()):
        truth = np.asarray(truth, dtype=float)  # (N,)
        pred = np.asarray(y_oof[name], dtype=float)  # (N,)
        if truth.shape != pred.shape:
            raise PlotError(f"target {name!r}: {truth.shape} measured vs {pred.shape} predicted")
        ax = fig.add_subplot(nrows, ncols, i + 1)
        lo = float(min(truth.min(), pred.min()))
        hi = float(max(truth.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8)
        ax.scatter(truth, pred, s=10, alpha=0.8)
        r2, rho = cv[name].get("r2", math.nan), cv[name].get("spearman", math.nan)
        ax.set_title(f"{name}\nR²={_fmt(r2)}  ρ={_fmt(rho)}", fontsize=8)
        ax.set_xlabel("measured", fontsize=7)
        ax.set_ylabel("predicted (out-of-fold)", fontsize=7)
        ax.tick_params(labelsize=6)
    return _save(fig, out)


def plot_choice(alpha: dict[str, float], series: dict[str, dict[str, float]], out: Path) -> Path:
    """Predicted group scores of the chosen vs baseline mixtures (`series`: name -> group ->
    score, "chosen" first), and the chosen weights `alpha`."""
    groups = list(series["chosen"])
    fig = _figure(9.0, 3.2)
    ax = fig.add_subplot(1, 3, (1, 2))
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    for j, (name, predicted) in enumerate(series.items()):
        ax.bar(
            x + (j - (len(series) - 1) / 2) * width,
            [predicted[g] for g in groups],
            width,
            label=name,
            color=BAR_COLOURS.get(name),
        )
    ax.set_xticks(x, [short(g) for g in groups], fontsize=8)
    ax.set_ylabel("predicted score", fontsize=8)
    ax.set_title("capability groups (surrogate prediction)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)

    ax = fig.add_subplot(1, 3, 3)
    domains = list(alpha)
    at = np.arange(len(domains))  # by position: two long names may shorten alike
    bars = ax.bar(at, [alpha[d] for d in domains], color=BAR_COLOURS["chosen"])
    ax.set_xticks(at, [short(d) for d in domains])
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(1 / len(domains), color=BAR_COLOURS["uniform"], ls="--", lw=0.8, label="uniform")
    ax.set_ylim(0, 1)
    ax.set_title("chosen mixture", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)
    return _save(fig, out)


def plot_interference(
    domains: list[str], curvature: np.ndarray, cosines: np.ndarray, out: Path
) -> Path:
    """Heat maps: relative effective curvature ||H_k g_j|| / ||H_k g_k|| and task-vector cosines."""
    fig = _figure(7.6, 3.4)
    panels = (
        (
            curvature,
            "relative curvature ||H_k g_j|| / ||H_k g_k||",
            "magma",
            "H of k (row), g of j",
        ),
        (cosines, "task-vector cosine", "coolwarm", ""),
    )
    for i, (matrix, title, cmap, label) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        limits = {"vmin": -1, "vmax": 1} if cmap == "coolwarm" else {}
        image = ax.imshow(matrix, cmap=cmap, **limits)
        fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
        names = [short(d) for d in domains]
        ax.set_xticks(range(len(domains)), names, fontsize=8, rotation=45)
        ax.set_yticks(range(len(domains)), names, fontsize=8)
        for (r, c), v in np.ndenumerate(matrix):
            ax.text(c, r, _fmt(float(v)), ha="center", va="center", fontsize=7, color="0.5")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(label, fontsize=8)
    return _save(fig, out)


def plot_discrepancy(rows: pd.DataFrame, domains: list[str], column: str, out: Path) -> Path:
    """The evaluated mixtures on the K-gon, coloured by the probe's predicted ||Delta(alpha)||."""
    alpha_cols = [f"alpha.{d}" for d in domains]
    _require(rows, [*alpha_cols, column])
    xy = simplex_projection(rows[alpha_cols].to_numpy(dtype=float))  # (N, 2)
    corners = polygon_vertices(len(domains))  # (K, 2)
    outline = np.vstack([corners, corners[:1]])
    fig = _figure(4.0, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(outline[:, 0], outline[:, 1], color="0.6", lw=0.8)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=rows[column].to_numpy(dtype=float), cmap="inferno")
    fig.colorbar(points, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    for name, (cx, cy) in zip(domains, corners, strict=True):
        ax.annotate(short(name), (cx, cy), xytext=(cx * 1.13, cy * 1.13), ha="center", fontsize=8)
    ax.set_title("predicted merge-vs-mix distance ||Delta(alpha)||", fontsize=9)
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_aspect("equal")
    ax.axis("off")
    return _save(fig, out)


def plot_validation(rows: pd.DataFrame, groups: list[str], out: Path) -> Path:
    """Proxy (merge) vs real mixed run per metric: the groups' plain mean, mean held-out loss
    and each group (`groups`; held-out loss per domain when there are none)."""
    _require(rows, ["kind", "mixture"])
    groups = list(dict.fromkeys(groups))
    frame = rows.copy()
    domains = [c.removeprefix("loss.") for c in frame.columns if c.startswith("loss.")]
    domains = [d for d in domains if not d.endswith(".stderr")]
    frame["mean_loss"] = frame[[f"loss.{d}" for d in domains]].mean(axis=1)
    if groups:
        frame["group mean"] = frame[[f"group.{g}" for g in groups]].mean(axis=1)
        shown = ["group mean", "mean_loss"] + [f"group.{g}" for g in groups]
    else:
        shown = ["mean_loss"] + [f"loss.{d}" for d in domains]
    mix = frame[frame["kind"] == "mix"].set_index("mixture").sort_index()
    cols = min(3, len(shown))
    fig = _figure(3.2 * cols, 3.0 * math.ceil(len(shown) / cols))
    for n, metric in enumerate(shown):
        ax = fig.add_subplot(math.ceil(len(shown) / cols), cols, n + 1)
        for kind, marker in (("merge", "o"), ("corrected", "^"), ("rescaled", "s")):
            part = frame[frame["kind"] == kind].set_index("mixture").sort_index()
            if part.empty:
                continue
            idx = [i for i in part.index if i in mix.index]
            ax.scatter(part.loc[idx, metric], mix.loc[idx, metric], s=14, marker=marker, label=kind)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("proxy", fontsize=8)
        ax.set_ylabel("real mixed run", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    return _save(fig, out)


def short(name: str, width: int = 12) -> str:
    """A domain or group name as a label: names may run to 64 characters, and a long one
    squeezed the heat maps to a few pixels and ran the simplex's corner labels together."""
    return name if len(name) <= width else name[: width - 1] + "\u2026"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out


def _require(rows: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise PlotError(f"evaluation rows lack column(s) {missing}")
    if rows.empty:
        raise PlotError("no evaluation rows to plot")


def _fmt(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.2f}"
