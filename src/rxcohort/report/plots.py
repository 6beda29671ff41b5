"""The report's figures: matplotlib's Agg canvas, returned as base64 PNG for an inline <img>.

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, not through pyplot, so
building a report neither needs a display nor changes the backend of a notebook that calls it.
Inputs are the plottable frames of :mod:`rxcohort.report.plotdata` (small counts already
removed); NaN values are simply not drawn.
"""

from __future__ import annotations

import base64
import io as _bytes_io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rxcohort.report.plotdata import km_plot_points

PRE_COLOUR = "#a6a6a6"
POST_COLOUR = "#1f5f9e"
PALETTE = ("#6baed6", "#2171b5", "#08306b", "#e6550d", "#31a354", "#756bb1", "#636363")
DPI = 110


def group_colours(groups: Sequence[str]) -> dict[str, str]:
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buffer = _bytes_io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _grid(n_panels: int, *, width: float = 4.2, height: float = 3.4, max_cols: int = 3):
    cols = min(max_cols, max(1, n_panels))
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def stratum_key(value: object) -> tuple[int, str]:
    """Order strata as a reader expects: '<40' before '40-49', 'missing' last."""
    text = str(value)
    return (2 if text == "missing" else 0 if text.startswith("<") else 1, text)


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)


def _hidden_mark(ax, x: float, text: str = "<5") -> None:
    ax.annotate(
        text,
        (x, 0),
        xytext=(0, 3),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=7,
        color="#555555",
    )


def before_after_bars(
    means: pd.DataFrame,
    *,
    groups: Sequence[str],
    drug_groups: Sequence[str],
    windows: tuple[str, str],
    unit: str,
) -> str:
    """One panel per drug group; per exposure group a pre and a post bar with 95% CI."""
    fig, axes = _grid(len(drug_groups))
    pre, post = windows
    x = np.arange(len(groups))
    width = 0.38
    for ax, drug in zip(axes, drug_groups, strict=True):
        part = means[means["drug_group"] == drug]
        for offset, window, colour in (
            (-width / 2, pre, PRE_COLOUR),
            (width / 2, post, POST_COLOUR),
        ):
            rows = part[part["window"] == window].set_index("exposure_group").reindex(list(groups))
            heights = rows["mean_ddd"].to_numpy(dtype=float)
            low = heights - rows["ci_low"].to_numpy(dtype=float)
            high = rows["ci_high"].to_numpy(dtype=float) - heights
            ax.bar(x + offset, np.nan_to_num(heights), width, color=colour, label=window)
            ax.errorbar(
                x + offset,
                heights,
                yerr=np.vstack([low, high]),
                fmt="none",
                ecolor="#222222",
                elinewidth=1,
                capsize=3,
            )
            for i, hidden in enumerate(rows["hidden"].eq(True)):
                if hidden:
                    _hidden_mark(ax, x[i] + offset)
        ax.set_xticks(x, list(groups), fontsize=8)
        ax.set_title(drug, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        _style(ax)
    axes[0].legend(fontsize=8, frameon=False)
    return _png(fig)


def did_forest(did: pd.DataFrame, *, unit: str) -> str:
    """Difference in differences with 95% CI, one line per drug group × contrast."""
    rows = did.reset_index(drop=True)
    fig = Figure(figsize=(7.5, 0.55 * len(rows) + 1.3), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    est = rows["did"].to_numpy(dtype=float)
    low = est - rows["ci_low"].to_numpy(dtype=float)
    high = rows["ci_high"].to_numpy(dtype=float) - est
    ax.errorbar(est, y, xerr=np.vstack([low, high]), fmt="s", color=POST_COLOUR, capsize=3)
    ax.axvline(0, color="#555555", linewidth=1, linestyle="--")
    ax.set_yticks(
        y, [f"{d}\n{c}" for d, c in zip(rows["drug_group"], rows["contrast"], strict=True)]
    )
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel(f"Difference in differences ({unit})", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    return _png(fig)


def trajectory_lines(
    trajectories: pd.DataFrame, *, groups: Sequence[str], drug_groups: Sequence[str]
) -> str:
    """Monthly mean DDD per person around the index date, one panel per drug group."""
    fig, axes = _grid(len(drug_groups))
    colours = group_colours(groups)
    for ax, drug in zip(axes, drug_groups, strict=True):
        part = trajectories[trajectories["drug_group"] == drug]
        for group in groups:
            rows = part[part["exposure_group"] == group].sort_values("month")
            if rows.empty:
                continue
            months = rows["month"].to_numpy(dtype=float)
            ax.plot(
                months,
                rows["mean_ddd"].to_numpy(dtype=float),
                marker="o",
                markersize=2.5,
                linewidth=1.4,
                color=colours[group],
                label=group,
            )
            ax.fill_between(
                months,
                rows["ci_low"].to_numpy(dtype=float),
                rows["ci_high"].to_numpy(dtype=float),
                color=colours[group],
                alpha=0.15,
                linewidth=0,
            )
        ax.axvline(-0.5, color="#555555", linewidth=1, linestyle="--")
        ax.set_title(drug, fontsize=10)
        ax.set_xlabel("Month relative to index (0 = first month on the index drug)", fontsize=8)
        ax.set_ylabel("DDD per person per month", fontsize=8)
        _style(ax)
    axes[0].legend(fontsize=8, frameon=False)
    return _png(fig)


def responder_bars(
    responders: pd.DataFrame, *, groups: Sequence[str], drug_groups: Sequence[str]
) -> str:
    """Share of responders (%) with Wilson 95% CI, per exposure group, one panel per drug group."""
    fig, axes = _grid(len(drug_groups))
    colours = group_colours(groups)
    x = np.arange(len(groups))
    for ax, drug in zip(axes, drug_groups, strict=True):
        rows = (
            responders[responders["drug_group"] == drug]
            .set_index("exposure_group")
            .reindex(list(groups))
        )
        share = 100 * rows["prop_responders"].to_numpy(dtype=float)
        low = share - 100 * rows["ci_low"].to_numpy(dtype=float)
        high = 100 * rows["ci_high"].to_numpy(dtype=float) - share
        ax.bar(x, np.nan_to_num(share), 0.6, color=[colours[g] for g in groups])
        ax.errorbar(x, share, yerr=np.vstack([low, high]), fmt="none", ecolor="#222222", capsize=3)
        for i, hidden in enumerate(rows["hidden"].eq(True)):
            if hidden:
                _hidden_mark(ax, x[i])
        ax.set_xticks(x, list(groups), fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(drug, fontsize=10)
        ax.set_ylabel("Responders, % of persons using before", fontsize=8)
        _style(ax)
    return _png(fig)


def km_panels(curves: pd.DataFrame, *, variables: Sequence[str], step_days: float) -> str:
    """Kaplan-Meier curves coarsened by :func:`km_plot_points`, one panel per stratum variable."""
    fig, axes = _grid(len(variables))
    for ax, variable in zip(axes, variables, strict=True):
        part = curves[curves["stratum_variable"] == variable]
        strata = sorted(part["stratum"].dropna().unique(), key=stratum_key)
        colours = group_colours(strata)
        for stratum in strata:
            points = km_plot_points(part[part["stratum"] == stratum], step_days=step_days)
            if points.empty:
                continue
            ax.step(
                points["time"],
                points["survival"],
                where="post",
                color=colours[stratum],
                linewidth=1.5,
                label=str(stratum),
            )
            if len(strata) == 1:
                ax.fill_between(
                    points["time"],
                    points["ci_low"],
                    points["ci_high"],
                    step="post",
                    color=colours[stratum],
                    alpha=0.18,
                    linewidth=0,
                )
        ax.set_ylim(0, 1.02)
        ax.set_title("overall" if variable == "overall" else f"by {variable}", fontsize=10)
        ax.set_xlabel("Days since index", fontsize=8)
        ax.set_ylabel("Share still on treatment", fontsize=8)
        _style(ax)
        if len(strata) > 1:
            ax.legend(fontsize=7, frameon=False)
    return _png(fig)


def dose_histogram(table: pd.DataFrame, *, unit: str) -> str:
    """Persons per dose bin; a hidden bin (``hidden``) is marked with its ``n_persons`` marker
    (``<5``, ``masked``) instead of drawn."""
    rows = table[table["bin_order"] >= 0].sort_values("bin_order").reset_index(drop=True)
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(rows))
    heights = np.where(rows["hidden"], 0, rows["n_persons"]).astype(float)
    ax.bar(x, heights, 0.85, color=POST_COLOUR)
    for i, (hidden, value) in enumerate(zip(rows["hidden"], rows["n_persons"], strict=True)):
        if hidden:
            _hidden_mark(ax, x[i], value if isinstance(value, str) else "<5")
    ax.set_xticks(x, list(rows["bin"]), rotation=45, ha="right", fontsize=8)
    ax.set_xlabel(unit, fontsize=9)
    ax.set_ylabel("Persons", fontsize=9)
    _style(ax)
    return _png(fig)


USE_SEX_COLOURS = {"all": "#222222", "female": "#b2182b", "male": "#2166ac"}


def use_over_time_lines(
    frame: pd.DataFrame, *, drugs: Sequence[str], index_period: tuple[object, object] | None
) -> str:
    """Users per 1,000 inhabitants per month by sex, one panel per drug; the index period
    shaded."""
    fig, axes = _grid(len(drugs))
    for ax, drug in zip(axes, drugs, strict=True):
        part = frame[frame["drug"] == drug]
        for sex, colour in USE_SEX_COLOURS.items():
            rows = part[part["sex"] == sex].sort_values("period_start")
            if rows.empty:
                continue
            ax.plot(
                rows["period_start"],
                rows["per_1000"].to_numpy(dtype=float),
                marker="o",
                markersize=2.5,
                linewidth=1.4,
                color=colour,
                label=sex,
            )
            ax.fill_between(
                rows["period_start"],
                rows["ci_low"].to_numpy(dtype=float),
                rows["ci_high"].to_numpy(dtype=float),
                color=colour,
                alpha=0.12,
                linewidth=0,
            )
        if index_period is not None:
            ax.axvspan(
                pd.Timestamp(index_period[0]),
                pd.Timestamp(index_period[1]),
                color="#999999",
                alpha=0.12,
                linewidth=0,
            )
        ax.set_title(drug, fontsize=10)
        ax.set_ylabel("Users per 1,000 inhabitants", fontsize=8)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        _style(ax)
    axes[0].legend(fontsize=8, frameon=False)
    return _png(fig)
