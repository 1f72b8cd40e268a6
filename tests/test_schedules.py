"""Schedules as multipliers of the scale's schedule (issue 16 item 5): ``trainer.epochs_multiplier``."""
import pytest

from reproduce.config import load_ablation, resolve_run_config

SMNAS = "smnas_gnws_vs_pretraining"


@pytest.mark.parametrize("scale,base", [("smoke", 1), ("cpu", 2), ("paper", 12)])
def test_2x_row_is_twice_the_scales_schedule_at_every_scale(scale, base):
    abl = load_ablation(SMNAS)
    epochs = {v: resolve_run_config(abl, v, scale)["trainer"]["max_epochs"] for v in abl["variants"]}
    assert epochs.pop("gnws_scratch_long") == 2 * base
    assert set(epochs.values()) == {base}
    # the multiplier applies to a --set max_epochs too, and is consumed (never passed to Lightning)
    t = resolve_run_config(abl, "gnws_scratch_long", scale, ["trainer.max_epochs=7"])["trainer"]
    assert t["max_epochs"] == 14 and "epochs_multiplier" not in t


def test_multiplier_must_give_whole_epochs():
    abl = {"name": "x", "variants": {"a": {"trainer": {"max_epochs": 3, "epochs_multiplier": 1.5}},
                                     "b": {"trainer": {"max_epochs": 4, "epochs_multiplier": 1.5}}}}
    with pytest.raises(ValueError, match="not a positive whole number of epochs"):
        resolve_run_config(abl, "a", "cpu")
    assert resolve_run_config(abl, "b", "cpu")["trainer"]["max_epochs"] == 6


def test_dry_run_prints_the_doubled_schedule():
    from reproduce.ablation import expand
    from reproduce.dry_run import compact_config

    specs = {s.variant: s for s in expand(SMNAS, "paper", seeds=1, variants=["gnws_scratch", "gnws_scratch_long"])}
    lines = {v: next(ln for ln in compact_config(s.config) if ln.startswith("trainer:")) for v, s in specs.items()}
    assert "max_epochs: 12" in lines["gnws_scratch"] and "max_epochs: 24" in lines["gnws_scratch_long"]
