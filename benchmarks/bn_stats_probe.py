"""Do a trained run's BatchNorm running statistics, rather than its weights, decide its AP?

At the cpu scale the pretrained-trunk rows (NATS's originals, SM-NAS's BN + pretraining) fine-tune their
BatchNorm layers at batch 4, so the running statistics a run ends with are an exponential average over its
last few dozen batches. If they were noisy enough to move the AP, the seed spread of those rows (NATS's
original rows: one seed 10 points under the other two) would be a property of the statistics, not of the
training. This probe evaluates each given run's checkpoint on its val set as it is, then again after
recomputing every BatchNorm's statistics as a plain average over ``--batches`` training batches (precise
BN, as detectron2's ``PreciseBN`` hook; weights untouched), and puts both APs beside the record's.

    python benchmarks/bn_stats_probe.py nats_transformation:retinanet_original:1 smnas_gnws_vs_pretraining:bn_pretrained:0
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from benchmarks.calibration_probe import evaluate  # noqa: E402
from reproduce.data import DetectionDataModule  # noqa: E402
from reproduce.distributed import newest_last_checkpoint  # noqa: E402
from reproduce.records import read_record, record_path, trained_in  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402


def precise_bn(detector, batches, n: int) -> int:
    """Recompute the running statistics of every BatchNorm of the backbone (the trunk and its FPN: the
    layers the forward below reaches; a head's BN keeps its own) as the plain mean over ``n`` batches of
    ``batches``, through the detector's own resize and normalisation; returns the number of BN layers."""
    bns = [m for m in detector.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    detector.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    with torch.no_grad():
        for i, (imgs, _) in enumerate(batches):
            if i >= n:
                break
            detector.backbone(detector.transform(list(imgs))[0].tensors)
    detector.eval()
    return len(bns)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="ablation:variant:seed of completed runs with their checkpoint here")
    ap.add_argument("--batches", type=int, default=200, help="training batches for the recomputed statistics")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="bn_stats_probe")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from lightning_modules import DetectionModule

    rows = []
    for spec in args.runs:
        ablation, variant, seed = spec.split(":")
        path = record_path(ablation, variant, int(seed))
        rec = read_record(path)
        ckpt = newest_last_checkpoint(trained_in(path, rec))
        if ckpt is None:
            raise SystemExit(f"{spec}: no checkpoints/last.ckpt here (checkpoints are not committed)")
        det = DetectionModule.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=False).detector
        dm = DetectionDataModule(rec["config"]["data"], seed=int(seed))
        dm.setup()
        val = list(dm.val_dataloader())
        t0 = time.time()
        as_is = evaluate(det, val)["AP"] * 100
        n_bn = precise_bn(det, dm.train_dataloader(), args.batches)
        precise = evaluate(det, val)["AP"] * 100
        rows.append({"run": f"{ablation}/{variant}/seed{seed}", "BN layers": n_bn,
                     "AP (record)": f"{rec['metrics']['AP'] * 100:.1f}", "AP (checkpoint, as is)": f"{as_is:.1f}",
                     f"AP (precise BN, {args.batches} batches)": f"{precise:.1f}", "change": f"{precise - as_is:+.1f}",
                     "s": f"{time.time() - t0:.0f}"})
        print(rows[-1], flush=True)
    result = {"title": "BatchNorm statistics probe: val AP with the run's running statistics vs recomputed ones",
              "command": command_line(), "environment": environment(),
              "intro": ["Each row: a completed run's last checkpoint evaluated on its val set (COCO AP x 100) as it is, "
                        f"then with every BatchNorm's statistics recomputed as a plain average over {args.batches} "
                        "training batches of its own data stream (weights untouched). A change within about a point "
                        "means the statistics are not what separates the run from its other seeds."],
              "columns": list(rows[0]), "rows": rows}
    print(save(args.name, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
