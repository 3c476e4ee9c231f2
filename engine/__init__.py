"""Distillation Studio engine: all the work (data, teachers, cache, students, training, evaluation,
export, jobs, runs, CLI). Never imports gradio; the studio/ package draws and calls in here."""

__version__ = "0.1.0"
