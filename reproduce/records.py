"""The run-record store: one JSON file per run, ``runs/<ablation>/<variant>/seed<k>/record.json``.

A record holds: ablation, variant, seed, scale, the full resolved config (``requested_config``: as
the run was asked for; ``config``: after its preparation steps), ``status``
(``running`` | ``completed`` | ``failed`` | ``interrupted``), the error and traceback of a failed
run, metrics (COCO AP, AP50, AP75, APs, APm, APl, AR100; speed), the per-epoch validation curve,
params, FLOPs (multiply-adds), wall time, hardware, git commit, and the W&B run id and directory.

Writes are atomic (write a temporary file in the same folder, ``os.replace``), so a killed process
never leaves a half-written record: the store is always consistent. A ``running`` record whose
process is gone (killed, machine rebooted) is treated as not finished and is run again.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

RUNS_DIR = Path(os.environ.get("REPRODUCE_RUNS", "runs"))
STATUSES = ("running", "completed", "failed", "interrupted")


def run_dir(ablation: str, variant: str, seed: int, root: str | Path | None = None) -> Path:
    return Path(root or RUNS_DIR) / ablation / variant / f"seed{seed}"


class RecordConflictError(ValueError):
    """A stored record belongs to another run (e.g. another scale): the store is left as it is."""


def record_path(ablation: str, variant: str, seed: int, root: str | Path | None = None) -> Path:
    return run_dir(ablation, variant, seed, root) / "record.json"


def write_record(path: str | Path, record: dict) -> None:
    """Atomically write ``record`` as JSON at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".record.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: str | Path) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def update_record(path: str | Path, **fields) -> dict:
    rec = read_record(path) or {}
    rec.update(fields)
    write_record(path, rec)
    return rec


def load_records(ablation: str, root: str | Path | None = None) -> list[dict]:
    """Every record of an ablation (any status), sorted by variant and seed."""
    base = Path(root or RUNS_DIR) / ablation
    recs = [json.loads(p.read_text()) for p in sorted(base.glob("*/seed*/record.json"))]
    return sorted(recs, key=lambda r: (r.get("variant", ""), r.get("seed", 0)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(record: dict) -> bool:
    """A ``running`` record whose process is gone (same host, dead pid) or was started elsewhere."""
    if record.get("status") != "running":
        return False
    if record.get("host") != socket.gethostname():
        return False  # another machine's job (SLURM): leave it alone
    return not _pid_alive(int(record.get("pid", -1)))


def wait_while_running(path: str | Path, timeout_s: float, poll_s: float = 5.0) -> dict | None:
    """While another live process (here or on another host) holds the record at ``path`` as
    ``running``, wait for it; returns the record as it is then. Raises ``TimeoutError`` after
    ``timeout_s`` (remove the record if that process is gone for good)."""
    import time

    t0 = time.time()
    rec = read_record(path)
    while rec and rec.get("status") == "running" and not is_stale(rec) and rec.get("pid") != os.getpid():
        if time.time() - t0 > timeout_s:
            raise TimeoutError(f"{path} has been 'running' (pid {rec.get('pid')} on {rec.get('host')}) for over "
                               f"{timeout_s:.0f} s; remove the record if that process is gone")
        time.sleep(poll_s)
        rec = read_record(path)
    return rec


# Keys that do not change a run's result: a record stays valid when only these differ.
RESULT_NEUTRAL_KEYS = ("logger", "measure", "data.num_workers", "data.pin_memory", "data.persistent_workers",
                       "data.prefetch_factor", "trainer.log_every_n_steps")
# Keys whose value equal to Lightning's default means the same as leaving them unset (a SLURM launch
# spells out ``trainer.num_nodes=1``; a run recorded without it is the same run).
DEFAULT_EQUIVALENT = {"trainer.num_nodes": 1}


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _comparable(cfg: dict) -> dict:
    flat = _flatten(json.loads(json.dumps(cfg, default=str)))  # tuples -> lists, as a stored record has them
    return {k: v for k, v in flat.items()
            if not any(k == n or k.startswith(n + ".") for n in RESULT_NEUTRAL_KEYS)
            and not (k in DEFAULT_EQUIVALENT and v == DEFAULT_EQUIVALENT[k])}


def config_changes(record: dict | None, cfg: dict) -> list[str]:
    """The config keys whose values differ between the run ``record`` was made with and ``cfg`` (the
    run's config now, before preparation steps), ignoring :data:`RESULT_NEUTRAL_KEYS`. A record from
    before ``requested_config`` was stored compares its ``config`` when it had no preparation step,
    and is taken as unchanged otherwise (its config holds the steps' outputs)."""
    if not record:
        return []
    before = record.get("requested_config")
    if before is None:
        if record.get("prepare") or "config" not in record:
            return []
        before = record["config"]
    a, b = _comparable(before), _comparable(cfg)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))


def needs_run(record: dict | None, retry_failed: bool = True) -> bool:
    """Whether a run should (re)start: no record, failed (when retrying), interrupted, or stale."""
    if record is None:
        return True
    status = record.get("status")
    if status == "completed":
        return False
    if status == "failed":
        return retry_failed
    if status == "interrupted":
        return True
    return is_stale(record)
