"""Plotly figures drawn from run history records (plain dicts from ``history.jsonl``)."""
from __future__ import annotations

from typing import Any, Iterable

import plotly.graph_objects as go

X_KEYS = ("step", "epoch")  # preferred x axis, in order
SKIP_KEYS = {"time", "seconds", "step", "epoch", "phase", "rank"}


def numeric_keys(history: list[dict[str, Any]]) -> list[str]:
    """Keys holding numbers in any record, in first-seen order, minus bookkeeping keys."""
    keys: list[str] = []
    for rec in history:
        for k, v in rec.items():
            if k not in SKIP_KEYS and k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    return keys


def history_figure(history: list[dict[str, Any]], keys: Iterable[str] | None = None,
                   title: str = "history", x_key: str | None = None) -> go.Figure:
    """One line per metric key against step (or epoch, or record index); empty history -> empty figure."""
    fig = go.Figure()
    if x_key is None:
        x_key = next((k for k in X_KEYS if any(k in r for r in history)), None)
    for key in keys or numeric_keys(history):
        pts = [(r.get(x_key, i) if x_key else i, r[key]) for i, r in enumerate(history)
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if pts:
            xs, ys = zip(*pts)
            fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode="lines+markers" if len(pts) < 60 else "lines",
                                     name=key))
    fig.update_layout(title=title, xaxis_title=x_key or "record", height=360,
                      margin=dict(l=40, r=10, t=40, b=40), legend=dict(orientation="h"))
    if not fig.data:
        fig.add_annotation(text="no metrics yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


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
                      yaxis_title="CD-L1", height=340, margin=dict(l=50, r=10, t=40, b=40),
                      legend=dict(orientation="h", y=-0.25))
    if not fig.data:
        fig.add_annotation(text="no validation epochs yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig
