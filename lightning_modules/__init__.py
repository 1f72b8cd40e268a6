"""LightningModules: detection (every detector variant), classification pretraining, NATS search."""
from .detection import DetectionModule, DivergedError  # noqa: F401
