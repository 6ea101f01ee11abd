"""The crystal inset of the scene: atoms, bonds, polyhedra, cell edges and crystal axes.

:func:`crystal_nodes` draws a block of unit cells of a pymatgen ``Structure`` in the lab
frame (mm): a crystal Cartesian point ``r`` (Angstrom, pymatgen's ``lattice.matrix`` frame)
is drawn at ``origin + scale_mm_per_A * rotation @ r``, so with ``rotation = R @ U`` (the
goniometer solution times the mount) the inset has exactly the orientation of the mounted
sample. Everything is built with vectorised numpy (one merged mesh per element), so a
30-atom cell in a 2 x 2 x 2 block builds in a few tens of milliseconds.

Colours are Jmol's (``pymatgen/vis/ElementColorSchemes.yaml``, read with PyYAML; no vtk).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..options import boolean, positive, positive_int
from .model import Label, Lines, Material, Mesh, Node, arrow_mesh, sphere_mesh

__all__ = ["crystal_nodes", "CrystalNodes", "element_color", "covalent_radius",
           "BOND_TOLERANCE"]

#: atoms closer than this factor times the sum of their covalent radii are bonded
BOND_TOLERANCE = 1.2
#: elements within this electronegativity (Pauling) of the structure's most electronegative
#: one are its "anions"; two non-anions are not bonded
ANION_WINDOW = 0.4
#: drawn sphere radius = this factor x the element's atomic radius (at most; see _radius_factor)
ATOM_RADIUS_FACTOR = 0.4
#: fractional-coordinate tolerance for the atoms on the block's faces, edges and corners
FRACTIONAL_TOLERANCE = 1e-4

_GREY = (0.55, 0.55, 0.55, 1.0)
_AXIS_COLORS = {"a": (0.85, 0.1, 0.1, 1.0), "b": (0.1, 0.62, 0.1, 1.0), "c": (0.1, 0.25, 0.9, 1.0)}
_CELL_COLOR = (0.15, 0.15, 0.15, 1.0)
_POLYHEDRON_ALPHA = 0.35


class CrystalNodes(list):
    """The nodes of :func:`crystal_nodes` (a plain ``list[Node]``) plus ``legend``: the
    ``[(element, rgba), ...]`` pairs of the elements drawn, in drawing order."""

    legend: list[tuple[str, tuple[float, float, float, float]]]
    #: length (Angstrom) of every bond drawn
    bond_lengths_a: np.ndarray

    def __init__(self, nodes=(), legend=(), bond_lengths_a=()):
        super().__init__(nodes)
        self.legend = list(legend)
        self.bond_lengths_a = np.asarray(bond_lengths_a, dtype=float)


# --------------------------------------------------------------------------- element data
@lru_cache(maxsize=1)
def _jmol_colors() -> dict[str, tuple[float, float, float, float]]:
    """Jmol colours (rgba in [0, 1]) from pymatgen's colour scheme file (PyYAML)."""
    import pymatgen.core
    import yaml

    path = Path(pymatgen.core.__file__).resolve().parent.parent / "vis" / "ElementColorSchemes.yaml"
    try:
        table = yaml.safe_load(path.read_text())["Jmol"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):  # pragma: no cover - packaging
        return {}
    return {el: tuple(float(c) / 255.0 for c in rgb) + (1.0,) for el, rgb in table.items()}


def element_color(symbol: str) -> tuple[float, float, float, float]:
    """The Jmol colour of an element (rgba in [0, 1]); grey when unknown."""
    return _jmol_colors().get(symbol, _GREY)


@lru_cache(maxsize=None)
def covalent_radius(symbol: str) -> float:
    """Covalent radius (Angstrom): pymatgen's table (Cordero et al. 2008), else the
    element's atomic radius, else 1.5 A."""
    try:
        from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

        value = CovalentRadius.radius.get(symbol)
        if value is not None:
            return float(value)
    except ImportError:  # pragma: no cover - pymatgen always ships it
        pass
    return _atomic_radius(symbol)


@lru_cache(maxsize=None)
def _atomic_radius(symbol: str) -> float:
    """Atomic radius (Angstrom, pymatgen's ``Element.atomic_radius``); 1.5 A when unknown."""
    from pymatgen.core import Element

    try:
        r = Element(symbol).atomic_radius
    except (ValueError, KeyError):
        return 1.5
    return float(r) if r is not None else 1.5


@lru_cache(maxsize=None)
def _electronegativity(symbol: str) -> float:
    from pymatgen.core import Element

    try:
        x = Element(symbol).X
    except (ValueError, KeyError):
        return math.nan
    return float(x) if x is not None and math.isfinite(float(x)) else math.nan


def _site_symbol(site) -> str:
    """The element of a site: the species of largest occupancy (a disordered site)."""
    sp = max(site.species.items(), key=lambda kv: kv[1])[0]
    element = getattr(sp, "element", sp)  # Species (oxidation state) -> Element
    return str(getattr(element, "symbol", sp))


# ---------------------------------------------------------------------- vectorised meshes
@lru_cache(maxsize=4)
def _unit_sphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    m = sphere_mesh(np.zeros(3), 1.0, subdivisions)
    return m.vertices, m.faces


def _spheres(centers: np.ndarray, radii: np.ndarray, subdivisions: int) -> Mesh:
    """Icospheres at ``centers`` (n, 3) with ``radii`` (n,), one mesh."""
    v, f = _unit_sphere(subdivisions)
    verts = centers[:, None, :] + radii[:, None, None] * v[None, :, :]
    faces = f[None, :, :] + (np.arange(len(centers)) * len(v))[:, None, None]
    return Mesh(verts.reshape(-1, 3), faces.reshape(-1, 3))


def _perpendicular_frames(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit ``u``, ``v`` (n, 3) normal to the unit directions ``d`` (n, 3) and to each other."""
    helper = np.where(np.abs(d[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    u = np.cross(helper, d)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u, np.cross(d, u)


def _cylinders(starts: np.ndarray, ends: np.ndarray, radius: float, sections: int = 8) -> Mesh:
    """Open cylinders from ``starts`` to ``ends`` (n, 3), one mesh."""
    axis = ends - starts
    d = axis / np.linalg.norm(axis, axis=1, keepdims=True)
    u, v = _perpendicular_frames(d)
    t = np.linspace(0.0, 2.0 * math.pi, sections, endpoint=False)
    ring = radius * (np.cos(t)[None, :, None] * u[:, None, :]
                     + np.sin(t)[None, :, None] * v[:, None, :])
    verts = np.concatenate([starts[:, None, :] + ring, ends[:, None, :] + ring], axis=1)
    i = np.arange(sections)
    j = (i + 1) % sections
    quad = np.concatenate([np.stack([i, j, sections + j], 1),
                           np.stack([i, sections + j, sections + i], 1)])
    faces = quad[None, :, :] + (np.arange(len(starts)) * 2 * sections)[:, None, None]
    return Mesh(verts.reshape(-1, 3), faces.reshape(-1, 3))


# ----------------------------------------------------------------------------- the block
def _check_cells(cells: Any) -> tuple[int, int, int]:
    try:
        values = tuple(cells)
    except TypeError:
        raise ValueError(f"cells: must be three positive integers, got {cells!r}") from None
    if len(values) != 3:
        raise ValueError(f"cells: must be three positive integers, got {cells!r}")
    out = tuple(positive_int(int(v) if isinstance(v, float) and float(v).is_integer() else v,
                             "cells") for v in values)
    if max(out) > 10:
        raise ValueError(f"cells: at most 10 cells along an axis, got {cells!r}")
    return out


def _block_atoms(structure, cells: tuple[int, int, int]):
    """Every atom of the block including those on its faces, edges and corners.

    Returns (fractional coordinates in block cells (n, 3), Cartesian A (n, 3), site index (n,)).
    """
    frac = np.mod(structure.frac_coords, 1.0)
    frac = np.where(frac > 1.0 - 1e-9, 0.0, frac)  # wrap 0.9999999999 to 0
    shifts = np.stack(np.meshgrid(*(np.arange(-1, n + 1) for n in cells), indexing="ij"),
                      axis=-1).reshape(-1, 3)
    pos = frac[:, None, :] + shifts[None, :, :]  # (sites, shifts, 3)
    tol = FRACTIONAL_TOLERANCE
    inside = np.all((pos >= -tol) & (pos <= np.asarray(cells) + tol), axis=-1)
    site = np.broadcast_to(np.arange(len(frac))[:, None], inside.shape)[inside]
    f = pos[inside]
    return f, f @ structure.lattice.matrix, site


def _radius_factor(cart: np.ndarray, radii: np.ndarray) -> float:
    """Sphere radius / atomic radius: ATOM_RADIUS_FACTOR, smaller if nearest neighbours
    would touch (spheres at most 0.45 of each neighbour distance in sum)."""
    if len(cart) < 2:
        return ATOM_RADIUS_FACTOR
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(cart).query(cart, k=2)
    d, j = dist[:, 1], idx[:, 1]
    ok = d > 1e-6
    if not np.any(ok):
        return ATOM_RADIUS_FACTOR
    ratio = d[ok] / (radii[ok] + radii[j[ok]])
    return float(min(ATOM_RADIUS_FACTOR, 0.45 * ratio.min()))


def _anion_flags(symbols) -> dict[str, bool]:
    """Per element: True for the "anions" of the structure (electronegativity within
    :data:`ANION_WINDOW` of the most electronegative element; every element of a pure
    element or of an intermetallic). Two non-anions are never bonded (no Ce-Ce bonds in
    CeO2, no Li-Nb in LiNbO3), so compounds show their cation-anion bonds only."""
    els = list(dict.fromkeys(symbols))
    chi = np.array([_electronegativity(e) for e in els])
    if not np.any(np.isfinite(chi)):
        return {e: True for e in els}
    top = np.nanmax(chi)
    return {e: bool(np.isfinite(c) and c >= top - ANION_WINDOW) for e, c in zip(els, chi)}


@lru_cache(maxsize=None)
def _is_metal(symbol: str) -> bool:
    """pymatgen's ``Element.is_metal`` (False for an unknown symbol)."""
    from pymatgen.core import Element

    try:
        return bool(Element(symbol).is_metal)
    except (ValueError, KeyError, AttributeError):
        return False


def _bond_pairs(cart: np.ndarray, cov: np.ndarray, anion: np.ndarray,
                metal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (m, 2) and lengths (m,) of atoms closer than BOND_TOLERANCE x the sum of
    their covalent radii, at least one of them an anion (:func:`_anion_flags`) and not both
    metals (``metal``: no sticks in a metal, whose neighbours are all equal)."""
    if len(cart) < 2:
        return np.empty((0, 2), int), np.empty(0)
    from scipy.spatial import cKDTree

    reach = BOND_TOLERANCE * 2.0 * float(cov.max())
    pairs = cKDTree(cart).query_pairs(reach, output_type="ndarray")
    if len(pairs) == 0:
        return np.empty((0, 2), int), np.empty(0)
    d = np.linalg.norm(cart[pairs[:, 0]] - cart[pairs[:, 1]], axis=1)
    keep = ((d <= BOND_TOLERANCE * (cov[pairs[:, 0]] + cov[pairs[:, 1]])) & (d > 1e-6)
            & (anion[pairs[:, 0]] | anion[pairs[:, 1]]))
    if metal is not None:
        keep &= ~(metal[pairs[:, 0]] & metal[pairs[:, 1]])
    return pairs[keep], d[keep]


def _polyhedra(structure, symbols: list[str], site: np.ndarray, cart: np.ndarray,
               cov_site: np.ndarray, anion_site: np.ndarray) -> dict[str, list]:
    """Coordination polyhedra (Cartesian A vertices, outward triangles) per centre element.

    A centre is a site with at least 4 bonded neighbours (periodic: the polyhedron may reach
    outside the block), all of other elements and all more electronegative than it.
    """
    from scipy.spatial import ConvexHull, QhullError

    cutoff = BOND_TOLERANCE * 2.0 * float(cov_site.max())
    ci, pi, offsets, dist = structure.get_neighbor_list(cutoff)
    keep = ((dist <= BOND_TOLERANCE * (cov_site[ci] + cov_site[pi])) & (dist > 1e-6)
            & (anion_site[ci] | anion_site[pi]))
    ci, pi, offsets = ci[keep], pi[keep], offsets[keep]
    lattice = structure.lattice.matrix
    # per site: neighbour Cartesian vectors relative to the centre
    rel: dict[int, np.ndarray] = {}
    frac = structure.frac_coords
    for s in np.unique(ci):
        m = ci == s
        nb = pi[m]
        chi_c = _electronegativity(symbols[s])
        chi_n = np.array([_electronegativity(symbols[n]) for n in nb])
        if len(nb) < 4 or any(symbols[n] == symbols[s] for n in nb) or not np.all(chi_n > chi_c):
            continue
        rel[int(s)] = (frac[nb] + offsets[m] - frac[s]) @ lattice
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for k in np.flatnonzero(np.isin(site, list(rel))):
        pts = cart[k] + rel[int(site[k])]
        try:
            hull = ConvexHull(pts)
        except (QhullError, ValueError):  # coplanar neighbours: no solid polyhedron
            continue
        tri = hull.simplices.copy()
        a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
        flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), hull.equations[:, :3]) < 0
        tri[flip] = tri[flip][:, ::-1]
        out.setdefault(symbols[int(site[k])], []).append((pts, tri))
    return out


def crystal_nodes(structure, *, rotation, origin=(0.0, 0.0, 0.0), scale_mm_per_A: float,
                  cells=(1, 1, 1), bonds: bool = True, polyhedra: bool = False,
                  name_prefix: str = "", group: str = "crystal") -> CrystalNodes:
    """Nodes drawing a block of unit cells of ``structure`` in the lab frame (mm).

    A crystal Cartesian point ``r`` (Angstrom, pymatgen's ``lattice.matrix`` frame) is drawn
    at ``origin + scale_mm_per_A * rotation @ r``: ``origin`` is where the block's fractional
    (0, 0, 0) lands.

    Parameters
    ----------
    structure
        A pymatgen ``Structure``.
    rotation
        3x3 rotation, crystal Cartesian -> lab (``R @ U`` for a planned experiment).
    origin
        Lab position (mm) of the block's origin (fractional 0, 0, 0).
    scale_mm_per_A
        Drawing scale (mm per Angstrom).
    cells
        Number of cells along a, b, c (1 to 10 each).
    bonds
        Draw bonds (open cylinders, each half in its atom's colour) between atoms of the
        block closer than :data:`BOND_TOLERANCE` x the sum of their covalent radii (in a
        compound, not between two cations: see :data:`ANION_WINDOW`; never between two
        metal atoms, so a metal shows its atoms and cell only).
    polyhedra
        Draw translucent coordination polyhedra around cations (>= 4 more electronegative
        neighbours of other elements), coloured by the centre atom.
    name_prefix, group
        Prefix of every node name and the nodes' group.

    Returns
    -------
    CrystalNodes
        A ``list[Node]`` with ``.legend`` ([(element, rgba)], the elements drawn) and
        ``.bond_lengths_a`` (every bond drawn, Angstrom). Nodes:
        ``atoms_<El>`` (one merged sphere mesh per element, material named after the
        element, ``info["count"]`` atoms), ``bonds_<El>`` (bond halves starting at that
        element's atoms; ``info["count"]`` half bonds), ``polyhedra_<El>``, ``unit_cell``
        (Lines: every cell edge of the block, one segment per lattice vector), and
        ``crystal_axis_a``/``_b``/``_c`` (arrows along the lattice vectors, red, green,
        blue, each ``n_i + 0.35`` cell lengths long from the origin) with labels
        ``crystal_axis_a_label``... ("a", "b", "c").

    Examples
    --------
    >>> from xrdflow._phases import load_phase
    >>> nodes = crystal_nodes(load_phase("Al"), rotation=np.eye(3), scale_mm_per_A=0.1)
    >>> [n.name for n in nodes][:2], nodes.legend[0][0]  # a metal: no bonds
    (['atoms_Al', 'unit_cell'], 'Al')
    >>> nodes[0].info["count"]
    14
    """
    rot = np.asarray(rotation, dtype=float)
    if rot.shape != (3, 3) or not np.all(np.isfinite(rot)):
        raise ValueError(f"rotation: must be a finite 3x3 matrix, got shape {rot.shape}")
    org = np.asarray(origin, dtype=float).reshape(3)
    scale = positive(scale_mm_per_A, "scale_mm_per_A")
    return _crystal_nodes(structure, rotation=rot, origin=org, scale_mm_per_A=scale,
                          cells=_check_cells(cells), bonds=boolean(bonds, "bonds"),
                          polyhedra=boolean(polyhedra, "polyhedra"), name_prefix=name_prefix,
                          group=group)


def _crystal_nodes(structure, *, rotation, origin, scale_mm_per_A: float, cells, bonds: bool,
                   polyhedra: bool, name_prefix: str = "", group: str = "crystal") -> CrystalNodes:
    """:func:`crystal_nodes` with checked arguments (``cells`` a tuple of three ints)."""
    rot = np.asarray(rotation, dtype=float)
    org = np.asarray(origin, dtype=float).reshape(3)
    scale = float(scale_mm_per_A)
    cells = tuple(int(c) for c in cells)
    p = name_prefix

    def lab(points_a: np.ndarray) -> np.ndarray:
        return org + scale * np.asarray(points_a, float) @ rot.T

    symbols = [_site_symbol(s) for s in structure]
    frac, cart, site = _block_atoms(structure, cells)
    elements = list(dict.fromkeys(symbols[i] for i in site)) or list(dict.fromkeys(symbols))
    atom_el = np.array([symbols[i] for i in site])
    r_atomic = np.array([_atomic_radius(e) for e in atom_el])
    cov = np.array([covalent_radius(e) for e in atom_el])
    factor = _radius_factor(cart, r_atomic)
    radii = factor * r_atomic  # Angstrom
    subdiv = 2 if len(cart) <= 150 else 1
    nodes: list[Node] = []
    legend = []
    lab_atoms = lab(cart)
    anion = _anion_flags(symbols)
    is_anion = np.array([anion[e] for e in atom_el], dtype=bool)
    if bonds:
        is_metal = np.array([_is_metal(e) for e in atom_el], dtype=bool)
        pairs, blen = _bond_pairs(cart, cov, is_anion, is_metal)
    else:
        pairs, blen = np.empty((0, 2), int), np.empty(0)
    bond_radius = 0.12 * float(radii.min()) if len(radii) else 0.1
    bond_radius = max(bond_radius, 0.06)  # Angstrom
    for el in elements:
        m = atom_el == el
        rgba = element_color(el)
        legend.append((el, rgba))
        nodes.append(Node(f"{p}atoms_{el}", group, Material(el, rgba),
                          mesh=_spheres(lab_atoms[m], scale * radii[m], subdiv),
                          info=dict(element=el, count=int(m.sum()),
                                    radius_mm=float(scale * radii[m][0]),
                                    covalent_radius_a=float(cov[m][0]))))
        if len(pairs):
            # the half of each bond nearer this element's atom (both halves of a same-element bond)
            mid = 0.5 * (lab_atoms[pairs[:, 0]] + lab_atoms[pairs[:, 1]])
            starts = np.concatenate([lab_atoms[pairs[atom_el[pairs[:, 0]] == el, 0]],
                                     lab_atoms[pairs[atom_el[pairs[:, 1]] == el, 1]]])
            ends = np.concatenate([mid[atom_el[pairs[:, 0]] == el],
                                   mid[atom_el[pairs[:, 1]] == el]])
            if len(starts):
                nodes.append(Node(f"{p}bonds_{el}", group, Material(f"bond_{el}", rgba),
                                  mesh=_cylinders(starts, ends, scale * bond_radius),
                                  info=dict(element=el, count=int(len(starts)))))
    if polyhedra:
        cov_site = np.array([covalent_radius(e) for e in symbols])
        anion_site = np.array([anion[e] for e in symbols], dtype=bool)
        for el, polys in _polyhedra(structure, symbols, site, cart, cov_site, anion_site).items():
            verts, faces, off = [], [], 0
            for pts, tri in polys:
                verts.append(lab(pts))
                faces.append(tri + off)
                off += len(pts)
            rgba = element_color(el)[:3] + (_POLYHEDRON_ALPHA,)
            nodes.append(Node(f"{p}polyhedra_{el}", group, Material(f"polyhedron_{el}", rgba),
                              mesh=Mesh(np.concatenate(verts), np.concatenate(faces)),
                              info=dict(element=el, count=len(polys))))
    nodes += _cell_and_axes(structure.lattice.matrix, cells, lab, scale, p, group)
    return CrystalNodes(nodes, legend, bond_lengths_a=blen)


def _cell_and_axes(lattice: np.ndarray, cells, lab, scale: float, p: str, group: str) -> list[Node]:
    """The cell edges of the block (Lines) and the a, b, c arrows with their labels."""
    segs = []
    for axis in range(3):
        others = [i for i in range(3) if i != axis]
        grid = np.stack(np.meshgrid(np.arange(cells[axis]), np.arange(cells[others[0]] + 1),
                                    np.arange(cells[others[1]] + 1), indexing="ij"),
                        -1).reshape(-1, 3)
        start = np.zeros((len(grid), 3))
        start[:, axis] = grid[:, 0]
        start[:, others[0]] = grid[:, 1]
        start[:, others[1]] = grid[:, 2]
        end = start.copy()
        end[:, axis] += 1.0
        segs.append(np.stack([start, end], axis=1))
    segs = np.concatenate(segs) @ lattice  # fractional -> Cartesian A
    out = [Node(f"{p}unit_cell", group, Material("unit_cell", _CELL_COLOR),
                lines=Lines(lab(segs.reshape(-1, 3)).reshape(-1, 2, 3), width=1.5),
                info=dict(cells=list(cells)))]
    block = float(np.max(np.linalg.norm(lattice * np.asarray(cells)[:, None], axis=1))) * scale
    shaft = 0.012 * block
    o = lab(np.zeros((1, 3)))[0]
    for i, name in enumerate("abc"):
        end = lab((cells[i] + 0.35) * lattice[i][None, :])[0]
        rgba = _AXIS_COLORS[name]
        direction = (end - o) / np.linalg.norm(end - o)
        out.append(Node(f"{p}crystal_axis_{name}", group, Material(f"axis_{name}", rgba),
                        mesh=arrow_mesh(o, end, shaft, head_length=6 * shaft,
                                        head_radius=2.6 * shaft),
                        info=dict(start=o.tolist(), end=end.tolist(), direction=direction.tolist(),
                                  length_a=float(np.linalg.norm(lattice[i])))))
        out.append(Node(f"{p}crystal_axis_{name}_label", group, Material(f"axis_{name}", rgba),
                        label=Label(end + 0.06 * block * direction, name, size=7.5)))
    return out
