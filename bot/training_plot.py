"""A PNG of a training run's curves: training loss per step and validation bits/char per epoch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def plot_curves(losses: Sequence[tuple[int, float]], validations: Sequence[tuple[int, float]], path: Path,
                title: str = "Retraining") -> Path:
    """Write the plot to `path` (under a temporary name, then renamed) and return it."""
    import matplotlib

    matplotlib.use("Agg")  # no display: draw to a file only
    from matplotlib import pyplot

    figure, loss_axis = pyplot.subplots(figsize=(7, 4), dpi=100)
    if losses:
        steps, values = zip(*losses, strict=True)
        loss_axis.plot(steps, values, color="tab:blue", linewidth=1, label="training loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss (nats/token)", color="tab:blue")
    valid_axis = loss_axis.twinx()
    if validations:
        steps, values = zip(*validations, strict=True)
        valid_axis.plot(steps, values, color="tab:orange", marker="o", label="validation")
    valid_axis.set_ylabel("validation bits/char", color="tab:orange")
    loss_axis.set_title(title)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="png")
    pyplot.close(figure)
    os.replace(temporary, path)
    return path
