"""A run's recorded metrics are its last validation's, so the validation interval must reach the last epoch."""
import pytest

from reproduce.config import merge_layers


def test_val_interval_that_skips_the_last_epoch_is_refused():
    with pytest.raises(ValueError, match="check_val_every_n_epoch=2 does not divide trainer.max_epochs=5"):
        merge_layers([{"trainer": {"max_epochs": 5, "check_val_every_n_epoch": 2}}])


def test_val_interval_follows_the_epochs_multiplier():
    cfg = merge_layers([{"trainer": {"max_epochs": 3, "check_val_every_n_epoch": 3}},
                        {"trainer": {"epochs_multiplier": 2}}])
    assert cfg["trainer"] == {"max_epochs": 6, "check_val_every_n_epoch": 3}
    with pytest.raises(ValueError, match="does not divide"):
        merge_layers([{"trainer": {"max_epochs": 3, "check_val_every_n_epoch": 3}}], sets=["trainer.max_epochs=4"])
