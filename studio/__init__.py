"""The studio: Gradio tabs that draw, validate form input and call ``engine``.

Rules: no tensor library here (only engine touches it); never do heavy work in a handler (submit a job to the engine's
runner and poll it with a ``gr.Timer``). Each tab is one small module in ``studio/tabs/``.
"""
