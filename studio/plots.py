"""Plotly figures drawn from run history records (plain dicts from ``history.jsonl``).

One layout for every history plot: ``panels_figure`` stacks panels (one y axis each, a shared x axis),
so quantities of different scales never share an axis (a CD-L1 of 0.02 beside α of 0.3-0.9 would look
flat). Each panel has its own legend, above it, clear of the axis titles. A panel's y axis is logarithmic
when its values are all positive and span more than ``LOG_SPAN`` (max / min), e.g. a perceptual term
100x the KL term. ``history_panels`` sorts a run's keys into losses, metrics and schedules (α, lr);
counters (steps, epochs, seconds, flags) are never plotted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import plotly.graph_objects as go

COUNTERS = {"time", "seconds", "seconds_per_step", "step", "epoch", "global_step", "batch", "phase", "rank",
            "skipped_steps", "skipped", "best", "calls", "images", "shoes", "workers"}  # bookkeeping, never plotted
SCHEDULES = ("alpha", "lr", "temperature")  # set by the schedule, not learned: one panel each
METRIC_MARKS = ("val_", "iou", "psnr", "ssim", "fscore", "cka", "accuracy")  # a key with one of these is a metric
LOG_SPAN = 20.0  # a panel's values spanning more than this ratio (all > 0) get a log axis
PANEL_PX, GAP_PX = 200, 50  # px: one panel; between panels (x axis and its title), plus the next panel's legend
LEGEND_ROW_PX, LEGEND_WIDTH_PX = 20, 420  # a legend row's height; its width in a half-width plot (1400 px window)
MARGIN = dict(l=60, r=12, t=56, b=40)  # t: the figure's title (below the viewer's label); + the first legend's rows


@dataclass
class Panel:
    """One stacked panel: ``keys`` of ``records`` against ``x_key`` (the record's index when None or absent)."""
    title: str
    records: Sequence[dict[str, Any]]
    keys: Sequence[str]
    x_key: str | None = None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def numeric_keys(history: Iterable[dict[str, Any]]) -> list[str]:
    """Keys holding numbers in any record, in first-seen order, minus counters."""
    keys: list[str] = []
    for rec in history:
        for k, v in rec.items():
            if k not in COUNTERS and k not in keys and _number(v):
                keys.append(k)
    return keys


def key_group(key: str) -> str | None:
    """``"loss"``, ``"metric"`` or ``"schedule"`` for a history key; None for a counter."""
    if key in COUNTERS or key.startswith("n_") or key.endswith(("_seconds", "_steps", "_ms")):
        return None
    if key in SCHEDULES or key.startswith(tuple(f"{k}_" for k in SCHEDULES)):  # alpha_batch: α per batch
        return "schedule"
    return "metric" if any(m in key for m in METRIC_MARKS) else "loss"


def legend_rows(names: Sequence[str]) -> int:
    """Rows a horizontal legend of ``names`` takes: each entry ≈ 40 px (symbol, gaps) + 6.5 px a character
    (10 px font), wrapped at ``LEGEND_WIDTH_PX``."""
    rows, used = 1, 0.0
    for name in names:
        width = 40 + 6.5 * len(name)
        if used and used + width > LEGEND_WIDTH_PX:
            rows, used = rows + 1, 0.0
        used += width
    return rows


def _series(records: Sequence[dict], key: str, x_key: str | None) -> tuple[list, list]:
    pts = [(r.get(x_key, i) if x_key else i, r[key]) for i, r in enumerate(records) if _number(r.get(key))]
    return [p[0] for p in pts], [p[1] for p in pts]


def panels_figure(panels: Sequence[Panel], title: str = "", empty: str = "no metrics yet") -> go.Figure:
    """The panels that have data, stacked top to bottom (see the module docstring); none -> ``empty`` text."""
    from plotly.subplots import make_subplots

    drawn = []
    for p in panels:
        lines = [(k, *_series(p.records, k, p.x_key)) for k in p.keys]
        lines = [line for line in lines if line[1]]
        if lines:
            drawn.append((p, lines))
    n = max(len(drawn), 1)
    rows = [legend_rows([k for k, *_ in lines]) for _, lines in drawn] or [1]  # legend rows above each panel
    top, gap = MARGIN["t"] + LEGEND_ROW_PX * rows[0], GAP_PX + LEGEND_ROW_PX * max(rows[1:], default=1)
    height = top + MARGIN["b"] + PANEL_PX * n + gap * (n - 1)
    area = height - top - MARGIN["b"]  # px of the plotting area, panels and gaps
    fig = make_subplots(rows=n, cols=1, vertical_spacing=gap / area if n > 1 else 0.0)
    for i, (p, lines) in enumerate(drawn, start=1):
        legend = "legend" if i == 1 else f"legend{i}"
        for key, xs, ys in lines:
            fig.add_trace(go.Scatter(x=xs, y=ys, name=key, legend=legend,
                                     mode="lines+markers" if len(xs) < 60 else "lines"), row=i, col=1)
        values = [v for _, _, ys in lines for v in ys]
        log = min(values) > 0 and max(values) / min(values) > LOG_SPAN
        fig.update_yaxes(title_text=p.title + (" (log)" if log else ""), type="log" if log else "linear",
                         title_font_size=11, row=i, col=1)
        fig.update_xaxes(title_text=p.x_key or "record", title_font_size=11, title_standoff=4, row=i, col=1)
        panel_top = fig.layout[f"yaxis{'' if i == 1 else i}"].domain[1]
        fig.layout[legend] = dict(orientation="h", x=0, xanchor="left", y=panel_top, yanchor="bottom",
                                  font_size=10, bgcolor="rgba(255,255,255,0)")
    fig.update_layout(title=dict(text=title, font_size=14, y=1.0, yanchor="top", yref="container", pad=dict(t=26)),
                      height=height, margin={**MARGIN, "t": top}, showlegend=True)
    if not drawn:
        fig.add_annotation(text=empty, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def history_panels(history: Sequence[dict[str, Any]]) -> list[Panel]:
    """A run's history as panels: losses per step / batch (per epoch when the run logs no steps), metrics
    per epoch, one panel per schedule key that changes. Step records of a skipped (non-finite) step are
    left out."""
    fine = [r for r in history if r.get("scope", "step") in ("step", "batch") and not r.get("skipped")]
    coarse = [r for r in history if r.get("scope") == "epoch"]
    x_fine = "global_step" if any("global_step" in r for r in fine) else None
    x_coarse = "epoch" if any("epoch" in r for r in coarse) else None

    def keys(records, group):
        return [k for k in numeric_keys(records) if key_group(k) == group]

    loss_records, loss_x = (fine, x_fine) if keys(fine, "loss") else (coarse, x_coarse)
    metric_records, metric_x = (coarse, x_coarse) if keys(coarse, "metric") else (fine, x_fine)
    sched_records, sched_x = (coarse, x_coarse) if keys(coarse, "schedule") else (fine, x_fine)
    scheds = keys(sched_records, "schedule")
    scheds = [k for k in scheds if k.split("_")[0] == k or k.split("_")[0] not in scheds]  # alpha, not alpha_batch too
    return ([Panel("losses", loss_records, keys(loss_records, "loss"), loss_x),
             Panel("metrics", metric_records, keys(metric_records, "metric"), metric_x)]
            + [Panel(k, sched_records, [k], sched_x) for k in scheds
               if len({r[k] for r in sched_records if k in r}) > 1])  # a constant lr says nothing as a line


def history_figure(history: Sequence[dict[str, Any]], title: str = "history") -> go.Figure:
    """``panels_figure`` of ``history_panels``: what the Runs tab draws for any run."""
    return panels_figure(history_panels(history), title=title)


def distillation_figure(curves: dict[str, list], teacher_cd_l1: float | None) -> go.Figure:
    """Val CD-L1 per epoch of the student and its GT-only baseline, the teacher's CD-L1 as a dashed line
    (``engine.evaluate.distill_report`` curves: ``{name: [[epoch, value], ...]}``)."""
    fig = go.Figure()
    for name, curve in curves.items():
        if curve:
            fig.add_trace(go.Scatter(x=[e for e, _ in curve], y=[v for _, v in curve], mode="lines+markers",
                                     name=f"{name} val CD-L1"))
    if teacher_cd_l1 is not None and fig.data:
        fig.add_hline(y=teacher_cd_l1, line_dash="dash", annotation_text=f"teacher {teacher_cd_l1:.4f}")
    fig.update_layout(title="val CD-L1 per epoch (normalised: longest side 1)", xaxis_title="epoch",
                      yaxis_title="CD-L1", height=340, margin=dict(l=60, r=12, t=70, b=40),
                      legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom", font_size=11))
    if not fig.data:
        fig.add_annotation(text="no validation epochs yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig
