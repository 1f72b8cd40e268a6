"""Training throughput: the suite (Lightning ``DetectionModule`` + ``DetectionDataModule``) against a
plain PyTorch loop, on the same synthetic COCO-format data, resolution, batch and precision.

Pairs (each contender runs in its own process, so peak memory is its own):
- RetinaNet R50-FPN: the suite's ``retinanet`` + ``resnet50_fpn`` trained by Lightning, against
  torchvision's stock ``retinanet_resnet50_fpn(weights=None, weights_backbone=None)`` trained with a
  plain loop (SGD, autocast, GradScaler for fp16);
- RetinaNet SpineNet-49: the suite's ``retinanet_spinenet`` + ``spinenet49`` trained by Lightning,
  against the same model in the plain loop (torchvision has no SpineNet: this pair measures what the
  Lightning path costs).

Both sides read batches from the same DataLoader (the suite's synthetic set at ``--size``, flip only).
Images/s counts the timed steps after ``--warmup`` steps, data loading included. Peak memory: torch's
peak allocated CUDA memory, or the process's peak resident set size on the CPU. FLOPs of a training
step (forward + backward, convolutions and matmuls) are counted with ``torch.utils.flop_counter`` on
the real model and batch; MFU = achieved FLOP/s / peak FLOP/s, the peak from ``--peak-tflops`` (or a
table for known GPUs). On a CPU without ``--peak-tflops`` the reference is this machine's measured
fp32 matmul throughput at the same thread count (stated as such). Examples::

    python benchmarks/train_speed.py --size 256 --batch 2                        # CPU, small
    python benchmarks/train_speed.py --size 640 --batch 8 --precision bf16-mixed --workers 8   # one GPU
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.train_speed import (environment, peak_memory_mb, random_batch, train_step_flops,  # noqa: E402
                                   train_steps)

# name -> (model label, training path, suite model config or None for torchvision's stock model)
CONTENDERS = {
    "suite_r50": ("RetinaNet R50-FPN", "suite: Lightning DetectionModule",
                  {"detector": "retinanet", "backbone": "resnet50_fpn"}),
    "stock_r50": ("RetinaNet R50-FPN", "torchvision retinanet_resnet50_fpn, plain loop", None),
    "suite_spinenet49": ("RetinaNet SpineNet-49", "suite: Lightning DetectionModule",
                         {"detector": "retinanet_spinenet", "backbone": "spinenet49"}),
    "plain_spinenet49": ("RetinaNet SpineNet-49", "same model, plain loop",
                         {"detector": "retinanet_spinenet", "backbone": "spinenet49"}),
}
PAIRS = {"r50": ("suite_r50", "stock_r50"), "spinenet49": ("suite_spinenet49", "plain_spinenet49")}
# dense tensor-core peaks (TFLOP/s) for bf16 / fp16 mixed precision, from the vendors' data sheets
GPU_PEAKS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "V100": 125.0}
OPTIMIZER = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "constant",
             "warmup_steps": 0}


def data_module(args):
    from reproduce.data import DetectionDataModule

    n = args.train_images or max(16, args.batch * (args.warmup + args.steps))
    cfg = {"kind": "synthetic", "root": args.data_root, "image_size": args.size, "train_images": n, "val_images": 2,
           "batch_size": args.batch, "num_workers": args.workers, "hflip": 0.5, "scale_jitter": None}
    dm = DetectionDataModule(cfg, seed=0)
    dm.setup()
    return dm


def build(name: str, num_classes: int, size: int):
    model_cfg = CONTENDERS[name][2]
    if model_cfg is None:
        from torchvision.models.detection import retinanet_resnet50_fpn

        return retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                      min_size=size, max_size=size)
    from reproduce.models import create_detector

    kw = dict(model_cfg)
    return create_detector(kw.pop("detector"), num_classes=num_classes, image_size=size, **kw)


def batches(dm, args):
    """The training batches: the suite's DataLoader, or with ``--in-memory`` its first batches decoded once and
    replayed (both sides), so that the step time leaves data loading out."""
    loader = dm.train_dataloader()
    if not args.in_memory:
        return loader
    held = list(itertools.islice(loader, args.in_memory))
    # batch_size=None and an identity collate: the DataLoader hands out the held batches as they are
    return torch.utils.data.DataLoader(held, batch_size=None, shuffle=False, collate_fn=_identity)


def _identity(batch):
    return batch


def time_lightning(name: str, dm, args, device) -> tuple[dict, torch.nn.Module]:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import Callback

    from lightning_modules.detection import DetectionModule

    class StepEnds(Callback):
        def __init__(self):
            self.ends, self.cpu_ends = [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())
            self.cpu_ends.append(time.process_time())

    model = {**CONTENDERS[name][2], "image_size": args.size}
    module = DetectionModule(model, OPTIMIZER, num_classes=dm.num_classes, channels_last=args.channels_last,
                             compile=args.compile)
    ends = StepEnds()
    trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=args.precision,
                         max_steps=args.warmup + args.steps, limit_val_batches=0, num_sanity_val_steps=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, benchmark=device.type == "cuda", callbacks=[ends],
                         default_root_dir=str(Path(args.data_root) / "lightning"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, train_dataloaders=batches(dm, args))
    res = {"peak_memory_mb": peak_memory_mb(device)}
    for key, t in (("", ends.ends), ("cpu_", ends.cpu_ends)):
        steps = [b - a for a, b in zip(t[args.warmup - 1:], t[args.warmup:])]
        res[f"{key}step_s_median"] = statistics.median(steps)
        res["images_per_s" if not key else "images_per_cpu_s"] = args.steps * args.batch / (t[-1] - t[args.warmup - 1])
    return res, module.detector


def run_contender(name: str, args) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dm = data_module(args)
    if name.startswith("suite_"):
        res, det = time_lightning(name, dm, args, device)
    else:
        det = build(name, dm.num_classes, args.size)
        if args.compile:
            from reproduce.gpu_path import compile_parts

            compile_parts(det, args.compile)
        r = train_steps(det, batches(dm, args), steps=args.steps, warmup=args.warmup, precision=args.precision,
                        device=device, channels_last=args.channels_last)
        res = {k: r[k] for k in ("step_s_median", "images_per_s", "cpu_step_s_median", "images_per_cpu_s",
                                 "peak_memory_mb")}
    images, targets = random_batch(args.batch, args.size, dm.num_classes, device=device)
    flops = train_step_flops(build(name, dm.num_classes, args.size).to(device), images, targets)
    from reproduce.measure import count_params

    return {"name": name, **res, "train_flops_per_image": flops / args.batch, "params": count_params(det)}


def matmul_peak_tflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """This CPU's fp32 matmul throughput at ``threads`` threads (best of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = min(_cpu_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e12


def _cpu_timed(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def peak(args, device: torch.device) -> tuple[float | None, str]:
    if args.peak_tflops:
        return args.peak_tflops, f"{args.peak_tflops} TFLOP/s (--peak-tflops)"
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
        for key, tf in GPU_PEAKS.items():
            if key in gpu and args.precision in ("bf16-mixed", "16-mixed"):
                return tf, f"{tf} TFLOP/s dense bf16/fp16 ({key} data sheet)"
        return None, f"unknown for {gpu} at {args.precision}: pass --peak-tflops"
    tf = matmul_peak_tflops(args.threads)
    return tf, (f"{tf * 1e3:.1f} GFLOP per CPU-second = this CPU's measured fp32 2048x2048 matmul throughput at "
                f"{args.threads} thread(s), best of 5, in CPU time (no GPU was lent; not a data-sheet peak)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="r50,spinenet49", help=f"comma-separated, of {', '.join(PAIRS)}")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile backbone + head (both sides)")
    ap.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: GPU table / measured CPU matmul)")
    ap.add_argument("--data-root", default="data/bench")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--train-images", type=int, default=0,
                    help="synthetic training images, cycled (default: one per image of the run, at least 16)")
    ap.add_argument("--in-memory", type=int, default=0, metavar="N",
                    help="replay N batches held in memory instead of the DataLoader (leaves data loading out)")
    ap.add_argument("--save-as", help="results name under reports/benchmarks/ (default: train_speed, plus _gpu on "
                                      "CUDA and _compile with --compile)")
    ap.add_argument("--no-save", action="store_true", help="print only; do not write reports/")
    args = ap.parse_args(argv)
    if args.warmup < 1:
        ap.error("--warmup must be >= 1")
    if args.one:
        print("RESULT " + json.dumps(run_contender(args.one, args)))
        return 0
    env = environment()
    device = torch.device(args.device)
    results = {}
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-save"]
    for pair in args.pairs.split(","):
        for name in PAIRS[pair]:
            proc = subprocess.run([sys.executable, __file__, *passthrough, "--one", name], capture_output=True,
                                  text=True, cwd=ROOT)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{name} failed (exit {proc.returncode})")
            results[name] = json.loads(line[0][len("RESULT "):])
            print(f"{name}: {results[name]['images_per_s']:.3f} images/s wall, "
                  f"{results[name]['images_per_cpu_s']:.3f} per CPU-s", flush=True)
    peak_tf, peak_text = peak(args, device)
    rows, notes = [], []
    mem_kind = "peak CUDA allocated" if device.type == "cuda" else "peak RSS of the process"
    on_cpu = device.type != "cuda"
    for name, r in results.items():
        rate = r["images_per_cpu_s"] if on_cpu else r["images_per_s"]  # CPU: per CPU-second (see the notes)
        achieved = r["train_flops_per_image"] * rate
        row = {"model": CONTENDERS[name][0], "training path": CONTENDERS[name][1],
               "params (M)": f"{r['params'] / 1e6:.2f}", "images/s (wall)": f"{r['images_per_s']:.3f}"}
        if on_cpu:
            row["images per CPU-s"] = f"{r['images_per_cpu_s']:.3f}"
            row["median step, CPU time (s)"] = f"{r['cpu_step_s_median']:.3f}"
        row.update({"median step, wall (s)": f"{r['step_s_median']:.3f}",
                    f"memory (MiB, {mem_kind})": f"{r['peak_memory_mb']:.0f}",
                    "train GFLOP/image": f"{r['train_flops_per_image'] / 1e9:.1f}",
                    "achieved GFLOP/s" + (" (per CPU-s)" if on_cpu else ""): f"{achieved / 1e9:.2f}",
                    "MFU": f"{100 * achieved / (peak_tf * 1e12):.1f}%" if peak_tf else "n/a"})
        rows.append(row)
    rate_key = "images_per_cpu_s" if on_cpu else "images_per_s"
    for pair in args.pairs.split(","):
        a, b = PAIRS[pair]
        step_key = "cpu_step_s_median" if on_cpu else "step_s_median"
        notes.append(f"{CONTENDERS[a][0]}: suite / {CONTENDERS[b][1]} = "
                     f"{results[a][rate_key] / results[b][rate_key]:.2f}x images"
                     + (" per CPU-second" if on_cpu else "/s")
                     + f" (by the median step time: {results[b][step_key] / results[a][step_key]:.2f}x; the "
                       "images/s ratio also counts the slow steps, e.g. a loader's epoch turn).")
    notes.append(f"MFU reference: {peak_text}.")
    notes.append("Train FLOPs: counted forward + backward FLOPs of one step (torch.utils.flop_counter: convolutions "
                 "and matmuls; 2 FLOPs per multiply-add) on the real model and batch, per image.")
    if on_cpu:
        notes.append("CPU figures at a small resolution; the GPU comparison (640 px, bf16 AMP, one GPU) is the "
                     "second example command (benchmarks/gpu_check.sh runs it).")
        notes.append(f"On a CPU, throughput and MFU use the process's CPU time (`time.process_time`, summed over "
                     f"{args.threads} thread(s), data loading in-process), so a machine shared with other jobs (see the "
                     "load average above) does not bias them; the wall-clock columns include any waiting.")
    cols = list(rows[0])
    intro = [f"{args.size} px, batch {args.batch}, {args.precision}, {args.steps} timed steps after {args.warmup} "
             f"warm-up step(s), {args.workers} loader worker(s), synthetic COCO-format data (the suite's generator), "
             f"SGD lr 0.01 momentum 0.9" + (", channels_last" if args.channels_last else "")
             + (", torch.compile (backbone + head)" if args.compile else "")
             + (f", {args.in_memory} batches held in memory and replayed (no data loading in the step)"
                if args.in_memory else "") + "."]
    title = "Training throughput: suite vs plain loop (torchvision stock RetinaNet)" + \
        ("" if on_cpu else ", one GPU") + (", torch.compile" if args.compile else "")
    out = {"title": title, "command": command_line(),
           "environment": env, "intro": intro, "columns": cols, "rows": rows, "notes": notes,
           "loadavg_end": [round(x, 2) for x in os.getloadavg()], "raw": results}
    if not args.no_save:
        save(args.save_as or "train_speed" + ("_gpu" if not on_cpu else "") + ("_compile" if args.compile else "")
             + ("_in_memory" if args.in_memory else ""), out)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
