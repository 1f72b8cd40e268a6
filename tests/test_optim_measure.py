import pytest
import torch
from torch import nn

from lightning_modules.optim import build_optimizer, lr_lambda, param_groups
from reproduce.measure import count_macs, count_params, measure_latency


def test_step_schedule_with_warmup():
    f = lr_lambda({"lr": 0.1, "warmup_steps": 10, "warmup_factor": 0.1, "schedule": "step",
                   "milestones": [0.5, 0.9], "gamma": 0.1}, total_steps=100, steps_per_epoch=10)
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55) and f(10) == 1.0
    assert f(49) == 1.0 and f(50) == pytest.approx(0.1) and f(95) == pytest.approx(0.01)


@pytest.mark.parametrize("ablation,variant,epochs", [("spinenet_vs_resnet_fpn", "r50_fpn", 5),
                                                    ("spinenet_scale_permutation", "hourglass", 5),
                                                    ("rsanet_rsam", "rsam_on", 1)])
def test_warmup_in_epochs_over_a_scale_that_counts_steps(ablation, variant, epochs):
    """At paper scale an ablation's warm-up in epochs is not overridden by paper.yaml's 1000 steps:
    of two keys that set one thing, the later config layer wins (reproduce.config.ALTERNATIVES)."""
    from reproduce.config import load_ablation, resolve_run_config

    opt = resolve_run_config(load_ablation(ablation), variant, "paper")["optimizer"]
    assert "warmup_steps" not in opt or opt["warmup_steps"] is None
    f = lr_lambda(opt, total_steps=100_000, steps_per_epoch=400)
    assert f(epochs * 400 - 1) < 1.0 and f(epochs * 400) == 1.0
    # a --set of the other unit wins in turn
    opt = resolve_run_config(load_ablation(ablation), variant, "paper", ["optimizer.warmup_steps=7"])["optimizer"]
    assert opt["warmup_steps"] == 7 and "warmup_epochs" not in opt


def test_one_layer_setting_both_warmup_units_is_an_error():
    from reproduce.config import resolve_run_config

    abl = {"name": "x", "variants": {"a": {"optimizer": {"warmup_steps": 5, "warmup_epochs": 1}}}}
    with pytest.raises(ValueError, match="warmup_steps and optimizer.warmup_epochs"):
        resolve_run_config(abl, "a", "cpu")


def test_cosine_schedule_reaches_min_lr():
    f = lr_lambda({"lr": 1e-3, "warmup_epochs": 1, "schedule": "cosine", "min_lr": 1e-6}, 100, 10)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(1e-3) and f(55) == pytest.approx(0.5005, abs=1e-3)


def test_bad_schedule_is_rejected():
    with pytest.raises(ValueError, match="valid: step, cosine, constant"):
        lr_lambda({"lr": 1, "schedule": "poly"}, 10, 1)


def test_norm_and_bias_not_decayed():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    decay, no_decay = param_groups(m, 1e-4)
    assert len(decay["params"]) == 2 and len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_update_is_a_config_choice_off_by_default(name):
    """``optimizer.fused`` selects torch's fused update; without it the default update runs, the one every
    committed record was made with (the two round differently, so the choice is part of the config)."""
    from reproduce.config import load_ablation, resolve_run_config

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert not build_optimizer(param_groups(m, 1e-4), {"name": name, "lr": 0.1}).defaults.get("fused")
    opt = build_optimizer(param_groups(m, 1e-4), {"name": name, "lr": 0.1, "fused": True})
    assert opt.defaults["fused"] is True
    m(torch.randn(2, 3, 8, 8)).pow(2).sum().backward()
    before = [p.detach().clone() for p in m.parameters()]
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    cfg = resolve_run_config(load_ablation("baseline_detectors"), "retinanet", "cpu", ["optimizer.fused=true"])
    assert cfg["optimizer"]["fused"] is True
    assert "fused" not in resolve_run_config(load_ablation("baseline_detectors"), "retinanet", "cpu")["optimizer"]


def test_macs_and_params_of_a_conv():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    assert count_params(conv) == 16 * 8 * 9
    assert count_macs(conv, 10, channels=8) == 16 * 8 * 9 * 10 * 10  # multiply-adds, not 2x
    assert conv.weight.device.type == "cpu"  # the caller's module is untouched


def test_latency_reports_median():
    r = measure_latency(lambda: torch.ones(10).sum(), warmup=1, repeats=5)
    assert r["min_ms"] <= r["median_ms"] <= r["max_ms"] and r["repeats"] == 5


def test_speed_on_images_times_each_image_once_per_call():
    """A detector's latency depends on the boxes it keeps, so speed is timed on real images: each of ``repeats``
    calls gets the next image (after the warm-up), every image once; without images, one noise tensor."""
    from reproduce.measure import inference_speed

    seen = []
    images = [torch.full((3, 4, 4), float(i)) for i in range(5)]
    res = inference_speed(nn.Identity(), 4, warmup=3, repeats=5, images=images,
                          forward=lambda m, x: seen.append([int(t[0, 0, 0]) for t in x]))
    assert seen == [[0], [1], [2], [3], [4], [0], [1], [2]] and res["input"] == "5 val images"
    seen.clear()
    res = inference_speed(nn.Identity(), 4, batch=2, warmup=0, repeats=2, images=images,
                          forward=lambda m, x: seen.append([int(t[0, 0, 0]) for t in x]))
    assert seen == [[0, 1], [2, 3]] and res["images_per_s"] == 2000.0 / res["median_ms"]
    res = inference_speed(nn.Identity(), (4, 6), warmup=0, repeats=1, forward=lambda m, x: seen.append(x.shape))
    assert seen[-1] == (1, 3, 4, 6) and res["input"] == "random noise"
