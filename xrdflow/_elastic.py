"""Diffraction elastic constants (DECs) of cubic and hexagonal polycrystals.

For a reflection hkl of a randomly textured, single-phase polycrystal the lattice strain
along the scattering vector n under a macroscopic stress sigma is::

    eps(hkl, n) = S1(hkl) tr(sigma) + 1/2 S2(hkl) n.sigma.n

Grain-interaction models (all computed the same way, numerically, with 4th-order tensors in
Mandel notation, so any crystal symmetry with given Cij works):

* Reuss: every grain carries the macroscopic stress; grain strain = S_grain : sigma.
* Voigt: every grain has the macroscopic strain; DECs independent of hkl (isotropic).
* Kroner (Eshelby-Kroner): every grain is a spherical Eshelby inclusion in the self-consistent
  isotropic effective medium C* (Kroner 1958); grain strain = A_grain : C*^-1 : sigma with
  A = [I + E : C*^-1 : (C_grain - C*)]^-1, E the Eshelby tensor of a sphere, C* solved by
  fixed-point iteration of <(C_grain - C*) : A> = 0 over all orientations.

The grains that diffract in direction n have the plane normal hkl along n and any rotation
about it: S1 + 1/2 S2 is the strain along n per unit stress along n; S1 the strain along n per
unit uniaxial stress normal to n, averaged over the rotation about n (72 angles: exact for the
2- and 4-fold Fourier terms that occur).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import xarray as xr

from . import options as O
from . import units as U

__all__ = ["ELASTIC_CONSTANTS", "diffraction_elastic_constants", "elastic_for_peaks", "stiffness"]

#: single-crystal stiffnesses (GPa) at room temperature; hexagonal ones with c/a
ELASTIC_CONSTANTS: dict[str, dict[str, float]] = {
    # cubic: Simmons & Wang (1971), "Single crystal elastic constants and calculated aggregate
    # properties", as tabulated in Hauk (1997)
    "Fe": dict(c11=231.4, c12=134.7, c44=116.4),
    "Ni": dict(c11=246.5, c12=147.3, c44=124.7),
    "Cu": dict(c11=168.4, c12=121.4, c44=75.4),
    "Al": dict(c11=107.3, c12=60.9, c44=28.3),
    # hexagonal: Ti, Fisher & Renken, Phys. Rev. 135, A482 (1964); Mg, Slutsky & Garland,
    # Phys. Rev. 107, 972 (1957)
    "Ti": dict(c11=162.4, c12=92.0, c13=69.0, c33=180.7, c44=46.7, c_over_a=1.587),
    "Mg": dict(c11=59.40, c12=25.61, c13=21.44, c33=61.60, c44=16.40, c_over_a=1.623),
}

_W = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])
_J = np.outer([1.0, 1, 1, 0, 0, 0], [1.0, 1, 1, 0, 0, 0]) / 3.0
_K = np.eye(6) - _J


def _constants(elastic: Any) -> dict[str, float]:
    if isinstance(elastic, str):
        if elastic not in ELASTIC_CONSTANTS:
            raise ValueError(f"elastic: unknown material {elastic!r} (known: {sorted(ELASTIC_CONSTANTS)}; "
                             "or give a mapping of Cij in GPa)")
        return dict(ELASTIC_CONSTANTS[elastic])
    if not isinstance(elastic, Mapping):
        raise ValueError(f"elastic: expected a material name or a mapping of Cij (GPa), got {elastic!r}")
    out = {str(k).lower(): O.number(v, f"elastic[{k!r}]") for k, v in elastic.items()}
    unknown = set(out) - {"c11", "c12", "c13", "c33", "c44", "c66", "c_over_a"}
    if unknown:
        raise ValueError(f"elastic: unknown keys {sorted(unknown)}")
    return out


def stiffness(elastic: Any) -> tuple[np.ndarray, str, float | None]:
    """(6x6 stiffness in Voigt notation (GPa), symmetry, c/a or None) of ``elastic``.

    Cubic from c11, c12, c44; hexagonal (x3 along c) from c11, c12, c13, c33, c44 (c66 =
    (c11 - c12) / 2) and c_over_a.

    >>> C, sym, _ = stiffness("Fe")
    >>> sym, float(C[0, 1]), float(C[3, 3])
    ('cubic', 134.7, 116.4)
    """
    c = _constants(elastic)
    C = np.zeros((6, 6))
    if "c33" in c or "c13" in c:
        for key in ("c11", "c12", "c13", "c33", "c44"):
            if key not in c:
                raise ValueError(f"elastic: hexagonal constants need {key!r}")
        C[0, 0] = C[1, 1] = c["c11"]
        C[2, 2] = c["c33"]
        C[0, 1] = C[1, 0] = c["c12"]
        C[0, 2] = C[2, 0] = C[1, 2] = C[2, 1] = c["c13"]
        C[3, 3] = C[4, 4] = c["c44"]
        C[5, 5] = 0.5 * (c["c11"] - c["c12"])
        sym, ca = "hexagonal", c.get("c_over_a")
    else:
        for key in ("c11", "c12", "c44"):
            if key not in c:
                raise ValueError(f"elastic: cubic constants need {key!r}")
        C[:3, :3] = c["c12"]
        np.fill_diagonal(C[:3, :3], c["c11"])
        C[3, 3] = C[4, 4] = C[5, 5] = c["c44"]
        sym, ca = "cubic", None
    if np.any(np.linalg.eigvalsh(C) <= 0):
        raise ValueError("elastic: the stiffness matrix is not positive definite")
    return C, sym, ca


def _mandel_vec(n: np.ndarray) -> np.ndarray:
    """Mandel vector of the dyad n n (..., 6)."""
    s = np.sqrt(2.0)
    return np.stack([n[..., 0] ** 2, n[..., 1] ** 2, n[..., 2] ** 2, s * n[..., 1] * n[..., 2],
                     s * n[..., 0] * n[..., 2], s * n[..., 0] * n[..., 1]], axis=-1)


def _iso(T: np.ndarray) -> tuple[float, float]:
    """(3k, 2g) of the isotropic projection 3k J + 2g K of a Mandel 6x6 tensor."""
    return float(np.trace(_J @ T)), float(np.trace(_K @ T)) / 5.0


def _kroner_medium(Cm: np.ndarray, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(C*, A) of the self-consistent Eshelby-Kroner medium for the grain stiffness Cm."""
    k3, g2 = _iso(Cm)  # Voigt start
    for _ in range(max_iter):
        K, G = k3 / 3.0, g2 / 2.0
        E = 3 * K / (3 * K + 4 * G) * _J + 6 * (K + 2 * G) / (5 * (3 * K + 4 * G)) * _K
        Cs = k3 * _J + g2 * _K
        A = np.linalg.inv(np.eye(6) + E @ np.linalg.inv(Cs) @ (Cm - Cs))
        a3, a2 = _iso(A)
        c3, c2 = _iso(Cm @ A)
        new3, new2 = c3 / a3, c2 / a2  # <C A> <A>^-1 (isotropic tensors commute)
        if abs(new3 - k3) < 1e-13 * k3 and abs(new2 - g2) < 1e-13 * g2:
            k3, g2 = new3, new2
            break
        k3, g2 = new3, new2
    Cs = k3 * _J + g2 * _K
    K, G = k3 / 3.0, g2 / 2.0
    E = 3 * K / (3 * K + 4 * G) * _J + 6 * (K + 2 * G) / (5 * (3 * K + 4 * G)) * _K
    A = np.linalg.inv(np.eye(6) + E @ np.linalg.inv(Cs) @ (Cm - Cs))
    return Cs, A


def _local_compliance(Cm: np.ndarray, approximation: str) -> np.ndarray:
    """Grain strain per unit macroscopic stress (Mandel 6x6, 1/GPa)."""
    if approximation == "reuss":
        return np.linalg.inv(Cm)
    if approximation == "voigt":
        k3, g2 = _iso(Cm)
        return _J / k3 + _K / g2
    Cs, A = _kroner_medium(Cm)
    return A @ np.linalg.inv(Cs)


def _parse_hkl(hkl: Any) -> tuple[int, int, int]:
    if isinstance(hkl, str):
        tokens = re.findall(r"-?\d", hkl.split(" ")[-1] if " " in hkl and not re.fullmatch(r"[-\d ]+", hkl)
                            else hkl)
    else:
        tokens = list(hkl)
    try:
        idx = [int(t) for t in tokens]
    except (TypeError, ValueError):
        idx = []
    if len(idx) == 4:
        if idx[2] != -(idx[0] + idx[1]):
            raise ValueError(f"hkl: {hkl!r}: i must be -(h + k) in (h k i l)")
        idx = [idx[0], idx[1], idx[3]]
    if len(idx) != 3 or not any(idx):
        raise ValueError(f"hkl: expected (h, k, l), (h, k, i, l) or a label like '211' or '10-10', got {hkl!r}")
    return tuple(idx)


def _normal(hkl: tuple[int, int, int], sym: str, c_over_a: float | None) -> np.ndarray:
    h, k, l = hkl
    if sym == "cubic":
        n = np.array([h, k, l], dtype=float)
    else:  # reciprocal vector, a1 along x, c along z: (h/a, (h + 2k)/(a sqrt 3), l/c)
        if c_over_a is None:
            raise ValueError("c_over_a: hexagonal DECs need the c/a ratio (elastic['c_over_a'] or c_over_a=)")
        n = np.array([h, (h + 2 * k) / np.sqrt(3.0), l / c_over_a], dtype=float)
    return n / np.linalg.norm(n)


def _dec(S_loc: np.ndarray, n: np.ndarray, n_omega: int = 72) -> tuple[float, float]:
    """(S1, 1/2 S2) in 1/GPa for the crystal direction n and the local compliance S_loc."""
    t = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    t /= np.linalg.norm(t)
    u = np.cross(n, t)
    w = np.linspace(0.0, 2 * np.pi, n_omega, endpoint=False)
    m = np.cos(w)[:, None] * t + np.sin(w)[:, None] * u
    an = _mandel_vec(n)
    s1 = float(np.mean(_mandel_vec(m) @ S_loc.T @ an))
    return s1, float(an @ S_loc @ an) - s1


def diffraction_elastic_constants(elastic: Any, hkl: Any, *, approximation: str = "kroner",
                                  c_over_a: float | None = None) -> xr.Dataset:
    """Diffraction elastic constants S1(hkl), S2/2(hkl) of a random polycrystal.

    Parameters
    ----------
    elastic : str or mapping
        Material name in :data:`ELASTIC_CONSTANTS` (``"Fe"``, ``"Ni"``, ``"Cu"``, ``"Al"``,
        ``"Ti"``, ``"Mg"``) or single-crystal stiffnesses in GPa: cubic ``c11, c12, c44``;
        hexagonal ``c11, c12, c13, c33, c44`` (and ``c_over_a``).
    hkl : sequence
        Reflections: ``(h, k, l)``, ``(h, k, i, l)`` or labels (``"211"``, ``"10-10"``).
    approximation : "reuss", "voigt" or "kroner"
        Grain interaction (see the module docstring).
    c_over_a : float, optional
        c/a of a hexagonal phase (overrides ``elastic["c_over_a"]``).

    Returns
    -------
    xr.Dataset
        Along ``hkl`` (labels as given): ``s1`` and ``half_s2`` (1/TPa = 1e-6/MPa),
        ``youngs_modulus`` = 1/(S1 + S2/2) and ``poisson_ratio`` = -S1/(S1 + S2/2) of the
        reflection (GPa, 1).

    Examples
    --------
    >>> dec = diffraction_elastic_constants("Fe", ["200", "211"], approximation="kroner")
    >>> [round(float(v), 2) for v in dec.half_s2], [round(float(v), 2) for v in dec.s1]
    ([7.56, 5.69], [-1.86, -1.23])
    """
    O.choice(approximation, "approximation", O.DEC_APPROXIMATIONS)
    C, sym, ca = stiffness(elastic)
    if c_over_a is not None:
        ca = O.positive(c_over_a, "c_over_a")
    single = isinstance(hkl, str) or (isinstance(hkl, (tuple, list)) and len(hkl) > 0 and all(
        isinstance(v, (int, np.integer)) for v in hkl))
    items = [hkl] if single else list(hkl)
    if not items:
        raise ValueError("hkl: no reflections given")
    idx = [_parse_hkl(h) for h in items]
    Cm = C * np.outer(_W, _W)
    S_loc = _local_compliance(Cm, approximation)
    vals = np.array([_dec(S_loc, _normal(h, sym, ca)) for h in idx]) * 1e3  # 1/GPa -> 1/TPa
    labels = [h if isinstance(h, str) else "".join(map(str, h)) for h in items]
    s = vals[:, 0] + vals[:, 1]
    ds = xr.Dataset(
        {"s1": ("hkl", vals[:, 0], U.attrs("diffraction elastic constant S1", "1/TPa")),
         "half_s2": ("hkl", vals[:, 1], U.attrs("diffraction elastic constant S2/2", "1/TPa")),
         "youngs_modulus": ("hkl", 1e3 / s, U.attrs("diffraction Young's modulus 1/(S1 + S2/2)", "GPa")),
         "poisson_ratio": ("hkl", -vals[:, 0] / s, U.attrs("diffraction Poisson ratio -S1/(S1 + S2/2)",
                                                          U.DIMENSIONLESS))},
        coords={"hkl": labels, "h": ("hkl", [i[0] for i in idx]), "k": ("hkl", [i[1] for i in idx]),
                "l": ("hkl", [i[2] for i in idx])})
    ds.attrs = {"approximation": approximation, "symmetry": sym,
                "elastic": elastic if isinstance(elastic, str) else repr(dict(elastic))}
    return ds


def elastic_for_peaks(elastic: Any, fits: xr.Dataset, *, approximation: str = "kroner") -> xr.Dataset:
    """DECs along ``peak`` of ``fits``: from its ``h``, ``k``, ``l`` coords, or a given Dataset."""
    if isinstance(elastic, xr.Dataset):
        if not {"s1", "half_s2"} <= set(elastic.data_vars) or "peak" not in elastic.dims:
            raise ValueError("elastic: a Dataset needs 's1' and 'half_s2' along 'peak'")
        return elastic.sel(peak=fits["peak"])
    if not all(c in fits.coords for c in ("h", "k", "l")):
        raise ValueError("elastic: fits need h, k, l peak coords (fit_peaks with reflections)")
    hkl = list(zip(*(np.asarray(fits[c].values).astype(int).tolist() for c in ("h", "k", "l"))))
    dec = diffraction_elastic_constants(elastic, hkl, approximation=approximation)
    return dec.rename(hkl="peak").drop_vars(["h", "k", "l"]).assign_coords(peak=fits["peak"].values)
