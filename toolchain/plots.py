"""Figures people would rather look at than numbers: parity plots (PNG, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlffc.io import atomic_path


def pyplot():
    """matplotlib.pyplot on the headless Agg backend: the one plotting setup (figures are files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parity_figure(energy: np.ndarray, forces: np.ndarray, frames, title: str):
    """Energy-per-atom and force-component parity of predictions against the teacher's labels."""
    plt = pyplot()

    reference = frames.energy / frames.natoms
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, x, y, label in (
        (axes[0], reference - reference.mean(), energy / frames.natoms - reference.mean(), "energy per atom - mean (eV)"),
        (axes[1], frames.forces.ravel(), forces.ravel(), "force component (eV/Å)"),
    ):
        ax.scatter(x, y, s=2, alpha=0.4)
        lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xlabel=f"teacher {label}", ylabel=f"student {label}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> None:
    """Write a figure as PNG atomically and release it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
