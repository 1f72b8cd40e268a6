"""The run-record store: one JSON file per run, ``runs/<ablation>/<variant>/seed<k>/record.json``.

A record holds: ablation, variant, seed, scale, the full resolved config (``requested_config``: as
the run was asked for; ``config``: after its preparation steps), the ``--set`` overrides it was asked
with (``sets``; tables tell them from a change of the config files since), ``status``
(``running`` | ``completed`` | ``failed`` | ``interrupted``), the error and traceback of a failed
run, metrics (COCO AP, AP50, AP75, APs, APm, APl, AR100; speed), the per-epoch validation curve,
params, FLOPs (multiply-adds), wall time, hardware, git commit, and the W&B run id and directory.

Writes are atomic (write a temporary file in the same folder, ``os.replace``), so a killed process
never leaves a half-written record: the store is always consistent. Records are readable by everyone
(mode 0644). A ``running`` record whose process is gone (killed, machine rebooted) is treated as not
finished and is run again.

A file that is not a record (truncated, empty, ``{}``, ``[]``, no valid ``status``) raises
:class:`UnreadableRecordError`, which names the file and what is wrong with it; the run that meets it
keeps it aside as ``record.json.corrupt-<time>`` (:func:`set_aside`) and runs again, and
:func:`load_records` stands in an ``unreadable`` entry for it, so that a table shows that one row as
"record unreadable" and renders every other row.

The run lock (:func:`hold_run`, ``<run dir>/run.lock``, a ``filelock.FileLock``) is held by the process
that trains a run, for the whole attempt: two identical commands on one store never train a run twice.
The operating system drops the lock with its process, so a killed run never leaves a stale one.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path

from filelock import FileLock, Timeout

RUNS_DIR = Path(os.environ.get("REPRODUCE_RUNS", "runs"))
STATUSES = ("running", "completed", "failed", "interrupted")
UNREADABLE = "unreadable"  # the status :func:`load_records` gives a record file it cannot read
RECORD_MODE = 0o644


def run_dir(ablation: str, variant: str, seed: int, root: str | Path | None = None) -> Path:
    return Path(root or RUNS_DIR) / ablation / variant / f"seed{seed}"


class RecordConflictError(ValueError):
    """A stored record belongs to another run (e.g. another scale): the store is left as it is."""


class RunLockedError(RecordConflictError):
    """Another live process holds the run (its run lock): this one leaves the run and its record alone."""


class UnreadableRecordError(ValueError):
    """A record file that is not a run record; the message names the file and what is wrong."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: unreadable record ({reason})")


def record_path(ablation: str, variant: str, seed: int, root: str | Path | None = None) -> Path:
    return run_dir(ablation, variant, seed, root) / "record.json"


def write_record(path: str | Path, record: dict) -> None:
    """Atomically write ``record`` as JSON at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".record.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, RECORD_MODE)  # mkstemp creates 0600
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: str | Path) -> dict | None:
    """The record at ``path``; None when there is none. Raises :class:`UnreadableRecordError` for a
    file that is not a record: not UTF-8 JSON, not an object, or without a valid ``status``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnreadableRecordError(path, f"{type(e).__name__}: {e}") from None
    if not isinstance(rec, dict):
        raise UnreadableRecordError(path, f"a JSON {type(rec).__name__}, not an object")
    if rec.get("status") not in STATUSES:
        why = "no 'status' field" if "status" not in rec else f"status {rec['status']!r}"
        raise UnreadableRecordError(path, f"{why}; valid: {', '.join(STATUSES)}")
    return rec


def read_record_or_none(path: str | Path) -> dict | None:
    """:func:`read_record`, with an unreadable record read as none: for a caller deciding whether to
    start the run, which then sets the file aside and runs again."""
    try:
        return read_record(path)
    except UnreadableRecordError:
        return None


def set_aside(path: str | Path) -> Path:
    """Keep an unreadable record beside the store as ``<name>.corrupt-<time>``; returns its new path."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    n = 1
    while aside.exists():
        aside, n = aside.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{n}"), n + 1
    os.replace(path, aside)
    return aside


def update_record(path: str | Path, **fields) -> dict:
    rec = read_record(path) or {}
    rec.update(fields)
    write_record(path, rec)
    return rec


def _unreadable_entry(ablation: str, path: Path, error: UnreadableRecordError) -> dict:
    """What :func:`load_records` returns for an unreadable record: its place in the store and why."""
    seed = path.parent.name[len("seed"):]
    return {"ablation": ablation, "variant": path.parent.parent.name, "seed": int(seed) if seed.isdigit() else seed,
            "status": UNREADABLE, "error": str(error), "path": str(path)}


def load_records(ablation: str, root: str | Path | None = None) -> list[dict]:
    """Every record of an ablation (any status), sorted by variant and seed; an unreadable record file
    is an entry with status :data:`UNREADABLE` (variant and seed from its folder, no scale)."""
    base = Path(root or RUNS_DIR) / ablation
    recs = []
    for p in sorted(base.glob("*/seed*/record.json")):
        try:
            recs.append(read_record(p))
        except UnreadableRecordError as e:
            recs.append(_unreadable_entry(ablation, p, e))
    return sorted(recs, key=_store_order)


def _store_order(rec: dict) -> tuple:
    seed = rec.get("seed", 0)
    return rec.get("variant", ""), (0, seed) if isinstance(seed, int) else (1, str(seed))


def session_of(records: list[dict]) -> dict | None:
    """The side-by-side speed measurement (``reproduce speed``, :mod:`reproduce.speed_side_by_side`) of the
    completed records: the one session that every measured completed record carries, or None when none is
    measured or they come from different sessions (then tables use per-run FPS). A completed run without one
    had no checkpoint where the measurement ran (checkpoints are not committed); tables leave it out of
    the FPS mean and name it, as long as each row has a measured run (:func:`reproduce.tables.summary.summarize`)."""
    done = [r for r in records if r.get("status") == "completed"]
    sessions = {r["speed_side_by_side"].get("session") for r in done if r.get("speed_side_by_side")}
    if len(sessions) != 1 or None in sessions:
        return None
    return next(r["speed_side_by_side"] for r in done if r.get("speed_side_by_side"))


# how long to wait for a run lock before taking it as held: long enough for another command's look at the
# lock (a moment) to pass, short against any training
LOCK_WAIT_S = 2.0


@contextlib.contextmanager
def hold_run(run_dir: str | Path, wait_s: float = LOCK_WAIT_S):
    """Hold the run lock of ``run_dir`` (``run.lock`` in it) for the ``with`` block, or raise
    :class:`RunLockedError` (naming the holder from its record) when another process still holds it
    after ``wait_s`` seconds."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / "run.lock", timeout=wait_s, mode=RECORD_MODE)
    try:
        lock.acquire()
    except Timeout:
        raise RunLockedError(f"{run_dir} is held by another live process{_holder(run_dir)}") from None
    try:
        yield
    finally:
        lock.release()


def _holder(run_dir: Path) -> str:
    rec = read_record_or_none(run_dir / "record.json") or {}
    return f" (pid {rec['pid']} on {rec.get('host')})" if rec.get("status") == "running" and rec.get("pid") else ""


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs here (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state letter follows the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
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
    ``timeout_s`` (remove the record if that process is gone for good). An unreadable record reads as
    none (the step that finds it sets it aside and runs again)."""
    t0 = time.time()
    rec = read_record_or_none(path)
    while rec and rec.get("status") == "running" and not is_stale(rec) and rec.get("pid") != os.getpid():
        if time.time() - t0 > timeout_s:
            raise TimeoutError(f"{path} has been 'running' (pid {rec.get('pid')} on {rec.get('host')}) for over "
                               f"{timeout_s:.0f} s; remove the record if that process is gone")
        time.sleep(poll_s)
        rec = read_record_or_none(path)
    return rec


# Keys that do not change a run's result: a record stays valid when only these differ. ``trainer.channels_last``
# is the memory layout of the same weights and inputs: the same model, data and recipe; other conv kernels
# sum in another order, so values differ by float rounding (gradients ~1e-4 of their norm), as they do
# between a record made on one machine and on another (tests/test_gpu_path.py checks the agreement).
RESULT_NEUTRAL_KEYS = ("logger", "measure", "data.num_workers", "data.pin_memory", "data.persistent_workers",
                       "data.prefetch_factor", "trainer.log_every_n_steps", "trainer.channels_last")
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


# prepare step kind -> the config section holding its settings. A run reads a section only through a step
# its ``prepare:`` list names, so the section of a step it does not run cannot change its result
# (:func:`unused_step_sections`).
PREPARATION_SECTIONS = {"pretrain": "pretrain", "nats_search": "nats_search",
                        "spinenet_connection_search": "spinenet_search"}


def unused_step_sections(*cfgs: dict) -> set[str]:
    """The preparation-settings sections that none of ``cfgs`` reads: those of the step kinds no
    ``prepare:`` list of theirs names (a scale file sets ``pretrain:`` for every run; only the runs
    that pretrain read it)."""
    used = {step.get("kind") for cfg in cfgs for step in (cfg or {}).get("prepare") or [] if isinstance(step, dict)}
    return {section for kind, section in PREPARATION_SECTIONS.items() if kind not in used}


def _comparable(cfg: dict, neutral: tuple[str, ...] = ()) -> dict:
    flat = _flatten(json.loads(json.dumps(cfg, default=str)))  # tuples -> lists, as a stored record has them
    return {k: v for k, v in flat.items()
            if not any(k == n or k.startswith(n + ".") for n in (*RESULT_NEUTRAL_KEYS, *neutral))
            and not (k in DEFAULT_EQUIVALENT and v == DEFAULT_EQUIVALENT[k])}


def config_changes(record: dict | None, cfg: dict) -> list[str]:
    """The config keys whose values differ between the run ``record`` was made with and ``cfg`` (the
    run's config now, before preparation steps), ignoring :data:`RESULT_NEUTRAL_KEYS` and the settings of
    preparation steps that neither runs (:func:`unused_step_sections`). A record from
    before ``requested_config`` was stored compares its ``config`` when it had no preparation step,
    and is taken as unchanged otherwise (its config holds the steps' outputs)."""
    if not record:
        return []
    before = record.get("requested_config")
    if before is None:
        if record.get("prepare") or "config" not in record:
            return []
        before = record["config"]
    unused = tuple(unused_step_sections(before, cfg))
    a, b = _comparable(before, unused), _comparable(cfg, unused)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))


def find_twin(ablation: str, seed: int, scale: str, cfg: dict,
              root: str | Path | None = None) -> tuple[Path, dict] | None:
    """A completed run of another ablation with this run's seed, scale and config
    (:func:`config_changes` finds no difference): the same experiment, which the suite need not train twice
    (SpineNet's R0-SP53 is a row of Figure 4, Table 8 and Table 9). A record that is itself shared leads to
    its origin, and is not shared when that origin is gone, changed, or a run of ``ablation`` itself (a run
    trained again must not share back the copy another ablation took of its earlier record). Returns
    ``(path, record)`` of the first such record in store order, or None."""
    base = Path(root or RUNS_DIR)
    for path in sorted(base.glob(f"*/*/seed{seed}/record.json")):
        if path.parts[-4] in ("_prepare", ablation):  # variants of one ablation are its rows: each trains
            continue
        rec = read_record_or_none(path)
        if not rec or rec.get("status") != "completed" or rec.get("scale") != scale or rec.get("seed") != seed:
            continue
        if rec.get("requested_config") is None or config_changes(rec, cfg):
            continue
        origin = (rec.get("shared_from") or {}).get("record")
        if origin:  # a shared copy: only its origin is shared
            if Path(origin).parts[0] == ablation:
                continue  # a copy of one of this ablation's own runs (being run again): that run trains itself
            origin_rec = read_record_or_none(base / origin) if (base / origin).is_file() else None
            if not origin_rec or origin_rec.get("status") != "completed" or config_changes(origin_rec, cfg):
                continue  # its origin is gone or changed: the copy's results have no run behind them
            return base / origin, origin_rec
        return path, rec
    return None


def share_record(path: str | Path, twin_path: str | Path, twin: dict, *, ablation: str, variant: str, paper: str,
                 sets: list[str], root: str | Path | None = None) -> dict:
    """Write at ``path`` the record of a run that :func:`find_twin` found already trained elsewhere: the twin's
    results, metrics, curves, sizes, costs and W&B run, under this run's ablation and variant, with
    ``shared_from`` naming the twin's record (relative to the store). Tables say which rows share runs."""
    base = Path(root or RUNS_DIR)
    try:
        rel = str(Path(twin_path).resolve().relative_to(base.resolve()))
    except ValueError:
        rel = str(twin_path)
    rec = {k: v for k, v in twin.items() if k not in ("shared_from", "speed_side_by_side")}
    rec.update(ablation=ablation, variant=variant, paper=paper, sets=list(sets),
               shared_from={"record": rel, "ablation": twin.get("ablation"), "variant": twin.get("variant"),
                            "shared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_record(path, rec)
    return rec


def trained_in(path: str | Path, record: dict) -> Path:
    """The folder holding the checkpoints of the run whose record is at ``path``: its own, or for a record
    :func:`share_record` wrote, the folder of the run it shares (``shared_from``, relative to the store)."""
    path = Path(path)
    shared = (record.get("shared_from") or {}).get("record")
    return path.parents[3] / Path(shared).parent if shared else path.parent


def ended_unfinished(record: dict | None) -> bool:
    """Whether a run's last attempt ended without finishing its record: stopped (``interrupted``),
    still ``running`` (its process was killed), or ``failed`` with ``failure_kind`` ``crash`` (its process
    died and the launching process recorded that). Such a run resumes from its last checkpoint."""
    status = (record or {}).get("status")
    return status in ("interrupted", "running") or (status == "failed" and record.get("failure_kind") == "crash")


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


# Relative difference of the first logged training loss (10 steps in) below which two runs of one config
# differ only by float rounding, and above which they are different runs. In between the first logged loss
# cannot tell: rounding can flip a near-tie anchor match within 10 steps (the baseline RetinaNet's seed 1
# replayed at 2 threads: 3e-3, while at 1 thread it logs the record's losses bit for bit), and some pairs
# of different seeds differ by only 2e-3 to 7e-3 there (SpineNet rows), while seed 0 at 2 threads: 7e-6.
ROUNDING_REL, DIFFERENT_REL = 1e-4, 1e-2


def recorded_eval_set(record: dict, split: str = "val") -> dict:
    """The identity of the ``split`` set a run was scored on (its record's ``eval_data``, written by
    :mod:`reproduce.data.identity`); ``{}`` for a record made before it, or a malformed one."""
    sets = record.get("eval_data")
    d = sets.get(split) if isinstance(sets, dict) else None
    return d if isinstance(d, dict) else {}


def replay_relation(mine: dict, same: dict) -> tuple[str | None, float]:
    """How a run relates to another record of its config, from their first logged training losses
    (``loss_trace``): ``identical`` (bit for bit: same data, initialisation, code and float rounding),
    ``rounding`` (the first differs by < ``ROUNDING_REL``: same data and initialisation, other rounding, e.g.
    another torch thread count), ``inconclusive`` (up to ``DIFFERENT_REL``: rounding or another run),
    ``different`` (data, initialisation or code differ) or None (a trace missing, or no step in common);
    with the first loss's relative difference."""
    a, b = mine.get("loss_trace"), same.get("loss_trace")
    pairs = [(x[1], y[1]) for x, y in zip(a or [], b or []) if x[0] == y[0]]
    if not pairs:
        return None, math.nan
    rel = abs(pairs[0][0] - pairs[0][1]) / max(abs(pairs[0][1]), 1e-12)
    if all(x == y for x, y in pairs):
        return "identical", 0.0
    return ("rounding" if rel < ROUNDING_REL else "inconclusive" if rel < DIFFERENT_REL else "different"), rel


# what a run's training leaves in its record: equal in two records of one config, they trained the same weights
TRAINING_RESULT_KEYS = ("params", "macs", "train_steps", "loss_trace", "curve", "metrics", "heldout_metrics")


def training_differences(mine: dict, replay: dict) -> list[str]:
    """The keys of :data:`TRAINING_RESULT_KEYS` in which ``replay`` (a run trained again with the config of
    ``mine``) differs from ``mine``; empty when it replays ``mine`` bit for bit (the logged losses, every
    validation of the curve, the final and held-out metrics equal to the last digit), so its checkpoint
    holds the weights ``mine`` trained. Values compare as the JSON they are stored as (a NaN metric equals NaN;
    a key neither record has, e.g. no held-out set, is equal); a record without a loss trace, curve or metrics
    has nothing to compare and differs in them."""
    def same(k):
        return json.dumps(mine.get(k), sort_keys=True) == json.dumps(replay.get(k), sort_keys=True)
    return [k for k in TRAINING_RESULT_KEYS
            if not same(k) or (k in ("loss_trace", "curve", "metrics") and not mine.get(k))]
