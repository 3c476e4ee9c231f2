"""What every tab shares: the engine's job runner and the folders it reads and writes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine import config, jobs


@dataclass
class Studio:
    runner: jobs.JobRunner = field(default_factory=jobs.default_runner)
    data_root: Path = field(default_factory=config.data_root)
    cache_root: Path = field(default_factory=config.cache_root)
    runs_root: Path = field(default_factory=config.runs_root)

    @property
    def allowed_roots(self) -> list[Path]:
        """Folders a path typed into the UI may point into."""
        return [self.data_root, self.cache_root, self.runs_root]
