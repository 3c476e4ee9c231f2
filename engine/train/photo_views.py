"""Photo-style training views: the 3D student learns from what the photo pipeline makes of a shoe.

A student trained only on calibrated renders meets other inputs when it runs on photos: masks that miss
a sole or keep a bit of shadow, boxes framed from those masks, levelling off by a few tenths of a degree.
One view's box 10 % too tall cost the default student up to 1.8x its CD-L1 on that shoe.

With ``photo_views: K`` in the training config, each training shoe gets K photo-style versions of its
four views, made once when the run starts: every calibrated view is pasted onto a generated background
(``engine.data.composites.composite``: the background families in turn, a contact shadow, a tilt, off
centre, 40-80 % of the frame) and goes through the pipeline an uploaded photo goes through
(``engine.data.photos.prepare_views``: mask, level, frame; unsure masks accepted). Each training step
then swaps a shoe's calibrated views for one of its versions with probability ``photo_prob``
(``swap_views``). Validation stays on the calibrated views.

The versions are stored in the run folder as ``photo_views.pt`` (``{"ids": [...], "views": (N, K, 4, 4,
S, S) uint8, "made": (N,) bool}``, tensors only) so a resumed run reuses them. Making them costs about
4 s per shoe and version on one core (4 photos segmented).

Measured (``bench/bench_photos.py --compare``: 50 epochs on the 101-shoe sample, the 20 val shoes' 160
composites, student CD-L1 from photos / from clean renders): seed 0 1.29x -> 1.08x with ``photo_views:
1``, seed 1 1.19x -> 1.15x; clean CD-L1 +8 % / +2 %, from photos -9 % / -2 %. The versions come from the
bench's own background generator (other shoes and seeds), so real photos may gain less.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

FILE = "photo_views.pt"


def make_versions(views: dict[str, np.ndarray], per_shoe: int, image_size: int, rng) -> list[torch.Tensor]:
    """``per_shoe`` photo-style versions (each (4, 4, S, S) uint8) of one shoe's calibrated RGBA views
    ``{name: (H, W, 4)}``; a version whose photos leave no usable view is skipped (the list may be
    shorter)."""
    from engine.config import UserError
    from engine.data.composites import BACKGROUNDS, composite
    from engine.data.photos import prepare_views
    from engine.data.views import stack_views

    out = []
    for k in range(per_shoe):
        photos = {}
        for j, (name, rgba) in enumerate(views.items()):
            photos[name], _truth = composite(rgba, rng, BACKGROUNDS[(4 * k + j) % len(BACKGROUNDS)])
        try:
            prepared = prepare_views(photos, image_size, accept_unsure=True)
        except UserError:
            continue
        out.append(stack_views(prepared.views, image_size))
    return out


def build(ctx, data_root: Path, ids: list[str], image_size: int, per_shoe: int, seed: int) -> dict:
    """The photo-style versions of the shoes ``ids`` of the dataset at ``data_root`` (module docstring):
    ``{"ids", "views" (N, K, 4, 4, S, S) uint8, "made" (N,) bool}``; a shoe none of whose versions worked
    has ``made`` False (its calibrated views are used). Progress and cancellation through ``ctx``."""
    from engine.data.layout import find_shoe, load_views

    views = torch.zeros(len(ids), per_shoe, 4, 4, image_size, image_size, dtype=torch.uint8)
    made = torch.zeros(len(ids), dtype=torch.bool)
    for i, sid in enumerate(ids):
        ctx.check_cancelled()
        ctx.progress(i / max(1, len(ids)), f"photo-style views: shoe {i + 1}/{len(ids)}")
        rng = np.random.default_rng([seed, i])
        versions = make_versions(load_views(find_shoe(Path(data_root), sid)), per_shoe, image_size, rng)
        for k in range(per_shoe):
            if versions:
                views[i, k] = versions[k % len(versions)]
        made[i] = bool(versions)
    return {"ids": list(ids), "views": views, "made": made}


def load_or_build(ctx, run_dir: Path | None, data_root: Path, ids: list[str], image_size: int, per_shoe: int,
                  seed: int) -> dict:
    """``build``'s table, read from ``run_dir/photo_views.pt`` when it holds these shoes at this size and
    count (a resumed run), else built and written there atomically (an unreadable file is made again: it
    holds nothing that cannot be)."""
    from engine.config import UserError
    from engine.storage import torch_load, torch_save

    path = Path(run_dir) / FILE if run_dir is not None else None
    if path is not None and path.is_file():
        try:
            table = torch_load(path)
        except UserError as exc:
            ctx.log(f"photo-style views: {path.name} unreadable ({exc}); making them again")
            table = None
        if (isinstance(table, dict) and table.get("ids") == list(ids) and isinstance(table.get("views"), torch.Tensor)
                and isinstance(table.get("made"), torch.Tensor) and tuple(table["views"].shape[1:]) == (per_shoe, 4, 4, image_size, image_size)):
            ctx.log(f"photo-style views: reused {path.name} ({len(ids)} shoes x {per_shoe})")
            return table
    table = build(ctx, data_root, ids, image_size, per_shoe, seed)
    ctx.log(f"photo-style views: {int(table['made'].sum())} of {len(ids)} shoes x {per_shoe} made")
    if path is not None:
        torch_save(path, table)
    return table


def swap_views(views: torch.Tensor, ids: list[str], table: dict, prob: float,
               generator: torch.Generator) -> torch.Tensor:
    """``views`` (B, 4, 4, S, S) uint8 of the shoes ``ids`` with each shoe's views swapped, with
    probability ``prob``, for one of its photo-style versions in ``table`` (``build``); shoes not in the
    table or without versions keep theirs. Returns a new tensor; ``views`` is not changed."""
    row = {sid: i for i, sid in enumerate(table["ids"])}
    out = views.clone()
    k = table["views"].shape[1]
    for b, sid in enumerate(ids):
        draw = torch.rand((), generator=generator).item()
        pick = int(torch.randint(k, (), generator=generator))
        i = row.get(sid)
        if i is not None and bool(table["made"][i]) and draw < prob:
            out[b] = table["views"][i, pick]
    return out
