"""Where the project's own folders are: ``configs/``, ``data/``, ``reports/``, ``runs/`` resolve against
the project folder, never against the current working directory."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_path(path: str | Path) -> Path:
    """A relative path of the suite (``data/synthetic``, ``reports``) against the project folder, not the
    cwd; absolute paths and ``~`` as given."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path
