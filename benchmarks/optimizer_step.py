"""The optimizer update's share of a cpu-scale training step, per torch implementation.

On CPU torch's Adam / AdamW / SGD default to a per-parameter Python loop (``foreach`` and ``fused`` are
torch's defaults only for CUDA tensors). A sampling profile of a real cpu-scale FCOS run (py-spy, 90 s)
put 16% of its main process in that loop. This benchmark times the update alone on each listed
variant's detector (its resolved config's optimizer and parameter groups, random gradients), for the
default, ``foreach`` and ``fused`` implementations, each from the same start on the same gradients,
and says whether each ends bit for bit on the default's parameters (a run replays a record only if it
does: ``optimizer.fused`` is a config key, off by default, see ``lightning_modules/optim.py``)::

    OMP_NUM_THREADS=1 python benchmarks/optimizer_step.py --threads 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from lightning_modules.optim import optimizer_for  # noqa: E402
from reproduce.ablation import expand  # noqa: E402
from reproduce.dry_run import build_detector  # noqa: E402
from reproduce.measure import count_params  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402

DEFAULT_VARIANTS = ["baseline_detectors:retinanet", "baseline_detectors:fcos", "spinenet_vs_resnet_fpn:r50_fpn",
                    "spinenet_vs_resnet_fpn:spinenet49", "rsanet_rsam:rsam_on"]
IMPLEMENTATIONS = ["default", "foreach", "fused"]


def time_updates(detector, opt_cfg: dict, impl: str, steps: int) -> tuple[float, list[torch.Tensor]]:
    """Median CPU seconds of ``steps`` optimizer updates (random gradients, seeded) and the parameters after."""
    start = {k: v.clone() for k, v in detector.state_dict().items()}
    opt = optimizer_for(detector, {**opt_cfg, "fused": impl == "fused"})  # ``optimizer.fused``, as a run sets it
    if impl == "foreach":  # no config key: torch reads it from the groups at every step
        for g in opt.param_groups:
            g["foreach"] = True
    params = [p for g in opt.param_groups for p in g["params"]]
    gen = torch.Generator().manual_seed(1)
    times = []
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * 1e-2
        t = time.process_time()
        opt.step()
        times.append(time.process_time() - t)
    after = [p.detach().clone() for p in params]
    detector.load_state_dict(start)
    return sorted(times)[len(times) // 2], after


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, metavar="ABLATION:VARIANT")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = environment()
    rows = []
    for item in args.variants:
        ablation, variant = item.split(":", 1)
        specs = {s.variant: s for s in expand(ablation, args.scale, seeds=1)}
        if variant not in specs:
            ap.error(f"unknown variant {variant!r} of {ablation}; valid: {', '.join(specs)}")
        spec = specs[variant]
        opt_cfg = spec.config["optimizer"]
        torch.manual_seed(0)
        det, _ = build_detector(spec.config)
        n_tensors = sum(1 for p in det.parameters() if p.requires_grad)
        ref, ref_s = None, None
        for impl in IMPLEMENTATIONS:
            median_s, after = time_updates(det, opt_cfg, impl, args.steps)
            if ref is None:
                ref, ref_s, same = after, median_s, "-"
            else:
                diff = max((a - b).abs().max().item() for a, b in zip(ref, after))
                same = "bit for bit" if diff == 0 else f"differs (max {diff:.1e})"
            rows.append({"variant": item, "optimizer": opt_cfg.get("name", "sgd"), "params (M)":
                         f"{count_params(det) / 1e6:.2f}", "tensors": n_tensors, "implementation": impl,
                         "median update, CPU ms": f"{median_s * 1e3:.1f}", "vs default": f"{ref_s / median_s:.2f}x",
                         f"parameters after {args.steps} updates": same})
            print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    out = {"title": f"Optimizer update per implementation at the `{args.scale}` scale",
           "command": command_line(), "environment": env,
           "intro": [f"Each variant's detector with its resolved config's optimizer and parameter groups; {args.steps} "
                     f"updates on seeded random gradients (scale 1e-2) per implementation, each from the same "
                     f"parameters; median CPU time of one `optimizer.step()` ({args.threads} thread(s)). `default`: "
                     f"torch's choice for CPU tensors (a per-parameter loop); the last column compares the "
                     f"parameters after the updates with the default's."],
           "columns": list(rows[0]), "rows": rows,
           "notes": [f"Load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}."]}
    if not args.no_save:
        save("optimizer_step", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
