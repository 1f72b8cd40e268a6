"""Why do the records of an earlier machine sit 5-10 AP points below the same runs trained here?

Runs of the `cpu` scale trained on an earlier machine and again on this one with the same config, code and
seed all end higher here (20 of 20: the history table in reports/benchmarks.md). Two measurements, side by
side, separate the possible causes:

1. **History** (from git): for each run path whose history holds a completed earlier run and a current one
   of the same config, the ratio earlier / current of the val AP at every evaluation (steps 500..3000), of
   the final AP50, AR@100 and held-out AP, and how their first logged training losses relate
   (:func:`reproduce.records.replay_relation`). Training that diverged (other float rounding) starts equal
   and drifts apart like another seed, in either direction; a run scored on a *different val set* keeps one
   ratio from the first evaluation to the last, on every run, with recall nearly unchanged if the set adds
   false-positive bait.
2. **Probe** (``--run``, a run with its checkpoint here): the run's checkpoint scored with pycocotools on its
   val set drawn three ways: as the generator draws it now (must equal the record), with the first
   generator's bug of painting the shapes it drops as too occluded (unlabelled shapes: correct detections
   of them count as false positives), and with that bug plus the first generator's wrapped background ramp
   (hard straight edges cutting flat polygons). Both bugs were fixed in the commit that introduced
   generator version 2; a data cache filled by the code before that fix under the version-2 key would be
   such a set.

3. **Re-score** (``--rescore RUN ...``, or ``--rescore`` alone: every run trained here before records named
   their val set, with its checkpoint): each checkpoint scored with pycocotools on the val set the data cache
   holds now; an AP equal to the record's (within 1e-4) says the run was scored on that set. With ``--write``
   such a record gets the ``eval_data`` it lacked (the digests of that set, as a run writes them now), marked
   ``backfilled`` with the evidence; a record whose AP does not match is left alone, and so are the records
   that share a run (another ablation's copy) unless the run they share was matched.

    python benchmarks/val_set_drift.py --run spinenet_vs_resnet_fpn/r50_fpn/seed0
    python benchmarks/val_set_drift.py --rescore smnas_gnws_vs_pretraining/bn_pretrained/seed0 ...
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import ImageDraw  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.data import synth  # noqa: E402
from reproduce.records import recorded_eval_set, replay_relation  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402

CUTOFF = "2026-12-01T10:20"  # the first run started on this machine; earlier records come from another one


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _versions(path: str) -> list[dict]:
    """Every completed record the git history holds at ``path``, one per start time, newest first."""
    out, seen = [], set()
    for commit in _git("log", "--format=%h", "--", path).split():
        try:
            rec = json.loads(_git("show", f"{commit}:{path}"))
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            continue
        if rec.get("status") == "completed" and rec.get("started") not in seen:
            seen.add(rec.get("started"))
            out.append(rec)
    return out


def _same_config(a: dict, b: dict) -> bool:
    return a.get("config") == b.get("config")


def history_rows() -> list[dict]:
    rows, seen = [], set()
    for path in sorted(_git("ls-files", "runs/*/record.json").split()):
        recs = _versions(path)
        new = next((r for r in recs if (r.get("started") or "") >= CUTOFF), None)
        old = next((r for r in recs if (r.get("started") or "9") < CUTOFF and new and _same_config(r, new)), None)
        if not (new and old and old.get("metrics") and new.get("metrics")) or new["metrics"]["AP"] < 0.15:
            continue  # a shared run's record holds no metrics; rows near AP 0 have no meaningful ratio
        if (new["started"], new.get("pid"), old["started"]) in seen:
            continue  # a run shared by several ablations (R0-SP53, NATS's originals) counts once
        seen.add((new["started"], new.get("pid"), old["started"]))
        ratio = lambda a, b: f"{a / b:.2f}" if b > 0 else "-"  # noqa: E731
        curve = [ratio(o["AP"], n["AP"]) for o, n in zip(old.get("curve", []), new.get("curve", []))]
        rel, _ = replay_relation(old, new)
        rows.append({"run": path[5:-12], "earlier AP": f"{old['metrics']['AP'] * 100:.1f}",
                     "AP here": f"{new['metrics']['AP'] * 100:.1f}",
                     "AP ratio at each evaluation": " / ".join(curve),
                     "AP50 ratio": ratio(old["metrics"]["AP50"], new["metrics"]["AP50"]),
                     "AR@100 ratio": ratio(old["metrics"].get("AR100", 0), new["metrics"].get("AR100", 0)),
                     "held-out AP ratio": ratio((old.get("heldout_metrics") or {}).get("AP", 0),
                                                (new.get("heldout_metrics") or {}).get("AP", 0)),
                     "first losses": rel or "not logged"})
    return rows


def _v1_image(rng, size, max_objects, min_visible, clutter, tiers, min_area, background="textured",
              max_rotation=None):
    """The current generator's draws (same random stream) painted as the first generator painted them:
    every shape drawn, only those at least ``min_visible`` visible labelled."""
    img = synth._background(rng, size, clutter)
    shapes = []
    for _ in range(int(rng.integers(2, max_objects + 1))):
        cat = int(rng.integers(len(synth.CATEGORIES)))
        r = synth._object_side(rng, size, synth.CATEGORIES[cat], tiers, min_area) / 2
        cx, cy = rng.uniform(r * 0.5, size - r * 0.5, 2)
        angle = synth._angle(rng, synth.CATEGORIES[cat], max_rotation)
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        mask = synth._shape_mask(synth.CATEGORIES[cat], cx, cy, r, angle, size)
        if mask.sum() >= 16:
            shapes.append((cat, cx, cy, r, angle, col, mask))
    top = np.zeros((size, size), np.int16)
    for k, s in enumerate(shapes):
        top[s[6]] = k + 1
    draw, anns = ImageDraw.Draw(img), []
    for k, (cat, cx, cy, r, angle, col, mask) in enumerate(shapes):
        synth._draw_shape(draw, synth.CATEGORIES[cat], cx, cy, r, angle, col)
        vis = top == k + 1
        if vis.sum() >= max(12, min_visible * mask.sum()):
            ys, xs = np.nonzero(vis)
            anns.append({"category_id": cat + 1, "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                                                          float(ys.max() + 1 - ys.min())],
                         "area": float(vis.sum()), "iscrowd": 0})
    return img, anns


def _wrapped_ramp(rng, xx, yy):
    return (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) % 1.0


def probe_rows(run: str, threads: int) -> list[dict]:
    import torch

    from reproduce.data.datamodule import VAL_SEED_OFFSET, synthetic_spec
    from reproduce.data.stream import GENERATOR_KEYS
    from reproduce.predict import predict_run, resolve_run
    from reproduce.records import read_record

    torch.set_num_threads(threads)
    rec = read_record(resolve_run(run) / "record.json")
    spec = synthetic_spec(rec["config"]["data"])
    kwargs = {k: spec[k] for k in GENERATOR_KEYS if k in spec}
    kwargs["tiers"] = tuple(kwargs["tiers"])
    variants = {"as drawn now": {}, "dropped shapes painted (v1 bug)": {"_detection_image": _v1_image},
                "dropped shapes painted + wrapped ramp (both v1 bugs)": {"_detection_image": _v1_image,
                                                                         "_ramp": _wrapped_ramp}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, patch in variants.items():
            saved = {k: getattr(synth, k) for k in patch}
            try:
                for k, v in patch.items():
                    setattr(synth, k, v)
                folder = Path(tmp) / str(len(rows))
                gt = synth.synth_detection(folder, "val", images=int(spec["val_images"]), size=int(spec["image_size"]),
                                           seed=int(spec["seed"]) + VAL_SEED_OFFSET, **kwargs)
            finally:
                for k, v in saved.items():
                    setattr(synth, k, v)
            s = predict_run(run, images=str(folder / "val"), image_info=str(gt), out=folder / "results.json",
                            device="cpu")["stats"]  # scored with pycocotools against the image-info's annotations
            rows.append({"val set": name, "boxes": len(json.loads(gt.read_text())["annotations"]),
                         "AP": f"{s['AP'] * 100:.1f}", "AP50": f"{s['AP50'] * 100:.1f}", "AR@100": f"{s['AR100'] * 100:.1f}",
                         "record AP": f"{rec['metrics']['AP'] * 100:.1f}"})
            print(rows[-1], flush=True)
    base = float(rows[0]["AP"])
    for r in rows:
        r["AP ratio to now"] = f"{float(r['AP']) / base:.2f}"
    return rows


def unrecorded_runs() -> list[str]:
    """Completed runs trained here (started after :data:`CUTOFF`) whose record names no val set, that trained
    themselves (not another ablation's shared copy) and still have their checkpoint."""
    out = []
    for path in sorted((ROOT / "runs").glob("*/*/seed*/record.json")):
        rec = json.loads(path.read_text())
        if (rec.get("status") == "completed" and (rec.get("started") or "") >= CUTOFF and not rec.get("shared_from")
                and not recorded_eval_set(rec)
                and (path.parent / "checkpoints" / "last.ckpt").is_file()):
            out.append(str(path.parent.relative_to(ROOT / "runs")))
    return out


def _backfill(path: Path, rec: dict, ap: float) -> None:
    """Write the digests of the val (and held-out) set cached now into a record that lacked them."""
    from reproduce.data import DetectionDataModule
    from reproduce.records import write_record

    dm = DetectionDataModule(rec["config"]["data"], seed=int(rec.get("seed", 0)))
    dm.setup()
    rec["eval_data"] = {**dm.eval_identity(), "backfilled": (
        f"the run's checkpoint re-scored on this set gives AP {ap:.5f}, the record's value within 1e-4 "
        f"(benchmarks/val_set_drift.py --rescore --write, {time.strftime('%Y-%m-%d')}); the run itself predates "
        "records naming their val set")}
    write_record(path, rec)


def rescore_rows(runs: list[str], threads: int, write: bool = False) -> list[dict]:
    import torch

    from reproduce.predict import predict_run, resolve_run
    from reproduce.records import read_record, write_record

    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            path = resolve_run(run) / "record.json"
            rec = read_record(path)
            res = predict_run(run, split="val", out=Path(tmp) / "results.json", device="cpu")
            ap, mine = res["stats"]["AP"], rec["metrics"]["AP"]
            same = abs(ap - mine) < 1e-4
            if same and write:
                _backfill(path, rec, ap)
            rows.append({"run": run, "started": rec.get("started"), "record AP": f"{mine:.5f}",
                         "checkpoint re-scored": f"{ap:.5f}", "same val set": "yes" if same else "no",
                         "eval_data": "backfilled" if same and write else "-"})
            print(rows[-1], flush=True)
    for path in sorted((ROOT / "runs").glob("*/*/seed*/record.json")) if write else []:
        rec = json.loads(path.read_text())  # another ablation's copy of a run: the run's own scoring
        origin = (rec.get("shared_from") or {}).get("record")
        if not origin or recorded_eval_set(rec):
            continue
        src = ROOT / "runs" / origin
        twin = json.loads(src.read_text()) if src.is_file() else {}
        if recorded_eval_set(twin) and twin["eval_data"].get("backfilled"):
            rec["eval_data"] = twin["eval_data"]
            write_record(path, rec)
            print(f"{path.parent.relative_to(ROOT)}: eval_data of the run it shares, {origin}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="ablation/variant/seedK of a completed run with its checkpoint here (the probe)")
    ap.add_argument("--rescore", nargs="*", default=None, metavar="RUN",
                    help="runs (ablation/variant/seedK) whose checkpoint is re-scored on the val set cached now; "
                         "alone: every run trained here whose record names no val set")
    ap.add_argument("--write", action="store_true", help="with --rescore: backfill eval_data where the AP matches")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    hist = history_rows()
    ratios = [float(r["AP ratio at each evaluation"].split(" / ")[-1]) for r in hist
              if r["first losses"] == "identical"]
    save("val_set_drift_history", {
        "title": "Earlier-machine records against the same runs trained here: AP ratio at every evaluation",
        "command": command_line(), "environment": environment(),
        "intro": [f"Runs whose git history holds a completed record started before {CUTOFF} (another machine) and "
                  "one started after it with the same config; rows whose AP here is below 15 are left out. Ratios are "
                  "earlier / here. Of the runs with bit-identical first logged losses "
                  f"({len(ratios)}), the final AP ratio is {statistics.median(ratios):.2f} (median; "
                  f"{min(ratios):.2f}-{max(ratios):.2f})." if ratios else "No run with identical first losses."],
        "columns": list(hist[0]) if hist else ["run"], "rows": hist})
    if args.run:
        rows = probe_rows(args.run, args.threads)
        save("val_set_drift_probe", {
            "title": f"One checkpoint scored on its val set drawn three ways ({args.run})",
            "command": command_line(), "environment": environment(),
            "intro": ["The run's last checkpoint, its val images drawn by the current generator (same seed, same random "
                      "draws) and scored with pycocotools: as drawn now (equals the record), with the first generator's "
                      "painting of dropped shapes, and with that plus its wrapped background ramp."],
            "columns": list(rows[0]), "rows": rows})
    if args.rescore is not None:
        rows = rescore_rows(args.rescore or unrecorded_runs(), args.threads, args.write)
        save("val_set_drift_rescore", {
            "title": "Runs trained here before records named their val set, re-scored on the val set cached now",
            "command": command_line(), "environment": environment(),
            "intro": ["Each run's last checkpoint scored with pycocotools on the val split its data config gives today "
                      "(the cache keyed by the generator's digest). 'yes': the AP equals the record's within 1e-4, so the "
                      "record was scored on this set."],
            "columns": list(rows[0]), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
