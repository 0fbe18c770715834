"""matplotlib for the few places that draw (the run report, the mixture chart)."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """pyplot on the file-only Agg backend, imported on first use: drawing is rare, and
    matplotlib's import is slow and must never pick an interactive backend on a cluster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
