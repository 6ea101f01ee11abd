"""Miller indices and reciprocal-lattice families: the numbers behind :mod:`xrdflow.crystal`.

Energy independent and label free: index parsing, reflection labels, the Laue group,
structure factors (pymatgen's form factors), multiplicities, the enumeration of
symmetry-distinct families, and coincident d-spacings. :mod:`xrdflow.crystal` turns these
into labeled Datasets; :mod:`xrdflow._mounts` uses the index parsing.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "parse_indices",
    "three_indices",
    "hkl_label",
    "laue_rotations",
    "structure_factor_sq",
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



def structure_factor_sq(structure, hkl: np.ndarray,
                         debye_waller_factors: Mapping[str, float] | None = None) -> np.ndarray:
    """|F(hkl)|^2 (electrons^2) for integer indices ``hkl`` (n, 3), pymatgen's form factors."""
    from pymatgen.analysis.diffraction.xrd import ATOMIC_SCATTERING_PARAMS

    hkl = np.asarray(hkl, dtype=float).reshape(-1, 3)
    recip = structure.lattice.reciprocal_lattice_crystallographic.matrix
    g = np.linalg.norm(hkl @ recip, axis=1)
    s2 = (g / 2.0) ** 2
    dw = dict(debye_waller_factors or {})
    f = np.zeros(len(hkl), dtype=np.complex128)
    for site in structure:
        phase = np.exp(2j * np.pi * (hkl @ site.frac_coords))
        for sp, occ in site.species.items():
            symbol = sp.symbol
            try:
                coeff = np.asarray(ATOMIC_SCATTERING_PARAMS[symbol], dtype=float)
            except KeyError:
                raise ValueError(f"phase: no X-ray scattering factors for element {symbol}") from None
            fs = sp.Z - 41.78214 * s2 * np.sum(
                coeff[:, 0] * np.exp(-coeff[:, 1] * s2[:, None]), axis=1)
            if dw.get(symbol):
                fs = fs * np.exp(-dw[symbol] * s2)
            f += occ * fs * phase
    return (f * f.conj()).real



def multiplicity(structure, hkl: np.ndarray, symprec: float = 0.01) -> np.ndarray:
    """Number of distinct members of the Laue-group orbit of each ``hkl`` (n, 3)."""
    rots = laue_rotations(structure, symprec)
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    orbit = np.einsum("mji,nj->nmi", rots, hkl)
    return np.array([len(np.unique(o, axis=0)) for o in orbit], dtype=np.int64)



def families(structure, d_lo: float, *, symprec: float = 0.01,
              debye_waller_factors: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """All symmetry-distinct reflection families with d >= d_lo.

    Returns arrays: ``hkl`` (n, 3) representative indices, ``d`` (n,), ``multiplicity``
    (n,), ``f2`` (n,) = |F|^2 of one member (electrons^2). Extinct families are dropped.
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

    f2 = structure_factor_sq(structure, hkl, debye_waller_factors)

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
    # d and |F|^2 are invariant within a family: take the member that is the representative
    first = np.zeros(len(fam), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(hkl))[::-1]
    d = 1.0 / g[first]
    f2_fam = f2[first]
    # drop systematic absences (|F|^2 numerically zero)
    present = f2_fam > 1e-8 * f2_fam.max()
    return dict(hkl=fam[present], d=d[present], multiplicity=counts[present].astype(np.int64),
                f2=f2_fam[present])



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
