"""Start the studio: ``python app.py [--host 127.0.0.1] [--port 7860]`` (what ``make run`` does).

Binds 127.0.0.1 unless ``--host`` (or ``DS_HOST``) asks otherwise.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from studio.app import CSS_PATH, build_app  # noqa: E402  (after the analytics switch)

MAX_UPLOAD = "20mb"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Distillation Studio (Gradio)")
    parser.add_argument("--host", default=os.environ.get("DS_HOST", "127.0.0.1"),
                        help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it to your network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DS_PORT", "7860")))
    args = parser.parse_args(argv)
    demo = build_app()
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=args.host, server_port=args.port, css_paths=[CSS_PATH], max_file_size=MAX_UPLOAD,
                footer_links=["api", "settings"])


if __name__ == "__main__":
    main()
