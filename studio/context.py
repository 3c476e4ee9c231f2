"""What every tab shares: the engine's job runner and the folders it reads and writes."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from engine import config, jobs


@dataclass
class Studio:
    runner: jobs.JobRunner = field(default_factory=jobs.default_runner)
    data_root: Path = field(default_factory=config.data_root)
    cache_root: Path = field(default_factory=config.cache_root)
    runs_root: Path = field(default_factory=config.runs_root)
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "distillation-studio")

    def __post_init__(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)  # viewer GLBs and downloads handed to Gradio

    def dataset_path(self, name: str) -> Path:
        """A dataset chosen in the UI: a folder name under the data root, or a path inside it. Symlinks are
        resolved first, so a link under the data root that points elsewhere is refused too."""
        if not name:
            raise config.UserError("choose a dataset first")
        if not isinstance(name, str):  # a raw API call may send anything
            raise config.UserError(f"dataset name must be text (got {type(name).__name__} {name!r:.40})")
        if "/" not in name and "\\" not in name:
            config.validate_id(name, "dataset name")
            config.confine(self.data_root / name, [self.data_root], "dataset folder")
            return self.data_root / name
        return config.confine(name, [self.data_root], "dataset folder")

    @property
    def allowed_roots(self) -> list[Path]:
        """Folders a path typed into the UI may point into."""
        return [self.data_root, self.cache_root, self.runs_root]
