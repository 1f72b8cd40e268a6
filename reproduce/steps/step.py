"""What a preparation step is: a kind, the function that runs it, the config keys its result sets."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Step:
    """One kind of preparation step.

    ``kind``: its name in a run config's ``prepare:`` list and its folder under ``runs/_prepare/``.
    ``run(step, *, cfg, seed, out) -> (overrides, info)``: finds or runs the step (a recorded run in
    ``out``) for the detection run whose config is ``cfg``; ``overrides`` are merged into that config,
    ``info`` (its cost: wall time, epochs, the step's record) goes into the detection record.
    ``outputs``: the config keys ``overrides`` may set (dotted), for the reader of a config.
    """

    kind: str
    run: Callable[..., tuple[dict, dict]]
    outputs: tuple[str, ...]

    def __call__(self, step: dict, *, cfg: dict, seed: int, out: Path) -> tuple[dict, dict]:
        return self.run(step, cfg=cfg, seed=seed, out=out)
