"""Error metrics against reference labels, in eV and eV/Å (energies per atom)."""

from __future__ import annotations

import numpy as np


def error_metrics(
    energy: np.ndarray, energy_ref: np.ndarray, natoms: np.ndarray, forces: np.ndarray, forces_ref: np.ndarray
) -> dict[str, float]:
    de = (np.asarray(energy, np.float64) - np.asarray(energy_ref, np.float64)) / np.asarray(natoms, np.float64)
    df = np.asarray(forces, np.float64) - np.asarray(forces_ref, np.float64)
    return {
        "energy_mae_per_atom": float(np.abs(de).mean()),
        "energy_rmse_per_atom": float(np.sqrt((de**2).mean())),
        "force_mae": float(np.abs(df).mean()),
        "force_rmse": float(np.sqrt((df**2).mean())),
        "force_max_error": float(np.abs(df).max()) if df.size else 0.0,
    }
