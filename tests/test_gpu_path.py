"""GPU-path switches exercised on the CPU: channels_last (weights and the backbone's input) and
torch.compile of the backbone and head in place (the ``eager`` backend: Dynamo traces, no code
generation, so the test stays quick); checkpoints keep the plain parameter names; loader switches."""
import torch

from lightning_modules.detection import DetectionModule
from reproduce.data.datamodule import DetectionDataModule
from reproduce.runtime import MODULE_SWITCHES, build_trainer
from reproduce.train_speed import random_batch

MODEL = {"detector": "retinanet", "backbone": "resnet18_fpn", "backbone_kwargs": {"out_channels": 32}, "image_size": 64}
OPT = {"name": "sgd", "lr": 0.01}


def _train_step(module):
    images, targets = random_batch(2, 64, 3)
    loss = sum(module.detector(images, targets).values())
    loss.backward()
    return loss


def test_channels_last_weights_and_input():
    m = DetectionModule(MODEL, OPT, num_classes=3, channels_last=True)
    conv = m.detector.backbone.body.conv1 if hasattr(m.detector.backbone, "body") else next(
        x for x in m.detector.backbone.modules() if isinstance(x, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    m.detector.backbone.register_forward_pre_hook(lambda mod, args: seen.append(
        args[0].is_contiguous(memory_format=torch.channels_last)))
    assert torch.isfinite(_train_step(m))
    assert seen == [True]


def test_channels_last_gives_the_same_losses():
    """channels_last is result-neutral (reproduce.records.RESULT_NEUTRAL_KEYS): the same weights give the same
    losses and gradients up to float rounding (other conv kernels sum in another order: the gradient differs
    by ~1e-4 of its norm, as a record made on other hardware does), on a BatchNorm trunk and on the GroupNorm
    SpineNet of the cpu scale alike."""
    spinenet = {"detector": "retinanet_spinenet", "backbone": "spinenet49", "width_multiplier": 0.25,
                "resample_alpha_multiplier": 0.5, "backbone_kwargs": {"norm": "gn"}, "head_norm": "gn",
                "image_size": 64}
    for model in (MODEL, spinenet):
        torch.manual_seed(0)
        plain = DetectionModule(model, OPT, num_classes=3)
        layout = DetectionModule(model, OPT, num_classes=3, channels_last=True)
        layout.load_state_dict(plain.state_dict())
        a, b = _train_step(plain), _train_step(layout)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        ga = torch.cat([p.grad.flatten() for p in plain.parameters() if p.grad is not None])
        gb = torch.cat([p.grad.flatten() for p in layout.parameters() if p.grad is not None])
        assert ga.abs().sum() > 0 and ((ga - gb).norm() / ga.norm()).item() < 1e-3  # measured ~1e-4: rounding


def test_compile_switch_keeps_checkpoint_names():
    plain = DetectionModule(MODEL, OPT, num_classes=3)
    m = DetectionModule(MODEL, OPT, num_classes=3, compile={"backend": "eager"})
    m.configure_model()
    assert m.compiled == ["backbone", "head"]
    assert list(m.state_dict()) == list(plain.state_dict())  # nn.Module.compile: no _orig_mod. prefix
    assert torch.isfinite(_train_step(m))


def test_switches_are_not_trainer_arguments(tmp_path):
    cfg = {"trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "benchmark": True,
                       "channels_last": True, "compile": True, "float32_matmul_precision": "high"}}
    trainer = build_trainer(cfg, tmp_path, [], [])
    assert set(MODULE_SWITCHES) >= {"channels_last", "compile"} and trainer.max_epochs == 1


def test_loader_switches():
    dm = DetectionDataModule({"batch_size": 4, "num_workers": 2, "pin_memory": True, "persistent_workers": False,
                              "prefetch_factor": 3, "image_size": 64})
    loader = dm._loader(list(range(8)), True)
    assert loader.pin_memory and not loader.persistent_workers and loader.prefetch_factor == 3
    assert loader.batch_size == 4
