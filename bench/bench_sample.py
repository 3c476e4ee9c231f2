"""Benchmark: build the procedural sample (generate + render 101 shoes) and compare with the target.

    .venv/bin/python bench/bench_sample.py [--count 101] [--seed 0] [--target 60]

Runs ``engine.data.sample_shoes.build_sample`` into a temporary folder (deleted afterwards) and prints
wall seconds for generating (implicit field + marching cubes), rendering (four views + PNG/OBJ writes),
the whole build, and per shoe, plus the process CPU seconds (these machines are shared and noisy:
CPU seconds show how much of the wall time was this process's own work). PASS when the total wall
time is within the target (issue 3: 101 shoes in <= 60 s on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.sample_shoes import build_sample  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=101)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=60.0, help="seconds allowed for the whole build")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_sample_") as tmp:
        cpu0 = time.process_time()
        result = build_sample(None, Path(tmp) / "sample", count=args.count, seed=args.seed)
        cpu = time.process_time() - cpu0
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())

    total = result["seconds"]
    rows = [
        ("generate (field + marching cubes)", result["seconds_generate"]),
        ("render (4 views + PNG/OBJ writes)", result["seconds_render"]),
        ("total (build_sample, wall)", total),
        ("per shoe", total / args.count),
        ("process CPU (all threads)", cpu),
    ]
    print(f"bench_sample: {args.count} shoes, seed {args.seed}, {os.cpu_count()} CPUs, "
          f"{size / 1e6:.1f} MB written")
    print(f"{'stage':<36} {'seconds':>9}")
    for name, seconds in rows:
        print(f"{name:<36} {seconds:>9.3f}")
    verdict = "PASS" if total <= args.target else "MISS"
    print(f"{'target: total <= ' + format(args.target, 'g') + ' s':<36} {total / args.target:>8.2f}x  {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
