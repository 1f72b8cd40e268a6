"""Benchmark results: one JSON per benchmark under ``reports/benchmarks/``, and ``reports/benchmarks.md``
regenerated from all of them. Every result carries the command that reproduces it and the machine
it ran on (device, torch / torchvision versions, threads, load average at the time).

    python benchmarks/_results.py          # regenerate reports/benchmarks.md from the JSON files
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "reports" / "benchmarks"
REPORT = ROOT / "reports" / "benchmarks.md"
ORDER = ["train_speed", "train_speed_gpu", "train_speed_gpu_in_memory", "train_speed_gpu_compile", "gpu_path_check",
         "real_loop", "real_loop_full", "cpu_step_time", "cpu_step_time_modes",
         "cpu_step_time_modes_r0sp53", "eval_speed"]


def command_line() -> str:
    """The command that ran this benchmark, as typed from the repository root."""
    argv = list(sys.argv)
    try:
        argv[0] = str(Path(argv[0]).resolve().relative_to(ROOT))
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in argv)


def save(name: str, result: dict) -> Path:
    """Write ``reports/benchmarks/<name>.json`` and regenerate ``reports/benchmarks.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    write_report()
    return path


def _env_line(env: dict) -> str:
    load = ", ".join(str(x) for x in env.get("loadavg", []))
    return (f"{env.get('device')}; torch {env.get('torch')}, torchvision {env.get('torchvision')}, "
            f"Python {env.get('python')}; {env.get('threads')} torch thread(s) of {env.get('cpu_count')} cores; "
            + (f"load average (1, 5, 15 min) {load} " if load else "") + f"at {env.get('time')}")


def render(result: dict) -> list[str]:
    lines = [f"## {result['title']}", "", f"Command: `{result['command']}`", "",
             f"Machine: {_env_line(result['environment'])}.", ""]
    lines += result.get("intro", [])
    if result.get("intro"):
        lines.append("")
    cols = result["columns"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in cols) + " |" for row in result["rows"]]
    if result.get("notes"):
        lines += [""] + [f"- {n}" for n in result["notes"]]
    return lines + [""]


def write_report() -> Path:
    found = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    names = [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]
    lines = ["# Benchmarks", "",
             "Generated from `reports/benchmarks/*.json` by the benchmark scripts in `benchmarks/` "
             "(`python benchmarks/_results.py` regenerates this page). Each section names the command that "
             "reproduces it and the machine state when it ran; figures from a shared, loaded machine are "
             "slower than an idle one would give.", ""]
    for n in names:
        lines += render(found[n])
    REPORT.write_text("\n".join(lines))
    return REPORT


if __name__ == "__main__":
    print(write_report())
