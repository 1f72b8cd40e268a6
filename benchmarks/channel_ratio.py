"""Channel-ratio speed benchmark behind RSANet's CCM ablation (section 4.4.1 per review 001).

Part 1 repeats ShuffleNet V2's guideline-G1 experiment [3rd: Ma et al., ECCV 2018, arXiv 1807.11164,
section 2, Table 1]: a network of 10 stacked blocks, each two 1x1 convs (c1 -> c2, c2 -> c1), on a
56x56 input, at c1:c2 = 1:1, 1:2, 1:6, 1:12 with (almost) constant FLOPs. Widths are the paper's
x1 pairs: the ARM setting (32,32) (22,44) (13,78) (9,108), single thread, batch 1 (paper: Snapdragon
810, images/s), and the GPU setting (128,128) (90,180) (52,312) (36,432), batch 8 (paper: GTX 1080Ti,
batches/s; batch 8 is the batch of the paper's Fig. 1 GPU results, taken for Table 1 too
[hypothesis]). The convs have no bias, BN or ReLU [hypothesis: the paper lists only the convs].
Both settings run here on the CPU; the paper's numbers are printed beside ours, and the comparison
that carries over between machines is each ratio's speed relative to 1:1.

Part 2 (``--lcnet``) times RSANet's LCNet backbone (and the dense RSANet path: LCNet + RSAFPN +
head, no resize / NMS) at 416x416 for each CCM ratio at constant multiply-adds
(:func:`reproduce.models.rsanet.lcnet.stage_plan`), batch 1, on the CPU. RSANet's own ratio table is
not available [docs/provenance/rsanet.md section 6.3].

Latency is the median over ``--rounds`` interleaved rounds of ``reproduce.measure.measure_latency``
medians (interleaving spreads the load of a shared machine over all ratios); the fastest single run
is reported beside it, as it is the figure least disturbed by other jobs on a shared CPU. Writes
``reports/channel_ratio.md`` and the raw numbers to ``reports/channel_ratio.json``. Example::

    python benchmarks/channel_ratio.py --lcnet
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reproduce.measure import MACS_NOTE, count_macs, measure_latency  # noqa: E402

SOURCE = "3rd: ShuffleNet V2 (Ma et al., ECCV 2018, arXiv 1807.11164), Table 1, x1 FLOPs level"
# ratio -> (c1, c2) and the paper's speed [3rd: ShuffleNet V2 Table 1, via docs/provenance/rsanet.md 5.1]
SETTINGS = {
    "arm": {"batch": 1, "unit": "images/s", "hardware": "Qualcomm Snapdragon 810, single thread, Neon",
            "rows": {1: ((32, 32), 76.2), 2: ((22, 44), 72.9), 6: ((13, 78), 69.1), 12: ((9, 108), 57.6)}},
    "gpu": {"batch": 8, "unit": "batches/s", "hardware": "GTX 1080Ti, cuDNN 7.0 benchmark mode",
            "rows": {1: ((128, 128), 1480), 2: ((90, 180), 1296), 6: ((52, 312), 876), 12: ((36, 432), 748)}},
}
SIZE = 56
BLOCKS = 10


def g1_network(c1: int, c2: int, blocks: int = BLOCKS) -> nn.Sequential:
    """ShuffleNet V2's G1 benchmark network: ``blocks`` x (1x1 conv c1 -> c2, 1x1 conv c2 -> c1)."""
    layers = []
    for _ in range(blocks):
        layers += [nn.Conv2d(c1, c2, 1, bias=False), nn.Conv2d(c2, c1, 1, bias=False)]
    return nn.Sequential(*layers).eval()


def _timed(cases: dict, rounds: int, warmup: int, repeats: int, min_time_s: float = 0.25) -> dict:
    """cases: key -> callable. (median, min) ms: the median over ``rounds`` interleaved rounds of
    measure_latency medians, and the fastest single run (less sensitive to other jobs on the machine);
    each measurement runs at least ``repeats`` times and at least ``min_time_s`` seconds."""
    samples = {k: [] for k in cases}
    reps = {}
    for k, fn in cases.items():
        one = measure_latency(fn, warmup=warmup, repeats=1)["median_ms"]
        reps[k] = max(repeats, int(min_time_s * 1000.0 / max(one, 1e-3)))
    mins = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            res = measure_latency(fn, warmup=1, repeats=reps[k])
            samples[k].append(res["median_ms"])
            mins[k].append(res["min_ms"])
    return {k: (statistics.median(v), min(mins[k])) for k, v in samples.items()}


def run_g1(setting: str, rounds: int, warmup: int, repeats: int) -> list[dict]:
    spec = SETTINGS[setting]
    batch, rows = spec["batch"], spec["rows"]
    cases, macs = {}, {}
    for r, ((c1, c2), _) in rows.items():
        net = g1_network(c1, c2)
        x = torch.rand(batch, c1, SIZE, SIZE)
        macs[r] = count_macs(net, SIZE, batch=1, channels=c1)

        def fn(net=net, x=x):
            with torch.inference_mode():
                net(x)

        cases[r] = fn
    ms = _timed(cases, rounds, warmup, repeats)
    out = []
    for r, ((c1, c2), paper) in rows.items():
        med, fastest = ms[r]
        out.append({"ratio": r, "c1": c1, "c2": c2, "macs": macs[r], "ms": med, "min_ms": fastest, "batch": batch,
                    "images_s": batch * 1000.0 / med, "batches_s": 1000.0 / med, "paper": paper})
    for row in out:
        row["rel"] = row["batches_s"] / out[0]["batches_s"]
        row["rel_min"] = out[0]["min_ms"] / row["min_ms"]
        row["paper_rel"] = row["paper"] / out[0]["paper"]
    return out


def run_lcnet(rounds: int, warmup: int, repeats: int, size: int = 416, preset: str = "voc") -> list[dict]:
    from reproduce.models import create_detector
    from reproduce.models.rsanet import WIDTH_PRESETS, LCNet
    from reproduce.models.rsanet.lcnet import VALID_RATIOS

    widths = WIDTH_PRESETS[preset]["widths"]
    x = torch.rand(1, 3, size, size)
    cases, info = {}, {}
    for r in VALID_RATIOS:
        trunk = LCNet(widths, ratio=r).eval()
        det = create_detector("rsanet", num_classes=20, preset=preset, ratio=r, image_size=size).eval()

        def dense(m=det):
            with torch.inference_mode():
                m.head(list(m.backbone(x).values()))

        def lc(m=trunk):
            with torch.inference_mode():
                m(x)

        cases[("lcnet", r)], cases[("rsanet", r)] = lc, dense
        info[r] = {"plan": [(p.stream, p.inner) for p in trunk.plan], "lcnet_macs": count_macs(trunk, size),
                   "rsanet_macs": count_macs(det, size, forward=lambda m, t: m.head(list(m.backbone(t).values())))}
    ms = _timed(cases, rounds, warmup, repeats)
    out = []
    for r in VALID_RATIOS:
        out.append({"ratio": r, **info[r], "lcnet_ms": ms[("lcnet", r)][0], "rsanet_ms": ms[("rsanet", r)][0],
                    "lcnet_min_ms": ms[("lcnet", r)][1], "rsanet_min_ms": ms[("rsanet", r)][1]})
    for row in out:
        row["lcnet_rel_min"] = out[0]["lcnet_min_ms"] / row["lcnet_min_ms"]
        row["rsanet_rel_min"] = out[0]["rsanet_min_ms"] / row["rsanet_min_ms"]
        row["lcnet_fps"] = 1000.0 / row["lcnet_ms"]
        row["rsanet_fps"] = 1000.0 / row["rsanet_ms"]
        row["lcnet_rel"] = row["lcnet_fps"] / out[0]["lcnet_fps"]
        row["rsanet_rel"] = row["rsanet_fps"] / out[0]["rsanet_fps"]
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _verdict(rel: list[float], paper_rel: float | None = None) -> str:
    """One line: is 1:1 the fastest, does speed fall monotonically with the ratio (5% noise band)."""
    fastest = max(range(len(rel)), key=lambda i: rel[i])
    top = "yes" if fastest == 0 else ("tied (within 5%)" if max(rel) <= 1.05 else "no")
    monotone = all(b <= a * 1.05 for a, b in itertools.pairwise(rel))
    text = (f"1:1 fastest: **{top}**; speed non-increasing with the ratio (within 5%): "
            f"**{'yes' if monotone else 'no'}**; 1:12 runs at {rel[-1]:.2f}x the 1:1 speed")
    return text + (f" (paper: {paper_rel:.2f}x)." if paper_rel is not None else ".")


def render(g1: dict, lcnet: list[dict] | None, args, command: str) -> str:
    lines = [
        "# Channel ratio at constant FLOPs (ShuffleNet V2 G1; RSANet CCM ablation)",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}.",
        "",
        (f"- Device: CPU, {_cpu_name()} ({torch.get_num_threads()} thread(s) used, "
        f"{os.cpu_count()} logical cores visible; machine shared with other jobs)"),
        (f"- Load average (1 / 5 / 15 min) at start {args.load_start}, at end {args.load_end}: other jobs share "
         "this CPU, so absolute speeds and, less so, relative speeds vary between runs; compare the 'min' columns "
         "and the orderings rather than single cells."),
        f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.machine()}",
        (f"- Timing: median over {args.rounds} interleaved rounds of the median of >= {args.repeats} runs "
        f"(>= 0.25 s per measurement; 'min' = fastest single run; LCNet part: {args.lcnet_rounds} rounds of "
        f">= {args.lcnet_repeats} runs) "
        f"(`reproduce.measure.measure_latency`, {args.warmup} warm-up runs), `torch.inference_mode`, float32."),
        f"- {MACS_NOTE} Counted from the modules (`reproduce.measure.count_macs`).",
        "",
        "## 1. ShuffleNet V2 guideline G1: 10 blocks of two 1x1 convs at 56x56",
        "",
        "Paper numbers: " + SOURCE + ". Relative speed = speed / speed at 1:1 on the same machine.",
        "",
    ]
    for setting, rows in g1.items():
        spec = SETTINGS[setting]
        lines += [
            (f"### Paper's {setting.upper()} widths, batch {spec['batch']}, run on this CPU "
            f"(paper: {spec['hardware']}, {spec['unit']})"),
            "",
            (f"| c1:c2 | (c1, c2) | MACs / image (M) | ours: median ms / batch | ours: {spec['unit']} "
            f"| ours: rel. to 1:1 | ours: min ms | ours: rel. to 1:1 (min) "
            f"| paper {spec['unit']} † | paper rel. to 1:1 † |"),
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        key = "images_s" if spec["unit"] == "images/s" else "batches_s"
        for r in rows:
            lines.append(f"| 1:{r['ratio']} | ({r['c1']}, {r['c2']}) | {r['macs'] / 1e6:.1f} | {r['ms']:.2f} | "
                         f"{r[key]:.2f} | {r['rel']:.2f} | {r['min_ms']:.2f} | {r['rel_min']:.2f} | {r['paper']:g} | "
                         f"{r['paper_rel']:.2f} |")
        lines += ["", "Median: " + _verdict([r["rel"] for r in rows], rows[-1]["paper_rel"]),
                  "Min: " + _verdict([r["rel_min"] for r in rows], rows[-1]["paper_rel"]), ""]
    lines += ["† " + SOURCE + " (third-party source, quoted in docs/provenance/rsanet.md section 5.1). The "
              "paper's widths keep c1 x c2 only approximately constant (1:12 is 5% below 1:1), hence the MACs "
              "column.", ""]
    if lcnet:
        lines += [
            "## 2. RSANet LCNet per CCM ratio at 416x416, batch 1 (CPU)",
            "",
            ("Widths: `voc` preset stage widths (hypothesis, fitted to the paper's params / FLOPs); at 1:r the "
            "CCM stream / inner widths (c1, c2) per stage are solved to keep each stage's multiply-adds "
            "(`reproduce.models.rsanet.lcnet.stage_plan`, hypothesis). RSANet's own ratio table is not "
            "available (docs/provenance/rsanet.md section 6.3): no paper column."),
            "",
            ("| ratio | (c1, c2) per stage 1-5 | LCNet MACs (B) | LCNet ms | LCNet FPS | rel. to 1:1 | "
             "rel. (min) | RSANet dense MACs (B) | RSANet ms | RSANet FPS | rel. to 1:1 | rel. (min) |"),
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in lcnet:
            plan = " ".join(f"({a},{b})" for a, b in r["plan"])
            lines.append(f"| 1:{r['ratio']} | {plan} | {r['lcnet_macs'] / 1e9:.3f} | {r['lcnet_ms']:.1f} | "
                         f"{r['lcnet_fps']:.2f} | {r['lcnet_rel']:.2f} | {r['lcnet_rel_min']:.2f} | "
                         f"{r['rsanet_macs'] / 1e9:.3f} | {r['rsanet_ms']:.1f} | {r['rsanet_fps']:.2f} | "
                         f"{r['rsanet_rel']:.2f} | {r['rsanet_rel_min']:.2f} |")
        lines += ["", "RSANet's claim (review 001): equal input / output channels (1:1) gives the highest FPS.",
                  "LCNet, median: " + _verdict([r["lcnet_rel"] for r in lcnet]),
                  "LCNet, min: " + _verdict([r["lcnet_rel_min"] for r in lcnet]),
                  "RSANet dense, median: " + _verdict([r["rsanet_rel"] for r in lcnet]),
                  "RSANet dense, min: " + _verdict([r["rsanet_rel_min"] for r in lcnet]),
                  "RSANet dense = LCNet + RSAFPN + light head, without input resize, anchors, decoding and NMS.",
                  ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (paper's ARM run: 1)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--lcnet", action="store_true", help="also time LCNet / RSANet per CCM ratio at 416 px")
    ap.add_argument("--lcnet-rounds", type=int, default=9)
    ap.add_argument("--lcnet-repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "reports" / "channel_ratio.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    command = "python benchmarks/channel_ratio.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.load_start = "/".join(f"{v:.1f}" for v in os.getloadavg())
    g1 = {s: run_g1(s, args.rounds, args.warmup, args.repeats) for s in args.settings}
    for s, rows in g1.items():
        print(s, [(f"1:{r['ratio']}", round(r["images_s"], 1), round(r["rel"], 2)) for r in rows])
    lcnet = run_lcnet(args.lcnet_rounds, 1, args.lcnet_repeats) if args.lcnet else None
    if lcnet:
        print("lcnet", [(f"1:{r['ratio']}", round(r["lcnet_fps"], 2), round(r["rsanet_fps"], 2)) for r in lcnet])
    args.load_end = "/".join(f"{v:.1f}" for v in os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(g1, lcnet, args, command.strip()))
    raw = {"command": command.strip(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "device": _cpu_name(), "load_avg": [args.load_start, args.load_end], "g1": g1, "lcnet": lcnet}
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
