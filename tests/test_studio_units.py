"""The studio as a user reads it (issue 14), piece by piece without a browser: run durations across resumes,
one ETA, the VAE report's share of the bar, settings and availability in words, plots on separate panels,
run choices that tell runs apart, missing table rows explained, what a missing photo view costs."""
from __future__ import annotations

import json
import time

import pytest

from engine import runs, storage
from engine.config import UserError
from engine.jobs import Job

EMOJI = [(0x2600, 0x27BF), (0x1F000, 0x1FAFF), (0xFE0F, 0xFE0F), (0x2B00, 0x2BFF)]  # need an emoji font


def has_emoji(text: str) -> list[str]:
    return sorted({c for c in text if any(a <= ord(c) <= b for a, b in EMOJI)})


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_a_resumed_run_keeps_its_first_start_and_adds_up_the_time_it_ran(tmp_path, monkeypatch):
    """Item 5: 60 s of work, a 10-minute pause, a resume of 30 s: started = the first start, duration 90 s."""
    clock = Clock()
    monkeypatch.setattr(runs.time, "time", clock)
    path = runs.create_run("train3d", {}, root=tmp_path)
    rec = runs.RunRecorder(path)
    rec.start()
    clock.t += 60
    rec.finish("cancelled", "cancelled by the user")
    clock.t += 600
    rec.reopen("queued", "queued (resume)")
    rec.start(started=clock.t)
    clock.t += 20
    row = runs.summarise(path, live_ids={path.name})
    assert row["state"] == "running" and row["duration"] == pytest.approx(80)
    clock.t += 10
    rec.finish("succeeded", "done")
    row = runs.summarise(path)
    assert row["started"] == 1000.0 and row["duration"] == pytest.approx(90)
    # killed during a third stretch (no finish): it counts up to the process's last status write
    rec.reopen("queued", "queued (resume)")
    rec.start(started=clock.t)
    clock.t += 5
    rec.progress(0.5, "half")
    clock.t += 300  # dead: nothing written
    assert runs.summarise(path, live_ids=set())["duration"] == pytest.approx(95)
    rec.reopen("queued", "queued (resume)")  # resumed again later: the dead stretch closed at its last write
    rec.start(started=clock.t)
    clock.t += 1
    rec.finish("succeeded", "done")
    assert runs.summarise(path)["duration"] == pytest.approx(96)


def test_one_eta_for_the_whole_job_from_one_estimator(monkeypatch):
    """Item 8: the bar's ETA is the job's (from its first progress report, so a resumed job starting at 40 %
    is timed from there); the training loop's own ETA in the message is not shown beside it."""
    from studio.components import progress_html

    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    job = Job(id="j", name="j", kind="train3d", lane="cpu", fn=None, kwargs={}, run_dir=None, state="running")
    job._set_progress(0.4, "resumed")
    clock.t += 10
    job._set_progress(0.5, "1 of 2 student · epoch 1/8 · step 4/21 · ETA 4m 26s")
    snap = job.snapshot()
    assert snap["eta"] == pytest.approx(50)  # 10 s for 10 %: 50 s for the last 50 %
    bar = progress_html(snap)
    assert bar.count("ETA") == 1 and "ETA 50s" in bar and "1 of 2 student · epoch 1/8 · step 4/21" in bar


def test_the_vae_report_has_its_share_of_the_bar_and_its_own_messages(tmp_path, monkeypatch):
    """Item 9: the report no longer sits at 96 %: it moves the bar from 80 % to 100 % saying what it does."""
    from engine import workflows
    from engine.evaluate import vae_report
    from tests.conftest import Recording
    from tests.test_vae_train import TINY, _fake_fashion_mnist

    _fake_fashion_mnist(tmp_path)
    monkeypatch.setenv("DS_FASHION_MNIST", str(tmp_path))
    monkeypatch.setattr(vae_report, "SPEED_REPEATS", 2)
    monkeypatch.setattr(vae_report, "SPEED_BATCH", 8)

    class Bar(Recording):
        def __init__(self):
            super().__init__()
            self.seen = []

        def progress(self, fraction, message=""):
            self.seen.append((fraction, message))

    ctx = Bar()
    workflows.distil_and_report(ctx, {**TINY, "finetune_epochs": 0, "perceptual_weight": 0.0,
                                      "checkpoint_dir": str(tmp_path / "out")})
    report = [(f, m) for f, m in ctx.seen if m.startswith("report")]
    fractions = [f for f, _ in report]
    assert fractions == sorted(fractions) and fractions[0] == pytest.approx(0.8) and fractions[-1] > 0.95
    assert len({m.split(",")[0] for _, m in report}) >= 3  # images, ONNX export, timing: each says so
    assert max(f for f, m in ctx.seen if not m.startswith("report") and f < 1) <= 0.8 + 1e-9


def test_cache_settings_and_teacher_availability_are_words_not_a_dict_or_emoji(tmp_path):
    """Item 10: ``key = value`` settings, availability marked in text; and no emoji
    anywhere in the page (they render as empty boxes without an emoji font)."""
    from engine.jobs import JobRunner
    from studio.app import build_app
    from studio.components import availability_md, settings_md
    from studio.context import Studio
    from studio.tabs.cache import summary_md

    md = settings_md({"grid": 96, "alpha_threshold": 128, "blur": {"voxels": 0.6}, "steps": None})
    assert md == "`grid = 96` · `alpha_threshold = 128` · `blur.voxels = 0.6`"
    text = availability_md()
    assert "(available)" in text and not has_emoji(text)
    roots = {n: tmp_path / n for n in ("data", "cache", "runs")}
    for p in roots.values():
        p.mkdir()
    (roots["cache"] / "c").mkdir()
    storage.write_json(roots["cache"] / "c" / "metadata.json",
                       {"teacher": "visual-hull", "settings": {"preset": "fast", "grid": 64}, "entries": {}})
    studio = Studio(runner=JobRunner(runs_root=roots["runs"]), data_root=roots["data"], cache_root=roots["cache"],
                    runs_root=roots["runs"], scratch=tmp_path / "scratch")
    summary, _ = summary_md(studio, "c")
    assert "{" not in summary and "`preset = fast`" in summary, summary
    page = json.dumps(build_app(studio).get_config_file(), ensure_ascii=False, default=str)
    assert not has_emoji(page), has_emoji(page)


def _traces(fig) -> dict[str, str]:
    return {t.name: t.yaxis for t in fig.data}


def test_vae_plot_shows_the_total_and_its_terms_on_their_own_panel(tmp_path):
    """Item 11: the records carry ``loss`` (the total); the terms, one of them 100x the others, get their own
    panel with a log axis."""
    from studio.context import Studio
    from studio.tabs.vae import live_view

    run = runs.create_run("vae", {}, root=tmp_path)
    for i in range(5):
        runs.append_history(run, {"scope": "batch", "phase": "distill", "step": i, "loss": 0.5 - 0.05 * i,
                                  "recon": 0.02, "kl": 0.001, "latent": 0.03, "output": 0.01, "perceptual": 2.0,
                                  "lr": 1e-3, "seconds": 0.1})
    fig, _grid = live_view(Studio(runs_root=tmp_path, scratch=tmp_path / "s"), run.name)
    axes = _traces(fig)
    assert axes["loss"] == "y" and {axes[k] for k in ("recon", "kl", "perceptual")} == {"y2"}
    assert fig.layout.yaxis2.type == "log" and "lr" not in axes and "seconds" not in axes


def test_runs_history_plots_losses_metrics_and_schedules_apart_never_counters():
    """Item 12: a 3D run's history — never ``global_step``; losses, val metrics, α and lr on four panels."""
    from studio import plots

    hist = []
    for e in (1, 2):
        for s in (1, 2):
            hist.append({"scope": "step", "epoch": e, "step": s, "global_step": 2 * (e - 1) + s, "loss": 0.1 / s,
                         "cd_teacher": 0.05, "cd_gt": 0.04, "edge": 0.001, "smooth": 0.01, "alpha": 0.9, "lr": 1e-3,
                         "seconds": 0.2, "time": 1.0})
        hist.append({"scope": "epoch", "epoch": e, "step": 2, "loss": 0.08, "val_cd_l1": 0.02, "val_fscore@1%": 0.4,
                     "alpha": 0.9 - 0.3 * e, "lr": 1e-3 / e, "seconds": 1.0, "seconds_per_step": 0.5, "best": True,
                     "skipped_steps": 0})
    fig = plots.history_figure(hist)
    axes = _traces(fig)
    assert not {"global_step", "step", "epoch", "seconds", "seconds_per_step", "skipped_steps", "best", "time"} & set(axes)
    assert axes["loss"] == axes["edge"] == "y" and axes["val_cd_l1"] == axes["val_fscore@1%"] == "y2"
    assert axes["alpha"] not in (axes["loss"], axes["val_cd_l1"], axes["lr"]) and len(set(axes.values())) == 4
    assert len(fig.data) <= 10 and len({t.legend for t in fig.data}) == 4  # one small legend per panel
    constant = [{**r, "lr": 1e-3} for r in hist]  # a schedule that never changes gets no panel
    assert "lr" not in _traces(plots.history_figure(constant))


def test_train3d_val_cd_l1_and_alpha_are_on_separate_panels(tmp_path):
    """Item 13: a CD-L1 of 0.02 never shares an axis with α of 0.3-0.9."""
    from studio.context import Studio
    from studio.tabs.train3d import figures

    run = runs.create_run("train3d", {}, root=tmp_path)
    for e in (1, 2, 3):
        runs.append_history(run, {"scope": "epoch", "epoch": e, "val_cd_l1": 0.02 / e, "alpha": 0.9 - 0.2 * e})
    _loss, epoch = figures(Studio(runs_root=tmp_path, scratch=tmp_path / "s"), run.name)
    axes = _traces(epoch)
    assert axes["val_cd_l1"] != axes["alpha"]
    legends = [epoch.layout[t.legend or "legend"] for t in epoch.data]
    assert all(lg.yanchor == "bottom" for lg in legends)  # above each panel, not over the axis titles below


def _fake_train_run(root, name, state="succeeded", baseline=False, vals=(0.03, 0.021), epochs=2, best=True):
    path = runs.create_run("train3d", {"epochs": epochs, "baseline": baseline}, root=root, run_id=name)
    for e, v in enumerate(vals, start=1):
        runs.append_history(path, {"scope": "epoch", "epoch": e, "val_cd_l1": v})
    runs.write_status(path, state=state, started=time.time(), finished=time.time())
    if best:
        (path / "checkpoints").mkdir()
        (path / "checkpoints" / "best.pt").write_bytes(b"")
    return path


def test_run_choices_name_the_run_its_role_epochs_and_val_cd_l1(tmp_path):
    """Item 3: a student and its baseline tell apart in the picker; only finished runs with a checkpoint."""
    from studio.components import run_choices
    from engine.jobs import JobRunner
    from studio.context import Studio

    _fake_train_run(tmp_path, "r1")
    _fake_train_run(tmp_path, "r1-baseline", baseline=True, vals=(0.02, 0.019))
    _fake_train_run(tmp_path, "r2", state="running", best=False)
    studio = Studio(runner=JobRunner(runs_root=tmp_path), runs_root=tmp_path, scratch=tmp_path / "s")
    choices = dict((v, k) for k, v in run_choices(studio))
    assert choices == {"r1": "r1 · student · 2/2 ep · val CD-L1 0.0210",
                       "r1-baseline": "r1-baseline · baseline (GT only) · 2/2 ep · val CD-L1 0.0190"}
    every = dict((v, k) for k, v in run_choices(studio, finished=False))
    assert every["r2"].startswith("r2 · student") and every["r2"].endswith("interrupted")


def test_the_comparison_says_which_rows_are_missing_and_why(tmp_path):
    """Item 1: a stopped student+baseline job, and a run trained alone, say what the table lacks."""
    from engine.jobs import JobRunner
    from engine.workflows import PAIR
    from studio.context import Studio
    from studio.tabs.train3d import comparison_md

    studio = Studio(runner=JobRunner(runs_root=tmp_path), runs_root=tmp_path, scratch=tmp_path / "s")
    pair = _fake_train_run(tmp_path, "p", state="cancelled")
    storage.write_json(pair / "config.json", {"kind": "train3d", "epochs": 2, "with_baseline": True})
    base = _fake_train_run(tmp_path, "p-baseline", state="cancelled", baseline=True, best=False)
    runs.write_status(base, message="not started: the student run p was stopped first; resuming it trains both")
    storage.write_json(pair / PAIR, {"baseline_run": "p-baseline", "student_run": "p"})
    md = comparison_md(studio, "p")
    assert "Resume" in md and "baseline row missing" in md and "not started" in md, md

    alone = _fake_train_run(tmp_path, "a")
    storage.write_json(alone / "config.json", {"kind": "train3d", "epochs": 2, "cache": str(tmp_path / "c")})
    student = {"shoes": 1, "cd_l1": 0.03, "cd_l2": 0.001, "fscore@1%": 0.2, "fscore@2%": 0.4, "normal_consistency": 0.8}
    storage.write_json(alone / "evaluation.json", {
        "run": "a", "checkpoint": "best", "epoch": 2, "baseline_run": None, "normalisation": "bbox", "val_shoes": 1,
        "teacher_shoes": 0, "summary": {"student": student, "baseline": None, "teacher": None}, "ratios": {},
        "rows": [{"id": "shoe_000", "student": student}]})
    md = comparison_md(studio, "a")
    assert "| student |" in md and "also train the baseline" in md and "teacher row missing" in md, md


def test_a_missing_view_is_named_with_what_it_costs():
    """Item 14: one photo — the views given, the ones missing, and what that does to student and visual hull."""
    from studio.components import views_note

    one = views_note(["front"], ("student", "visual-hull"))
    assert "1 of 4" in one and "missing: left, back, right" in one
    assert "blob" in one and "slab" in one and "several views" in one
    assert views_note(["right", "front", "left", "back"]) == "Views given: all four (front, left, back, right)."



def test_the_train_form_names_a_student_size_and_its_width_overrides_only_when_given(tmp_path):
    from studio.context import Studio
    from studio.tabs.train3d import make_config

    studio = Studio(runner=None, data_root=tmp_path, cache_root=tmp_path, runs_root=tmp_path, scratch=tmp_path / "s")
    args = ("sample", None, "default", 0.9, 0.3, 50, 1e-3, 4, 2.0, 1.0)
    assert make_config(studio, *args, 0, 0)["student"] == {}  # the default size, its own width
    fast = make_config(studio, *args, 0, 0, 0.0, 0, "fast")["student"]
    assert fast["width"] == 8 and fast["image_size"] == 80 and fast["fine_maps"] == 1
    assert make_config(studio, *args, 10, 0, 0.0, 0, "fast")["student"]["width"] == 10
    with pytest.raises(UserError, match="student size 'huge'"):
        make_config(studio, *args, 0, 0, 0.0, 0, "huge")


def test_picking_the_fast_size_gives_it_twice_the_epochs_unless_the_user_typed_some():
    from studio.tabs.train3d import epochs_for_size

    assert epochs_for_size("fast", 50) == 100 and epochs_for_size("default", 100) == 50
    assert epochs_for_size("fast", 30) == 30 and epochs_for_size("fast", None) == 100
