"""Where a real cpu-scale run's CPU goes: a sampling profile of a running ``reproduce run-one`` split into
the parts of a training step (forward and loss, backward, gradient clipping, optimizer update, zero_grad),
data loading, validation and the rest (Lightning's loop, logging).

The profile is py-spy's (``pip install py-spy``; not a dependency of the suite), sampled from the outside
so the run is not changed: ``--pid`` records one (py-spy's ``raw`` format: one line per distinct stack,
``frame;frame;... count``), ``--profile`` splits a recorded one (plain or ``.gz``). Each sample counts once,
in the first part (in the order of :data:`PARTS`) one of whose markers names a frame of its stack: the
backward pass and the forward pass run inside the optimizer's closure, so they are matched before the
update. This is what says how far the real loop is from the plain one (``benchmarks/real_loop.py``) and
which lever pays (``benchmarks/optimizer_step.py`` for the update)::

    py-spy record --pid <run-one pid> --rate 20 --duration 90 --nonblocking --format raw -o prof.txt
    python benchmarks/run_profile.py --profile reports/benchmarks/profiles/baseline_fcos_seed1.txt.gz \
        --label "baseline FCOS seed 1, epoch 2"
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402

# (part, frame-name markers): a sample belongs to the first part one of whose markers is in a frame's name
PARTS = [
    ("backward", ("Tensor.backward", "_engine_run_backward")),
    ("forward and loss", ("training_step",)),
    ("gradient clipping", ("clip_grad", "clip_gradients")),
    ("zero_grad", ("zero_grad",)),
    ("optimizer update", ("_single_tensor_", "_multi_tensor_", "_fused_")),
    ("data loading", ("_next_data", "_DataFetcher", "DataLoader")),
    ("validation", ("_EvaluationLoop", "validation_step")),
]
OTHER = "other (loop, logging, hooks)"


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    """The stacks of a py-spy ``raw`` profile: (frame names without their file:line, sample count) per line."""
    opener = gzip.open if path.suffix == ".gz" else open
    stacks = []
    with opener(path, "rt") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                raise ValueError(f"{path}, line {n}: not py-spy raw format ('frame;frame;... count'): {line[:80]!r}")
            stacks.append(([frame.split(" (")[0] for frame in stack.split(";")], int(count)))
    return stacks


def part_of(frames: list[str]) -> str:
    for part, markers in PARTS:
        if any(m in frame for frame in frames for m in markers):
            return part
    return OTHER


def split(stacks: list[tuple[list[str], int]]) -> Counter:
    """Samples per part (:data:`PARTS`, then :data:`OTHER`)."""
    out = Counter()
    for frames, count in stacks:
        out[part_of(frames)] += count
    return out


def record(pid: int, duration: int, rate: int, out: Path) -> Path:
    """Record ``pid`` with py-spy for ``duration`` s (non-blocking: the run is not paused) into ``out``."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed (pip install py-spy); or split a recorded profile with --profile")
    subprocess.run([spy, "record", "--pid", str(pid), "--rate", str(rate), "--duration", str(duration),
                    "--nonblocking", "--format", "raw", "-o", str(out)], check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--profile", type=Path, help="a py-spy raw profile (plain or .gz) to split")
    src.add_argument("--pid", type=int, help="record this running process (a `reproduce run-one`) with py-spy first")
    ap.add_argument("--duration", type=int, default=90, help="seconds to record with --pid")
    ap.add_argument("--rate", type=int, default=20, help="samples per second with --pid")
    ap.add_argument("--keep", type=Path, help="with --pid: also write the recorded profile here (.gz compresses)")
    ap.add_argument("--label", default="", help="what was profiled (ablation, variant, seed, epoch), for the report")
    ap.add_argument("--save-as", default="run_profile", help="result name under reports/benchmarks/")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)

    path = args.profile
    if args.pid is not None:
        path = record(args.pid, args.duration, args.rate, Path(tempfile.mkdtemp()) / "profile.txt")
        if args.keep:
            args.keep.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as f, (gzip.open if args.keep.suffix == ".gz" else open)(args.keep, "wb") as g:
                shutil.copyfileobj(f, g)
    parts = split(read_raw(path))
    total = sum(parts.values())
    if not total:
        raise SystemExit(f"{path}: no samples")
    rows = [{"part": name, "samples": parts[name], "share": f"{parts[name] / total:.0%}"}
            for name in [p for p, _ in PARTS] + [OTHER]]
    for r in rows:
        print(f"{r['part']:<30} {r['samples']:>6} {r['share']:>5}")
    source = str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)
    out = {"title": "Where a real run's CPU goes (sampling profile)", "command": command_line(),
           "environment": environment(),
           "intro": [f"{args.label or 'A running `reproduce run-one`'}: {total} py-spy samples of its main process "
                     f"(profile: `{args.keep or source}`), each counted in the first part whose markers name a "
                     "frame of its stack (the backward and forward passes run inside the optimizer's closure, so "
                     "they are matched before the update; markers in benchmarks/run_profile.py)."],
           "columns": ["part", "samples", "share"], "rows": rows,
           "notes": [f"Load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (the split, "
                     "not the load, is the result: the profile was recorded earlier)." if args.pid is None else
                     f"Load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}."]}
    if not args.no_save:
        save(args.save_as, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
