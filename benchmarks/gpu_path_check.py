"""The GPU path end to end: a table of the run records that ``benchmarks/gpu_check.sh`` produced.

Each row is one ``reproduce run`` at the smoke scale with the ``trainer:`` switches of the GPU path
(``reproduce/gpu_path.py``): bf16 AMP, channels_last, cuDNN benchmark, the DDP strategy, loader workers
and, for some rows, ``torch.compile``. The smoke scale trains 4 steps on 64 px images: the AP is not a
result, the row says whether the path trains, evaluates with COCO mAP, writes its record and resumes.

    python benchmarks/gpu_path_check.py RECORD.json [RECORD.json ...]   # writes reports/benchmarks/gpu_path_check.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._results import save  # noqa: E402

SWITCHES = ("accelerator", "strategy", "precision", "channels_last", "benchmark", "compile")


def row(record: dict) -> dict:
    t = record["config"].get("trainer", {})
    attempts = record.get("attempt", 1)
    earlier = record.get("earlier_attempts_s")
    return {"run": f"{record['ablation']}/{record['variant']}/seed{record['seed']} ({record['scale']})",
            "trainer switches": ", ".join(f"{k}={t[k]}" for k in SWITCHES if k in t),
            "loader workers": record["config"]["data"].get("num_workers", 0),
            "status": record["status"], "train steps": record.get("train_steps"),
            "COCO AP": f"{(record.get('metrics') or {}).get('AP', float('nan')):.4f}",
            "attempts": attempts if attempts == 1 else f"{attempts} (resumed from last.ckpt)",
            "wall (s)": f"{record['wall_time_s']:.1f}" + (f" + {earlier:.1f} earlier" if earlier else ""),
            "device": record["hardware"].get("gpu") or "cpu", "world size": record.get("world_size"),
            "FPS measured on": (record.get("speed") or {}).get("device", "–")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", nargs="+", type=Path)
    ap.add_argument("--command", help="the command that produced the records (default: benchmarks/gpu_check.sh)")
    args = ap.parse_args(argv)
    records = [json.loads(p.read_text()) for p in args.records]
    rows = [row(r) for r in records]
    hw = records[0]["hardware"]
    env = {"device": hw.get("gpu") or "cpu", "torch": hw.get("torch"), "python": hw.get("python"),
           "torchvision": hw.get("torchvision", "(not recorded)"),
           "cpu_count": hw.get("cpu_count"), "threads": hw.get("threads"), "loadavg": [],
           "time": min(r.get("started", "") for r in records)}
    out = {"title": "The GPU path end to end (reproduce run, smoke scale)",
           "command": args.command or "OUT=DIR bash benchmarks/gpu_check.sh", "environment": env,
           "intro": ["Each row: one `reproduce run baseline_detectors --scale smoke` with the GPU path's `--set "
                     "trainer.*` switches; 4 training steps on 64 px synthetic images, then COCO evaluation "
                     "(faster_coco_eval). The AP of 4 steps is not a result: a row shows that the path trains, "
                     "evaluates, writes its record and resumes."],
           "columns": list(rows[0]), "rows": rows,
           "notes": ["A run stopped by its time limit is recorded `interrupted` and a second command resumes it "
                     "from its last checkpoint (the attempts column); its wall time counts the earlier attempt.",
                     "Wall time includes the process start, torch.compile's compilation where switched on, and "
                     "the evaluation."]}
    print(save("gpu_path_check", out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
