"""Absorption from xraydb's Elam tables: attenuation length and transmission of a phase.

The composition and the density come from the structure (the density is overridable, e.g.
for a powder's packing). Re-exported by :mod:`xrdflow.crystal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._phases import PhaseLike, load_phase
from .options import ABSORPTION_KINDS, choice, nonnegative_array, positive, positive_array

__all__ = ["composition", "linear_attenuation", "attenuation_length", "transmission"]


def composition(phase: PhaseLike, density: float | None = None) -> tuple[dict[str, float], float]:
    """Elements (atoms in the unit cell) and density (g/cm^3) of a phase, for absorption.

    ``density`` overrides the crystal density of the structure (e.g. a powder's packing).

    Examples
    --------
    >>> composition("CeO2", 7.0)
    ({'Ce': 4.0, 'O': 8.0}, 7.0)
    """
    structure = load_phase(phase)
    comp = structure.composition
    elements = {el.symbol: float(amt) for el, amt in comp.element_composition.items()}
    rho = float(structure.density) if density is None else positive(density, "density")
    return elements, rho


def linear_attenuation(elements: Mapping[str, float], density: float, energy_kev: np.ndarray,
                       kind: str = "total") -> np.ndarray:
    """Linear attenuation coefficient mu in 1/mm (same formula as ``xraydb.material_mu``).

    ``elements`` and ``density`` as :func:`composition` gives them; no argument checks (the
    callers validate), so it can run per dask block.

    Examples
    --------
    >>> round(float(1 / linear_attenuation(*composition("Si"), 8.0478)), 4)
    0.0675
    """
    import xraydb

    e_ev = np.asarray(energy_kev, dtype=float) * 1000.0
    flat = np.atleast_1d(e_ev).ravel()
    mass_tot = 0.0
    mu = np.zeros(flat.shape)
    for el, amount in elements.items():
        mass = amount * xraydb.atomic_mass(el)
        mu = mu + mass * np.asarray(xraydb.mu_elam(el, flat, kind=kind), dtype=float)
        mass_tot += mass
    mu_cm = density * mu / mass_tot  # 1/cm
    return (mu_cm / 10.0).reshape(e_ev.shape)


def attenuation_length(
    phase: PhaseLike, energy_kev: Any, *, density: float | None = None, kind: str = "total"
) -> np.ndarray | float:
    """X-ray attenuation length (1/e) in mm of a phase, from xraydb's Elam tables.

    Parameters
    ----------
    phase
        Built-in name, CIF path or pymatgen Structure: gives composition and density.
    energy_kev
        Photon energy (keV), scalar or array.
    density
        g/cm^3; default the crystal density of the structure.
    kind
        ``"total"`` (default: photo-absorption + coherent + incoherent scattering) or
        ``"photo"``, as in :func:`xraydb.material_mu`.

    Examples
    --------
    >>> round(float(attenuation_length("Si", 8.0478)), 4)  # 67.5 um at Cu K-alpha
    0.0675
    """
    energy = positive_array(energy_kev, "energy_kev")
    choice(kind, "kind", ABSORPTION_KINDS)
    elements, rho = composition(phase, density)
    out = 1.0 / linear_attenuation(elements, rho, energy, kind)
    return out if out.ndim else float(out)


def transmission(
    phase: PhaseLike,
    energy_kev: Any,
    thickness_mm: Any,
    *,
    density: float | None = None,
    kind: str = "total",
) -> np.ndarray | float:
    """Transmitted fraction ``exp(-mu t)`` through ``thickness_mm`` of a phase.

    ``energy_kev`` and ``thickness_mm`` broadcast against each other (numpy rules).

    Examples
    --------
    >>> t = transmission("Mg", [30.0, 87.1], 5.0)
    >>> bool(t[0] < t[1] < 1)
    True
    """
    energy = positive_array(energy_kev, "energy_kev")
    thick = nonnegative_array(thickness_mm, "thickness_mm")
    choice(kind, "kind", ABSORPTION_KINDS)
    elements, rho = composition(phase, density)
    out = np.exp(-linear_attenuation(elements, rho, energy, kind) * thick)
    return out if out.ndim else float(out)
