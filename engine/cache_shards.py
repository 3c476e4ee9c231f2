"""A sharded cache build (torchrun: one ``engine.cache.build_cache`` call per rank): the gloo group the
ranks meet in, and the end of the build — totals summed over the ranks, the per-rank metadata shards
(``metadata.rank<R>.json``) merged into ``metadata.json`` by rank 0."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from engine import storage
from engine.config import UserError

METADATA = "metadata.json"
SHARD_GLOB = "metadata.rank*.json"


def dist_group(world_size: int):
    """A gloo process group for a sharded build (``None`` for one process); needs torchrun's env."""
    if world_size <= 1:
        return None
    import datetime

    import torch.distributed as dist

    timeout = datetime.timedelta(hours=24)  # ranks wait for the slowest shard
    try:
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timeout)
            return dist.group.WORLD
        return dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"a sharded cache build needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, "
                        f"MASTER_PORT): {str(exc).splitlines()[0][:160]}") from None


def finish(cache_dir: Path, group, rank: int, world_size: int, totals: dict) -> dict:
    """Sum totals over ranks; rank 0 merges the shards into metadata.json (and removes them)."""
    if group is not None:
        import torch
        import torch.distributed as dist

        counts = torch.tensor([totals[k] for k in ("done", "failed", "skipped", "bytes")], dtype=torch.float64)
        dist.all_reduce(counts, group=group)  # also the barrier: every shard is written now
        secs = torch.tensor([totals["seconds"]], dtype=torch.float64)
        dist.all_reduce(secs, op=dist.ReduceOp.MAX, group=group)
        totals = {k: int(v) for k, v in zip(("done", "failed", "skipped", "bytes"), counts.tolist())}
        totals["seconds"] = float(secs[0])
    if rank == 0:
        shards = glob.glob(str(Path(cache_dir) / SHARD_GLOB))
        if shards:
            from engine.cache import read_metadata

            merged = read_metadata(cache_dir)
            if group is not None:  # run-level fields from this run's rank-0 shard
                merged.update({k: v for k, v in storage.read_json(Path(cache_dir) / "metadata.rank0.json").items()
                               if k != "entries"})
            storage.write_json(Path(cache_dir) / METADATA, merged)
            for p in shards:
                os.unlink(p)
    if group is not None:
        import torch.distributed as dist

        dist.barrier(group=group)  # metadata.json is complete on every rank's return
    return totals
