"""Runs tab: every run folder (from this session or an earlier one) with its state, config, live history
plot and log tail. A timer refreshes it while anything is active."""
from __future__ import annotations

import time

import gradio as gr

from engine import runs
from engine.config import UserError
from studio.components import error_text
from studio.context import Studio
from studio.plots import history_figure

HEADERS = ["id", "kind", "state", "started", "duration", "progress", "message"]


def run_rows(studio: Studio) -> list[list]:
    """Table rows for every run under the runs root, newest first."""
    rows = []
    for r in runs.list_runs(studio.runs_root, live_ids=studio.runner.live_ids()):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])) if r["started"] else ""
        rows.append([r["id"], r["kind"], r["state"], started, runs.format_duration(r["duration"]),
                     f"{100 * float(r['progress'] or 0):.0f}%", r["message"]])
    return rows


def run_detail(studio: Studio, run_id: str | None):
    """(status markdown, config dict, history figure, log text) for one run."""
    if not run_id:
        return "Select a run.", {}, history_figure([], title="history"), ""
    try:
        run = runs.load_run(run_id, studio.runs_root, live_ids=studio.runner.live_ids())
    except UserError as exc:
        return error_text(exc), {}, history_figure([], title="history"), ""
    st = run["status"]
    lines = [f"**{run_id}** — {st.get('kind', '?')} — **{st.get('state', '?')}** "
             f"({100 * float(st.get('progress') or 0):.0f}%) {st.get('message', '')}",
             f"folder: `{run['path']}` · {len(run['history'])} history records"]
    if st.get("error"):
        lines.append(f"\n**Error:** {st['error']}")
    fig = history_figure(run["history"], title=f"{run_id}")
    return "\n\n".join(lines), run["config"], fig, "\n".join(run["log"][-60:])


def build(studio: Studio) -> None:
    gr.Markdown("Every job writes a run folder (`config.json`, `status.json`, `history.jsonl`, checkpoints). "
                "Runs from earlier sessions are listed too; one that was running when the studio stopped "
                "shows as **interrupted**.")
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm")
        cancel = gr.Button("Cancel selected run", size="sm", variant="stop", elem_id="runs-cancel")
        auto = gr.Checkbox(value=True, label="live refresh (2 s)")
    cancel_note = gr.Markdown(elem_id="runs-cancel-note")  # the cancel's reply: the 2 s refresh never writes here
    table = gr.Dataframe(headers=HEADERS, value=lambda: run_rows(studio), interactive=False, wrap=True,
                         label="Runs", elem_id="runs-table")
    selected = gr.Dropdown(choices=[r[0] for r in run_rows(studio)], value=None, label="Run",
                           allow_custom_value=True, elem_id="runs-select")  # IDs are validated by engine.runs
    status = gr.Markdown("Select a run.")
    with gr.Row():
        plot = gr.Plot(label="History", elem_id="runs-plot")
        cfg = gr.JSON(label="config.json")
    log = gr.Textbox(label="Log tail", lines=8, max_lines=20, interactive=False)
    timer = gr.Timer(2.0)

    def list_runs() -> list[list]:
        return run_rows(studio)

    def refresh_all(run_id):
        rows = run_rows(studio)
        ids = [r[0] for r in rows]
        # the choices only: a refresh that set the value too could undo a pick made while it ran
        return (rows, gr.update(choices=ids), *run_detail(studio, run_id if run_id in ids else None))

    def on_select(evt: gr.SelectData, rows):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            run_id = rows.iloc[row, 0] if hasattr(rows, "iloc") else rows[row][0]
        except (IndexError, KeyError, TypeError):
            return gr.update()
        return gr.update(value=run_id)

    def do_cancel(run_id):
        if not run_id:
            return "Select a run first."
        snap = studio.runner.get(run_id)
        if snap and snap.get("stopping"):  # asked before: still stopping, not "not running"
            return f"**{run_id}** is stopping: cancel already requested, it ends at its next step."
        if studio.runner.cancel(run_id):
            return f"Cancel requested for **{run_id}**: it stops at its next step."
        return f"**{run_id}** is not running in this studio process; nothing to cancel."

    outputs = [table, selected, status, cfg, plot, log]
    refresh.click(refresh_all, inputs=[selected], outputs=outputs, api_name="refresh_runs")
    selected.change(lambda rid: run_detail(studio, rid), inputs=[selected], outputs=[status, cfg, plot, log],
                    api_name="run_detail", show_progress="minimal")
    table.select(on_select, inputs=[table], outputs=[selected])
    cancel.click(do_cancel, inputs=[selected], outputs=[cancel_note], api_name="cancel_run")
    selected.change(lambda _rid: "", inputs=[selected], outputs=[cancel_note])  # a reply about another run
    auto.change(lambda on: gr.Timer(active=on), inputs=[auto], outputs=[timer])
    timer.tick(refresh_all, inputs=[selected], outputs=outputs, show_progress="hidden")
    # a hidden endpoint for scripts and tests: the table as JSON rows
    gr.Button(visible=False).click(list_runs, outputs=[table], api_name="list_runs")
