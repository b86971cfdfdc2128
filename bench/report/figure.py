"""What every report figure shares: the Agg backend, writing a figure, a colour per method and a marker per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

MARKERS = "osD^vP*Xph<>"


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> Path:
    """Lay out, write and close ``fig``; returns ``path``."""
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class Style:
    """A colour per method and a marker per model, the same in every figure of a report."""

    def __init__(self, methods: list[str], models: list[str]) -> None:
        names = sorted(set(methods))
        palette = pyplot().get_cmap("tab10" if len(names) <= 10 else "tab20")
        self.colours = {m: palette(i % palette.N) for i, m in enumerate(names)}
        self.markers = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(sorted(set(models)))}

    def of(self, method: str, model: str) -> dict[str, Any]:
        """Matplotlib keywords for a series of ``method`` on ``model``."""
        return {"color": self.colours[method], "marker": self.markers[model]}


def spread(values: pd.Series | None) -> Any:
    """Error bar sizes, or None when no point has a spread (one seed)."""
    return None if values is None or values.isna().all() else values.fillna(0)
