"""Miller indices and reciprocal-lattice families: the numbers behind :mod:`xrdflow.crystal`.

Label free: index parsing, reflection labels, the Laue group, structure factors
(Waasmaier-Kirfel f0, Chantler f', f'' and Debye-Waller factors from xraydb and the CIF, via
:mod:`xrdflow._scattering`), absences, multiplicities, the enumeration of symmetry-distinct
families, and coincident d-spacings. :mod:`xrdflow.crystal` turns these
into labeled Datasets; :mod:`xrdflow._mounts` uses the index parsing.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .options import boolean, positive_array

__all__ = [
    "parse_indices",
    "three_indices",
    "hkl_label",
    "laue_rotations",
    "structure_factor_sq",
    "absent",
    "multiplicity",
    "families",
    "coincident_labels",
]


def parse_indices(text: str | Sequence[int]) -> tuple[str, tuple[int, ...]]:
    """Parse ``"[uvw]"``, ``"[uvtw]"``, ``"(hkl)"``, ``"(hkil)"`` or ``"10-10"``.

    Returns ``(kind, indices)`` with kind ``"uvw"`` (square brackets: a direction) or
    ``"hkl"`` (round brackets or none: a plane / reflection). Digits may be written together
    (``"2-1-10"``, one digit per index) or separated by spaces or commas (``"1 10 0"``).
    Three- or four-index tuples of ints are taken as hkl.

    Examples
    --------
    >>> parse_indices("[2-1-10]")
    ('uvw', (2, -1, -1, 0))
    >>> parse_indices("(1 0 -1 1)")
    ('hkl', (1, 0, -1, 1))
    """
    if not isinstance(text, str):
        idx = tuple(int(v) for v in text)
        if len(idx) not in (3, 4) or any(v != w for v, w in zip(idx, text)):
            raise ValueError(f"indices must be 3 or 4 integers, got {text!r}")
        return "hkl", idx
    s = text.strip()
    kind = "hkl"
    if s.startswith("[") and s.endswith("]"):
        kind, s = "uvw", s[1:-1]
    elif s.startswith("(") and s.endswith(")"):
        s = s[1:-1]
    s = s.strip()
    if re.search(r"[\s,]", s):
        parts = [p for p in re.split(r"[\s,]+", s) if p]
    else:
        parts = re.findall(r"-?\d", s)
        if "".join(parts) != s:
            parts = []
    try:
        idx = tuple(int(p) for p in parts)
    except ValueError:
        idx = ()
    if len(idx) not in (3, 4) or all(v == 0 for v in idx):
        raise ValueError(f"cannot read Miller indices from {text!r}")
    return kind, idx



def three_indices(kind: str, idx: tuple[int, ...], text: Any) -> np.ndarray:
    """Three indices from three or four (Miller-Bravais ``hkil`` / ``uvtw``) ones."""
    if len(idx) == 3:
        return np.array(idx, dtype=float)
    if kind == "hkl":
        h, k, i, l = idx
        if i != -(h + k):
            raise ValueError(f"{text!r}: Miller-Bravais indices need i = -(h + k)")
        return np.array([h, k, l], dtype=float)
    u, v, t, w = idx
    if t != -(u + v):
        raise ValueError(f"{text!r}: 4-index directions need t = -(u + v)")
    return np.array([u - t, v - t, w], dtype=float)



def hkl_label(hkl: Sequence[int], hexagonal: bool) -> str:
    h, k, l = (int(v) for v in hkl)
    idx = (h, k, -(h + k), l) if hexagonal else (h, k, l)
    if all(abs(v) <= 9 for v in idx):
        return "".join(str(v) for v in idx)
    return " ".join(str(v) for v in idx)  # unambiguous for two-digit indices



def laue_rotations(structure, symprec: float) -> np.ndarray:
    """Integer rotation matrices (fractional basis of the input cell) of the Laue group."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's error-handling notice
            ops = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations(
                cartesian=False)
        rots = {tuple(np.rint(op.rotation_matrix).astype(int).ravel()) for op in ops}
    except Exception:  # spglib failure on a pathological cell: no symmetry but identity
        rots = {tuple(np.eye(3, dtype=int).ravel())}
    rots |= {tuple(-np.asarray(r)) for r in rots}  # Friedel's law
    return np.array(sorted(rots), dtype=np.int64).reshape(-1, 3, 3)



def structure_factor_sq(structure, hkl: np.ndarray, *, energy_kev: Any = None,
                        anomalous: bool = True, debye_waller: Any = "cif",
                        debye_waller_factors: Mapping[str, float] | None = None,
                        friedel_mean: bool = False) -> np.ndarray:
    """|F(hkl)|^2 (electrons^2) for integer indices ``hkl`` (n, 3).

    ``F = sum_j occ_j [f0_j(s) + f'_j(E) + i f''_j(E)] exp(-B_j s^2) exp(2 pi i hkl . x_j)``,
    ``s = 1/(2 d)``: Waasmaier-Kirfel ``f0`` and Chantler ``f'``, ``f''`` from xraydb (see
    :mod:`xrdflow._scattering` for the conventions; ``xraydb.f1_chantler`` is ``f'`` alone).

    Parameters
    ----------
    energy_kev
        None: ``f0`` only (``anomalous`` is then ignored), shape ``(n,)``. A scalar: at
        that energy, shape ``(n,)``. A 1-D array: shape ``(n_energy, n)``.
    anomalous
        Include ``f' + i f''`` at the energy.
    debye_waller
        ``"cif"``: the CIF's isotropic U / B per site when the structure was read from a
        CIF by :func:`xrdflow.crystal.load_phase` (site property ``b_iso``), else none.
        None: none. A mapping ``{element or site label: B}`` (A^2; a site's label wins
        over its element; sites in neither get none).
    debye_waller_factors
        The old keyword: a mapping element -> B, an alias of a ``debye_waller`` mapping.
    friedel_mean
        Return ``(|F(hkl)|^2 + |F(-h-k-l)|^2) / 2`` (equal to ``|F(hkl)|^2`` without
        anomalous terms or for centrosymmetric structures): the value of the whole
        Laue-group family (see :func:`xrdflow._scattering.f2_from_terms`).

    Examples
    --------
    >>> from xrdflow.crystal import load_phase
    >>> al = load_phase("Al")
    >>> round(float(structure_factor_sq(al, [(1, 1, 1)])[0]), 2)  # (4 f0(Al, 0.214/A))^2
    1281.85
    >>> structure_factor_sq(al, [(1, 1, 1), (2, 0, 0)], energy_kev=[8.0, 17.0]).shape
    (2, 2)
    """
    from . import _scattering

    f0_sum, phase_el, elements = _scattering.scattering_terms(
        structure, np.asarray(hkl, dtype=float).reshape(-1, 3), debye_waller=debye_waller,
        debye_waller_factors=debye_waller_factors)
    if energy_kev is not None:
        energy_kev = positive_array(energy_kev, "energy_kev")
        if energy_kev.ndim > 1:
            raise ValueError("energy_kev: must be a scalar or a 1-D array of energies")
    if energy_kev is None or not boolean(anomalous, "anomalous"):
        f2 = _scattering.f2_from_terms(f0_sum, phase_el)
        if energy_kev is None or energy_kev.ndim == 0:
            return f2
        return np.broadcast_to(f2, (energy_kev.size, len(f2))).copy()
    terms = _scattering.anomalous_terms(elements, energy_kev)
    f2 = _scattering.f2_from_terms(f0_sum, phase_el, terms, friedel_mean=friedel_mean)
    return f2[0] if energy_kev.ndim == 0 else f2


def _f2_absent(structure, hkl: np.ndarray, debye_waller: Any, rtol: float = 1e-8):
    """(|F|^2 with f0 and Debye-Waller, systematic absence flags) in one pass."""
    from . import _scattering

    b_sites = _scattering.site_b_factors(structure, debye_waller)
    f0_sum, _, _, bound = _scattering._terms(structure, hkl, b_sites)
    f2 = (f0_sum * f0_sum.conj()).real
    return f2, f2 <= rtol * bound ** 2


def absent(structure, hkl: np.ndarray, *, debye_waller: Any = "cif",
           debye_waller_factors: Mapping[str, float] | None = None,
           rtol: float = 1e-8) -> np.ndarray:
    """Systematic absences: ``|F|^2 <= rtol (sum_j occ_j |f0_j| T_j)^2`` at the same s.

    Relative to the largest |F| the atoms could give at that s (not to the strongest
    reflection), so weak high-angle reflections, or a large B, are not taken as absent.
    """
    from . import _scattering

    dw = _scattering.check_debye_waller(debye_waller, debye_waller_factors)
    return _f2_absent(structure, hkl, dw, rtol)[1]



def multiplicity(structure, hkl: np.ndarray, symprec: float = 0.01) -> np.ndarray:
    """Number of distinct members of the Laue-group orbit of each ``hkl`` (n, 3)."""
    rots = laue_rotations(structure, symprec)
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    orbit = np.einsum("mji,nj->nmi", rots, hkl)
    return np.array([len(np.unique(o, axis=0)) for o in orbit], dtype=np.int64)



def families(structure, d_lo: float, *, symprec: float = 0.01, debye_waller: Any = "cif",
             debye_waller_factors: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """All symmetry-distinct reflection families with d >= d_lo.

    Returns arrays: ``hkl`` (n, 3) representative indices, ``d`` (n,), ``multiplicity``
    (n,), ``f2`` (n,) = |F|^2 of the representative (electrons^2; ``f0`` and the
    Debye-Waller factors, no anomalous terms, so the same for every member). Systematic
    absences (:func:`absent`) are dropped.
    """
    lattice = structure.lattice
    recip = lattice.reciprocal_lattice_crystallographic.matrix  # rows: a*, b*, c* (1/A)
    g_max = 1.0 / d_lo
    hmax = [int(math.floor(g_max * n + 1e-9)) for n in lattice.abc]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in hmax], indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)
    g = np.linalg.norm(hkl @ recip, axis=1)
    keep = (g > 0) & (g <= g_max * (1 + 1e-12))
    hkl, g = hkl[keep], g[keep]
    if len(hkl) == 0:
        empty = np.zeros(0)
        return dict(hkl=np.zeros((0, 3), np.int64), d=empty, multiplicity=empty.astype(np.int64),
                    f2=empty)

    # canonical representative of each family under the Laue group: fewest negative
    # indices, then the lexicographically largest (100 not -100, 311 not 131, 11-20 not 2-1-10)
    rots = laue_rotations(structure, symprec)
    orbit = np.einsum("mji,nj->nmi", rots, hkl)  # h' = R^T h, shape (n, m, 3)
    span = int(np.abs(orbit).max()) + 1
    base = 2 * span + 1
    shifted = orbit + span
    lex = (shifted[..., 0] * base + shifted[..., 1]) * base + shifted[..., 2]
    nneg = (orbit < 0).sum(axis=2)
    score = -nneg * base**3 + lex
    rep = orbit[np.arange(len(hkl)), np.argmax(score, axis=1)]
    fam, inverse, counts = np.unique(rep, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    # d is invariant within a family: take it from the first member found
    first = np.zeros(len(fam), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(hkl))[::-1]
    d = 1.0 / g[first]
    from . import _scattering

    dw = _scattering.check_debye_waller(debye_waller, debye_waller_factors)
    f2, gone = _f2_absent(structure, fam, dw)
    present = ~gone
    return dict(hkl=fam[present], d=d[present], multiplicity=counts[present].astype(np.int64),
                f2=f2[present])



def coincident_labels(labels: np.ndarray, d: np.ndarray, rtol: float = 1e-7) -> np.ndarray:
    """For each reflection, the labels of others with the same d (within rtol), comma-joined."""
    out = np.full(len(d), "", dtype=object)
    order = np.argsort(-d, kind="stable")
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and abs(d[order[j]] - d[order[i]]) <= rtol * d[order[i]]:
            j += 1
        if j - i > 1:
            group = [order[n] for n in range(i, j)]
            for a in group:
                out[a] = ",".join(labels[b] for b in group if b != a)
        i = j
    return out.astype(str)
