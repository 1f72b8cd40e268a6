"""Benchmark helpers that need no timing: the GPU-path record table, the in-memory batches of
train_speed, the machine line of reports/benchmarks.md, the path counts of init_gradients, the recomputed
BatchNorm statistics of bn_stats_probe, the optimizer implementations of optimizer_step, the parts of a
sampling profile of run_profile, the rows of record_pair."""
import gzip
from types import SimpleNamespace

import pytest
import torch

from benchmarks import (_results, bn_stats_probe, gpu_path_check, init_gradients, optimizer_step, record_pair, run_profile,
                        train_speed)


def _record(**kw):
    rec = {"ablation": "baseline_detectors", "variant": "retinanet", "seed": 0, "scale": "smoke", "status": "completed",
           "config": {"trainer": {"accelerator": "gpu", "strategy": "ddp", "precision": "bf16-mixed",
                                  "channels_last": True, "max_epochs": 1},
                      "data": {"num_workers": 4}},
           "train_steps": 4, "metrics": {"AP": 0.25}, "attempt": 1, "earlier_attempts_s": None, "wall_time_s": 14.2,
           "hardware": {"gpu": "NVIDIA H200", "torch": "2.11"}, "world_size": 1}
    rec.update(kw)
    return rec


def test_gpu_path_row_names_the_switches_and_a_resume():
    row = gpu_path_check.row(_record())
    assert row["trainer switches"] == "accelerator=gpu, strategy=ddp, precision=bf16-mixed, channels_last=True"
    assert (row["status"], row["COCO AP"], row["attempts"], row["wall (s)"]) == ("completed", "0.2500", 1, "14.2")
    assert row["FPS measured on"] == "–"  # the end-of-run speed's device: the trainer's, not the CPU after teardown
    assert gpu_path_check.row(_record(speed={"device": "cuda:0", "fps": 30.0}))["FPS measured on"] == "cuda:0"
    resumed = gpu_path_check.row(_record(attempt=2, earlier_attempts_s=63.8, wall_time_s=54.9))
    assert resumed["attempts"] == "2 (resumed from last.ckpt)" and resumed["wall (s)"] == "54.9 + 63.8 earlier"


def test_in_memory_batches_replay_the_first_batches_unchanged():
    held = [(torch.full((1,), float(i)), [{"boxes": torch.zeros(0, 4)}]) for i in range(5)]
    dm = SimpleNamespace(train_dataloader=lambda: iter(held))
    loader = train_speed.batches(dm, SimpleNamespace(in_memory=3))
    out = [b for _ in range(2) for b in loader]  # two epochs
    assert len(loader) == 3 and [b[0].item() for b in out] == [0, 1, 2, 0, 1, 2]
    assert out[0][1] is held[0][1]  # handed out as held, not re-collated
    assert train_speed.batches(SimpleNamespace(train_dataloader=lambda: held), SimpleNamespace(in_memory=0)) is held


def test_machine_line_without_load_average():
    env = {"device": "NVIDIA H200", "torch": "2.11", "torchvision": "0.26", "python": "3.12", "threads": 16,
           "cpu_count": 16, "loadavg": [], "time": "t"}
    assert _results._env_line(env).endswith("16 cores; at t")
    assert "load average (1, 5, 15 min) 1.0, 2.0, 3.0 at t" in _results._env_line({**env, "loadavg": [1.0, 2.0, 3.0]})


def test_hops_counts_shortest_and_longest_paths_between_features():
    chain = {2: (1,), 3: (2,), 4: (3,), 5: (4,)}
    assert init_gradients.hops(chain, 2, 5) == (3, 3)
    diamond = {2: (0, 1), 3: (2,), 4: (2, 3), 5: (4, 2)}  # 2->5 directly, 2->4->5, 2->3->4->5
    assert init_gradients.hops(diamond, 2, 5) == (1, 3)
    assert init_gradients.hops(diamond, 3, 2) == (0, 0)  # unreachable


def test_precise_bn_statistics_are_the_plain_mean_over_the_batches():
    """Not the exponential average of the last batches: every batch counts alike; weights untouched."""
    bn = torch.nn.BatchNorm2d(1)
    bn.running_mean.fill_(5.0)
    weight = bn.weight.detach().clone()
    det = SimpleNamespace(backbone=bn, eval=lambda: bn.eval(),
                          transform=lambda imgs: (SimpleNamespace(tensors=torch.stack(imgs)), None))
    batches = [(torch.full((2, 1, 2, 2), float(v)), None) for v in (1.0, 3.0, 8.0)]
    assert bn_stats_probe.precise_bn(det, batches, 2) == 1  # the first 2 batches: means 1 and 3
    assert bn.running_mean.item() == 2.0 and not bn.training and torch.equal(bn.weight, weight)


def test_optimizer_implementations_start_alike_and_leave_the_model_as_found():
    """Each implementation's updates start from the same parameters and see the same gradients, so ``foreach``
    (the same arithmetic batched) ends bit for bit on the default's parameters; ``fused`` only close to them."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.Conv2d(8, 4, 1))
    start = [p.detach().clone() for p in model.parameters()]
    cfg = {"name": "adamw", "lr": 2e-3, "weight_decay": 0.05}
    after = {impl: optimizer_step.time_updates(model, cfg, impl, steps=3)[1] for impl in optimizer_step.IMPLEMENTATIONS}
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))  # restored after each
    assert not any(torch.equal(a, b) for a, b in zip(start, after["default"]))  # the updates did move them
    assert all(torch.equal(a, b) for a, b in zip(after["default"], after["foreach"]))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(after["default"], after["fused"]))


def test_profile_samples_go_to_the_part_of_the_step_they_were_taken_in(tmp_path):
    """The forward and backward passes run inside the optimizer's closure: their samples, whose stacks also hold
    ``Adam.step``, count as forward / backward, only the update's own frames as the update."""
    step = "main (reproduce/cli.py:1);Adam.step (torch/optim/adam.py:2);Closure.closure (x.py:3)"
    lines = [f"{step};Tensor.backward (torch/_tensor.py:4);_engine_run_backward (torch/autograd/graph.py:5) 7",
             f"{step};DetectionModule.training_step (lightning_modules/detection.py:6);conv (c.py:7) 5",
             "main (reproduce/cli.py:1);Adam.step (torch/optim/adam.py:2);_single_tensor_adam (torch/optim/adam.py:8) 3",
             "main (reproduce/cli.py:1);_DataFetcher.__next__ (l.py:9);_next_data (d.py:10) 2",
             "main (reproduce/cli.py:1);Trainer._run (t.py:11) 1"]
    path = tmp_path / "prof.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    parts = run_profile.split(run_profile.read_raw(path))
    assert parts == {"backward": 7, "forward and loss": 5, "optimizer update": 3, "data loading": 2,
                     run_profile.OTHER: 1}
    bad = tmp_path / "bad.txt"
    bad.write_text(lines[0] + "\nnot a profile line\n")
    with pytest.raises(ValueError, match="bad.txt, line 2: not py-spy raw format"):
        run_profile.read_raw(bad)


def test_record_pair_rows_compare_whole_runs_from_their_records(tmp_path):
    import json

    def rec(path, cpu, ap, sets):
        path.write_text(json.dumps(_record(scale="cpu", sets=sets, cpu_time_s=cpu, metrics={"AP": ap},
                                           heldout_metrics={"AP": ap - 0.01}, hardware={"threads": 1},
                                           curve=[{"epoch": 1, "AP": ap / 2}, {"epoch": 2, "AP": ap}])))
        return path

    a, b = rec(tmp_path / "a.json", 1920.0, 0.585, []), rec(tmp_path / "b.json", 1632.0, 0.544, ["optimizer.fused=true"])
    first = record_pair.row(a, None)
    other = record_pair.row(b, json.loads(a.read_text()))
    assert (first["--set"], first["AP"], first["AP held-out"], first["CPU min"], first["CPU vs first"]) == (
        "(none)", "58.5", "57.5", "32.0", "1.00")
    assert (other["--set"], other["AP per evaluation"], other["CPU min"], other["CPU vs first"]) == (
        "optimizer.fused=true", "27.2 / 54.4", "27.2", "0.85")
    (tmp_path / "c.json").write_text(json.dumps(_record(status="failed")))
    with pytest.raises(SystemExit, match="not a completed run record"):
        record_pair.row(tmp_path / "c.json", None)
