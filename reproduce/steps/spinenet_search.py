"""The ``spinenet_connection_search`` preparation step: connections for a fixed SpineNet block order.

Paper Table 8 compares the learned scale permutation with the hand-fixed Hourglass and Fish orders,
whose "cross-scale connections are searched in the same way as for R0-SP53" (**paper**, Table 8 text;
docs/provenance/spinenet.md sections 5.3 and 8.1). The search space is
:mod:`reproduce.models.spinenet.search_space`. The paper's reward: AP on 7,392 images held out from
COCO train2017; proxy model: SpineNet-49 with feature dimensions x 0.25, alpha 0.25, head dimension 64,
trained 5 epochs at 512 px; controller: an RNN trained with reinforcement learning, ~13k architectures
sampled for R0-SP53 (**paper** 5.3).

What this step does instead (**hypothesis** throughout; the suite cannot afford 13k proxy runs):

- Search: a seeded regularized (aging) evolution (Real et al., AAAI 2019) over the parent choices, or
  pure random search (``strategy: random``). The first candidate is the deterministic
  ``transforms.rule_connections`` graph (a point of the same space, so the search never returns a
  graph that scored worse on the proxy than the rule); the next ``population - 1`` are random; then
  each child mutates the parents of one block of the best of ``sample`` population members.
- Proxy (:class:`ProxyTask`): RetinaNet (``retinanet_spinenet``) with the candidate backbone scaled
  like the paper's proxy (``width_multiplier`` 0.25, ``resample_alpha_multiplier`` 0.5 -> filter
  scale 0.25, alpha 0.25, endpoints and head 64), trained ``train_steps`` steps on a data set's train
  split minus ``holdout_images`` held-out images (the last ones by image id), scored by COCO AP
  (torchmetrics, ``lightning_modules.detection.make_map_metric``) on the held-out images. Every
  candidate sees the same initial seed and batch order (common random numbers), so AP differences
  come from the graph.
- Budget: ``time_budget_s`` (no candidate is started that would, at the mean candidate time so far,
  end after it) and/or ``max_candidates``. With a time budget the number of candidates depends on the
  machine; with ``max_candidates`` alone a seed gives the same search on the same machine.

Entry points:
- the step (``prepare: [{kind: spinenet_connection_search, order: hourglass}]``, see
  :mod:`reproduce.steps`): step keys ``order`` (hourglass | fish) and optionally any search setting;
  the other settings come from the run config's ``spinenet_search:`` section, then
  ``DEFAULT_SEARCH``. A recorded run (:class:`reproduce.runtime.RecordedRun`): writes
  ``<out>/record.json`` (every candidate with its proxy AP, the best, wall time) and
  ``<out>/specs.json`` (the found table in the official tuple format, with metadata), and returns the
  override ``model.backbone_kwargs.specs`` (the table and its metadata, so the detection record is
  self-contained). With ``reuse: <path with {order}>`` a committed result whose search settings equal
  this step's is adopted instead of searching again (its original cost is kept in the record).
  Under DDP every rank runs the preparation steps; run a paper-scale search beforehand in one process
  (``--scale paper``, below) so that the ranks only adopt its result.
- ``python -m reproduce.steps.spinenet_search --order hourglass --budget-s 300
  --out reproduce/models/spinenet/found/hourglass.json`` (settings default to the cpu scale of
  ``configs/ablations/spinenet_scale_permutation.yaml``; ``--scale paper`` writes
  ``found/<order>_paper.json``, which the paper scale's ``reuse`` reads).
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
from collections import deque
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from lightning_modules.detection import make_map_metric, metric_targets
from lightning_modules.optim import build_optimizer, lr_lambda, param_groups
from reproduce.config import ROOT, deep_merge, load_ablation, resolve_run_config
from reproduce.data.coco import CocoDetection
from reproduce.data.datamodule import collate, synthetic_root, synthetic_spec
from reproduce.data.synth import GENERATOR_VERSION
from reproduce.data.transforms import build_transforms
from reproduce.models import create_detector
from reproduce.models.detectors import RETINANET_LOSS_KEYS
from reproduce.models.spinenet.architectures import ARCHITECTURES
from reproduce.models.spinenet.search_space import (FOUND_DIR, ORDERS, connections_of, mutate, order_table,
                                                    sample_connections, search_space_problems)
from reproduce.models.spinenet.specs import table_to_json
from reproduce.models.spinenet.transforms import rule_connections
from reproduce.records import read_record, write_record
from reproduce.runtime import RecordedRun, hardware

from .step import Step

ABLATION = "spinenet_scale_permutation"  # whose cpu-scale ``spinenet_search`` section the CLI uses

DEFAULT_PROXY = {
    "width_multiplier": 0.25,  # paper 5.3: feature dimensions x 0.25
    "resample_alpha_multiplier": 0.5,  # 0.5 x 0.5 = alpha 0.25 (paper 5.3)
    "head_filters": 64,  # paper 5.3: head dimension 64
    "bn_momentum": 0.1,  # hypothesis: short runs need a fast BN running average
    "norm": "bn",  # backbone norm (bn | gn): the proxy normalises like the rows it ranks
    "head_norm": "bn",  # RetinaNet head norm (bn | gn)
    "loss": None,  # RetinaNet loss and matching keys (RETINANET_LOSS_KEYS); None: the rows' own (model section)
    "image_size": 128,
    "batch_size": 4,
    "train_steps": 100,
    "holdout_images": 100,
    "lr": 1.0e-3,  # AdamW, linear warm-up then cosine (hypothesis; the cpu scale's search sets 2e-3, its rows' lr)
    "weight_decay": 1.0e-4,
    "warmup_steps": 10,
    "grad_clip": 10.0,
    "device": "auto",
    "num_workers": 0,
}
DEFAULT_SEARCH = {
    "time_budget_s": 900,  # 15 min per order on 2 cores
    "max_candidates": None,
    "seed": 0,
    "strategy": "evolution",  # evolution | random
    "population": 3,
    "sample": 2,
    "include_rule": True,
    "data": None,  # None: the run's data section
    "proxy": DEFAULT_PROXY,
}
SETTING_KEYS = set(DEFAULT_SEARCH) | {"order", "reuse"}


def canonical_data(data: dict) -> dict:
    """The part of a data config that decides the proxy's images (the synthetic root folder excluded)."""
    kind = data.get("kind", "synthetic")
    if kind == "synthetic":
        spec = {k: v for k, v in synthetic_spec(data).items() if k not in ("stream", "heldout_images")}
        return {"kind": kind, "generator_version": GENERATOR_VERSION, **spec}
    if kind == "coco":
        return {"kind": kind, "root": str(data["root"]), "train_split": data.get("train_split", "train2017")}
    raise ValueError(f"the connection search reads synthetic or coco data, not {kind!r}")


class ProxyTask:
    """Train a candidate briefly on the train split minus a held-out part; score AP on the held-out part."""

    def __init__(self, order: str, data: dict, proxy: dict):
        self.order, self.proxy = order, dict(proxy)
        if data.get("kind", "synthetic") == "synthetic":
            root, split = synthetic_root({**data, "stream": False}), "train"  # a fixed set: common random numbers
        else:
            root, split = Path(data["root"]), data.get("train_split", "train2017")
        tf = build_transforms(False, int(proxy["image_size"]))
        ds = CocoDetection(Path(root) / split, Path(root) / "annotations" / f"instances_{split}.json", tf)
        hold = int(proxy["holdout_images"])
        if not 0 < hold < len(ds):
            raise ValueError(f"holdout_images {hold} must be in 1..{len(ds) - 1} (train split has {len(ds)})")
        train_idx = [i for i in range(len(ds) - hold)
                     if any(not a.get("iscrowd", 0) for a in ds.data["by_image"][ds.ids[i]])]
        self.train_set, self.holdout_set = Subset(ds, train_idx), Subset(ds, range(len(ds) - hold, len(ds)))
        self.num_classes = ds.num_classes
        dev = proxy.get("device", "auto")
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available() else
                                   ("cpu" if dev == "auto" else dev))

    def _loader(self, ds, train: bool, seed: int):
        return DataLoader(ds, batch_size=int(self.proxy["batch_size"]), shuffle=train, collate_fn=collate,
                          num_workers=int(self.proxy.get("num_workers", 0)), drop_last=train,
                          generator=torch.Generator().manual_seed(seed))

    def build(self, table, seed: int):
        torch.manual_seed(seed)
        p = self.proxy
        return create_detector("retinanet_spinenet", ORDERS[self.order], num_classes=self.num_classes,
                               image_size=int(p["image_size"]),
                               backbone_kwargs={"specs": table_to_json(table), "norm": p.get("norm", "bn")},
                               width_multiplier=float(p["width_multiplier"]),
                               resample_alpha_multiplier=float(p["resample_alpha_multiplier"]),
                               head_filters=p.get("head_filters"), bn_momentum=p.get("bn_momentum"),
                               head_norm=p.get("head_norm"), **(p.get("loss") or {})).to(self.device)

    def score(self, table, seed: int) -> dict:
        """Proxy-train ``table`` and return its held-out COCO metrics, last loss and times."""
        p = self.proxy
        t0 = time.time()
        det = self.build(table, seed)
        steps = int(p["train_steps"])
        opt_cfg = {"name": "adamw", "lr": float(p["lr"]), "warmup_steps": int(p["warmup_steps"]),
                   "warmup_factor": 0.01, "schedule": "cosine", "min_lr": float(p["lr"]) * 0.01}
        opt = build_optimizer(param_groups(det, float(p["weight_decay"])), opt_cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(opt_cfg, steps, steps))
        det.train()
        step, loss = 0, float("nan")
        loader = self._loader(self.train_set, True, seed)
        while step < steps:
            for images, targets in loader:
                keep = [t["iscrowd"] == 0 for t in targets]
                tg = [{"boxes": t["boxes"][k].to(self.device), "labels": t["labels"][k].to(self.device)}
                      for t, k in zip(targets, keep)]
                losses = det([im.to(self.device) for im in images], tg)
                total = sum(losses.values())
                if not torch.isfinite(total):
                    raise FloatingPointError(f"non-finite proxy loss at step {step}")
                opt.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(det.parameters(), float(p["grad_clip"]))
                opt.step()
                sched.step()
                loss, step = total.item(), step + 1
                if step >= steps:
                    break
        t1 = time.time()
        det.eval()
        metric = make_map_metric()
        with torch.no_grad():
            for images, targets in self._loader(self.holdout_set, False, seed):
                preds = det([im.to(self.device) for im in images])
                metric.update([{k: v[k].cpu() for k in ("boxes", "scores", "labels")} for v in preds],
                              metric_targets(targets))
        res = metric.compute()
        return {"AP": float(res["map"]), "AP50": float(res["map_50"]), "loss": loss, "train_s": round(t1 - t0, 2),
                "eval_s": round(time.time() - t1, 2)}


def resolve_settings(step: dict | None = None, cfg: dict | None = None) -> dict:
    """``DEFAULT_SEARCH`` <- the run config's ``spinenet_search`` <- the step's own keys; ``data``
    defaults to the run's data section. Unknown keys raise."""
    cfg = cfg or {}
    over = {k: v for k, v in (step or {}).items() if k not in ("kind", "per_seed")}
    settings = deep_merge(DEFAULT_SEARCH, cfg.get("spinenet_search") or {}, over)
    unknown = sorted(set(settings) - SETTING_KEYS) + sorted(set(settings["proxy"]) - set(DEFAULT_PROXY))
    if unknown:
        raise ValueError(f"unknown spinenet_search settings {unknown}; valid: {sorted(SETTING_KEYS)}, "
                         f"proxy: {sorted(DEFAULT_PROXY)}")
    if settings.get("order") not in ORDERS:
        raise ValueError(f"spinenet_connection_search needs order: one of {', '.join(ORDERS)}")
    if settings["data"] is None:
        if "data" not in cfg:
            raise ValueError("no data for the proxy: set spinenet_search.data or the run's data section")
        settings["data"] = dict(cfg["data"])
    if settings["proxy"]["loss"] is None:  # the proxy trains with the loss of the rows it ranks
        model = cfg.get("model") or {}
        settings["proxy"]["loss"] = {k: model[k] for k in RETINANET_LOSS_KEYS if k in model}
    bad = sorted(set(settings["proxy"]["loss"]) - set(RETINANET_LOSS_KEYS))
    if bad:
        raise ValueError(f"unknown spinenet_search proxy loss keys {bad}; valid: {', '.join(RETINANET_LOSS_KEYS)}")
    return settings


def canonical_settings(settings: dict) -> dict:
    """The settings that decide a search's result (what a reused result must match)."""
    out = {k: copy.deepcopy(v) for k, v in settings.items() if k != "reuse"}
    out["data"] = canonical_data(settings["data"])
    return json.loads(json.dumps(out, sort_keys=True))


def search(settings: dict, log=print, task: ProxyTask | None = None) -> dict:
    """Run one connection search; returns the search record (candidates, best, wall time)."""
    s = settings
    order, seed = s["order"], int(s["seed"])
    budget, max_cand = s.get("time_budget_s"), s.get("max_candidates")
    if budget is None and max_cand is None:
        raise ValueError("set time_budget_s and/or max_candidates")
    if s["strategy"] not in ("evolution", "random"):
        raise ValueError(f"unknown strategy {s['strategy']!r}; valid: evolution, random")
    t0 = time.time()
    task = task or ProxyTask(order, s["data"], s["proxy"])
    rng = random.Random(seed)
    cands, seen, population = [], set(), deque()
    pop_size, sample = int(s["population"]), int(s["sample"])
    while True:
        i = len(cands)
        if max_cand is not None and i >= int(max_cand):
            break
        if budget is not None and cands:
            mean = statistics.fmean(c["train_s"] + c["eval_s"] for c in cands)
            if time.time() - t0 + mean > float(budget):
                break
        for _ in range(1000):
            if i == 0 and s["include_rule"]:
                table, origin = rule_connections(order_table(order)), "rule"
            elif s["strategy"] == "random" or i < pop_size:
                table, origin = sample_connections(order, rng), "random"
            else:
                members = rng.sample(list(population), min(sample, len(population)))
                parent = max(members, key=lambda c: (c["AP"], -c["index"]))
                table, origin = mutate(parent["table"], rng), f"mutation of {parent['index']}"
            key = tuple(map(tuple, connections_of(table)))
            if key not in seen:
                break
        else:
            log("search space exhausted for this seed; stopping")
            break
        seen.add(key)
        problems = search_space_problems(table, order)
        if problems:
            raise AssertionError(f"candidate outside the search space: {problems}")
        res = task.score(table, seed)
        cand = {"index": i, "origin": origin, "parents": connections_of(table), **res, "table": table}
        cands.append(cand)
        population.append(cand)
        if len(population) > pop_size:
            population.popleft()
        log(f"[{order}] candidate {i} ({origin}): AP {res['AP']:.4f} AP50 {res['AP50']:.4f} loss {res['loss']:.3f} "
            f"({res['train_s'] + res['eval_s']:.0f} s, {time.time() - t0:.0f} s elapsed)")
    best = max(cands, key=lambda c: (c["AP"], -c["index"]))
    hw = hardware()
    return {"order": order, "arch": ORDERS[order], "settings": canonical_settings(s),
            "candidates": [{k: v for k, v in c.items() if k != "table"} for c in cands],
            "best": {k: v for k, v in best.items() if k != "table"}, "best_table": table_to_json(best["table"]),
            "wall_time_s": round(time.time() - t0, 2), "torch_threads": torch.get_num_threads(),
            "hardware": {k: hw[k] for k in ("platform", "cpu_count", "threads", "torch", "cuda")},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def found_specs(result: dict) -> dict:
    """The ``specs.json`` / ``found/<order>.json`` content: the table plus metadata for ``load_specs``."""
    best, n = result["best"], len(result["candidates"])
    how = "random search" if result["settings"]["strategy"] == "random" else "regularized evolution"
    label = (f"searched ({how}, {n} candidates, best proxy AP {best['AP']:.4f}"
             f"{', the rule graph' if best['origin'] == 'rule' else ''})")
    return {"order": result["order"], "arch": result["arch"], "title": ARCHITECTURES[result["arch"]].title,
            "scaling": ARCHITECTURES[result["arch"]].scaling, "connections": label,
            "tag": "hypothesis order; connections searched by the suite's proxy (paper Table 8 protocol: RL, ~13k)",
            "specs": result["best_table"], "search": result["settings"],
            "result": {k: result[k] for k in ("candidates", "best", "wall_time_s", "torch_threads", "hardware",
                                               "finished")}}


def _same_blocks(spec_doc: dict, order: str) -> bool:
    """Is a stored result (``specs.json`` / ``found/<order>.json``) a table of ``order``'s current block order?
    A result searched for an earlier definition of the order is searched again, never adopted."""
    return not any("block order" in p for p in search_space_problems(spec_doc["specs"], order))


def connection_search_step(step: dict, *, cfg: dict, seed: int, out: Path, log=print) -> tuple[dict, dict]:
    """The recorded search step; see the module docstring. ``seed`` is the run's (the search has its own)."""
    settings = resolve_settings(step, cfg)
    canon = canonical_settings(settings)
    out = Path(out)
    rec_path, specs_path = out / "record.json", out / "specs.json"
    rec = read_record(rec_path)
    skipped = bool(rec and rec.get("status") == "completed" and rec.get("settings") == canon and specs_path.is_file()
                   and _same_blocks(json.loads(specs_path.read_text()), settings["order"]))
    if not skipped:
        reuse = settings.get("reuse")
        found_path = Path(reuse.format(order=settings["order"])) if reuse else None
        if found_path is not None and not found_path.is_absolute() and not found_path.is_file():
            found_path = ROOT / found_path
        found = json.loads(found_path.read_text()) if found_path is not None and found_path.is_file() else None
        # the attempt's whole time goes to total_time_s; wall_time_s is the search's own (or, reused, the original's)
        with RecordedRun(rec_path, time_key="total_time_s", log=log) as run:
            record = run.begin({"kind": "spinenet_connection_search", "order": settings["order"], "settings": canon})
            if found is not None and found.get("search") == canon and _same_blocks(found, settings["order"]):
                log(f"spinenet_connection_search[{settings['order']}]: reusing {found_path}")
                spec_doc = dict(found, reused_from=str(found_path))
                record.update(reused_from=str(found_path), **found["result"])
            else:
                if found is not None:
                    log(f"spinenet_connection_search[{settings['order']}]: {found_path} has other settings; searching")
                spec_doc = found_specs(search(settings, log=log))
                record.update(reused_from=None, **spec_doc["result"])
            write_record(specs_path, spec_doc)
            record["connections"] = spec_doc["connections"]
        rec = run.record
    spec_doc = json.loads(specs_path.read_text())
    spec_arg = {k: spec_doc[k] for k in ("specs", "connections", "tag", "order")} | {"specs_file": str(specs_path)}
    overrides = {"model": {"backbone": ORDERS[settings["order"]], "backbone_kwargs": {"specs": spec_arg}}}
    info = {"record": str(rec_path), "specs": str(specs_path), "order": settings["order"], "skipped": skipped,
            # the seed that identifies this search: the run's with per_seed (one search each), else the search's
            # own, shared by every run seed (tables check that those runs all read one search)
            "seed": seed if step.get("per_seed", False) else int(settings["seed"]),
            "reused_from": rec.get("reused_from"), "candidates": len(rec["candidates"]),
            "best_AP": rec["best"]["AP"], "wall_time_s": rec["wall_time_s"], "connections": rec["connections"]}
    return overrides, info


def cli_settings(order: str, ablation: str = ABLATION, scale: str = "cpu") -> dict:
    """The search settings of ``ablation`` at ``scale`` for ``order`` (what its step would use)."""
    abl = load_ablation(ablation)
    variant = next((v for v, spec in abl["variants"].items()
                    if any(st.get("order") == order for st in spec.get("prepare") or [])), None)
    cfg = resolve_run_config(abl, variant, scale) if variant else {}
    return resolve_settings({"order": order}, cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Search the connections of a fixed SpineNet block order "
                                             "(paper Table 8) by proxy training; writes the found spec table.")
    ap.add_argument("--order", choices=list(ORDERS), required=True)
    ap.add_argument("--budget-s", type=float, help="time budget (default: the ablation config's)")
    ap.add_argument("--max-candidates", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--ablation", default=ABLATION, help="read spinenet_search settings from this ablation")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--out", help="default: reproduce/models/spinenet/found/<order>.json (cpu scale), "
                                   "found/<order>_<scale>.json otherwise")
    args = ap.parse_args(argv)
    settings = cli_settings(args.order, args.ablation, args.scale)
    for key, val in (("time_budget_s", args.budget_s), ("max_candidates", args.max_candidates), ("seed", args.seed)):
        if val is not None:
            settings[key] = val
    result = search(settings)
    name = f"{args.order}.json" if args.scale == "cpu" else f"{args.order}_{args.scale}.json"
    out = Path(args.out or FOUND_DIR / name)
    write_record(out, found_specs(result))
    best = result["best"]
    print(f"wrote {out}: {len(result['candidates'])} candidates in {result['wall_time_s']:.0f} s, "
          f"best #{best['index']} ({best['origin']}) AP {best['AP']:.4f}")
    return 0


STEP = Step("spinenet_connection_search", connection_search_step,
            outputs=("model.backbone", "model.backbone_kwargs.specs"))

if __name__ == "__main__":
    raise SystemExit(main())
