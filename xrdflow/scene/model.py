"""The scene model: a plain description of a 3D experiment scene, and the mesh helpers.

A :class:`Scene` is a tuple of named :class:`Node` objects in the lab frame of
:func:`xrdflow.sweep` (beam along +x, z up, y = z x x), lengths in millimetres. Each node
holds one :class:`Material` and a triangle :class:`Mesh`, a polyline (:class:`Lines`) or a
text :class:`Label`, never anything renderer-specific: the renderers (``plotly``, ``mpl``,
``gltf``) all draw the same nodes, so what the browser shows, what the PDF prints and what
Blender imports cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Material", "Mesh", "Lines", "Label", "Node", "Scene", "box_mesh", "cylinder_mesh",
           "cone_mesh", "arrow_mesh", "sphere_mesh", "ring_mesh", "merge_meshes", "view_basis",
           "view_angles"]


def view_basis(elev: float, azim: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(towards the viewer, screen right, screen up) unit vectors of a matplotlib view
    (``elev``/``azim`` degrees; screen right horizontal, z up on the screen).

    >>> eye, right, up = view_basis(0.0, -90.0)
    >>> eye.round(12).tolist(), right.round(12).tolist(), up.round(12).tolist()
    ([0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    """
    el, az = math.radians(elev), math.radians(azim)
    eye = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    right = np.array([-math.sin(az), math.cos(az), 0.0])
    return eye, right, np.cross(eye, right)


def view_angles(eye, azim_if_vertical: float = -90.0) -> dict[str, float]:
    """The matplotlib ``elev``/``azim`` (degrees) of the unit vector towards the viewer
    (``azim_if_vertical`` when it points along z); the inverse of :func:`view_basis`.

    >>> view_angles([0.0, -1.0, 0.0])
    {'elev': 0.0, 'azim': -90.0}
    """
    e = np.asarray(eye, dtype=float)
    e = e / np.linalg.norm(e)
    elev = math.degrees(math.asin(max(-1.0, min(1.0, float(e[2])))))
    horiz = math.hypot(float(e[0]), float(e[1]))
    azim = math.degrees(math.atan2(float(e[1]), float(e[0]))) if horiz > 1e-12 else azim_if_vertical
    return {"elev": round(elev, 9) + 0.0, "azim": round(azim, 9) + 0.0}


@dataclass(frozen=True)
class Material:
    """A named colour: ``rgba`` in [0, 1] (alpha < 1 is drawn translucent)."""

    name: str
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class Mesh:
    """Triangles: ``vertices`` (n, 3) float mm, ``faces`` (m, 3) int indices into them."""

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self):
        v = np.asarray(self.vertices, dtype=float)
        f = np.asarray(self.faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"Mesh: vertices (n, 3) and faces (m, 3), got {v.shape}, {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError("Mesh: a face indexes a vertex that does not exist")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)

    def transformed(self, rotation: np.ndarray, translation=(0.0, 0.0, 0.0),
                    scale: float = 1.0) -> "Mesh":
        """``scale * rotation @ v + translation`` for every vertex."""
        r = np.asarray(rotation, dtype=float)
        return Mesh(scale * self.vertices @ r.T + np.asarray(translation, float), self.faces)


@dataclass(frozen=True)
class Lines:
    """Polyline segments: ``points`` (n, 2, 3) float mm, each a segment's two ends."""

    points: np.ndarray
    width: float = 2.0  # drawing width in points/pixels (renderer units, not mm)

    def __post_init__(self):
        p = np.asarray(self.points, dtype=float)
        if p.ndim != 3 or p.shape[1:] != (2, 3):
            raise ValueError(f"Lines: points must be (n, 2, 3), got {p.shape}")
        object.__setattr__(self, "points", p)


@dataclass(frozen=True)
class Label:
    """Text anchored at ``position`` (mm)."""

    position: np.ndarray
    text: str
    size: float = 11.0  # font size in points

    def __post_init__(self):
        object.__setattr__(self, "position", np.asarray(self.position, dtype=float).reshape(3))


@dataclass(frozen=True)
class Node:
    """One named object of the scene: exactly one of ``mesh``, ``lines``, ``label``.

    ``group`` gathers nodes for legends and toggles (``"beam"``, ``"sample"``,
    ``"crystal"``, ``"goniometer"``, ``"lens"``, ``"detector"``, ``"axes"``, ``"labels"``).
    """

    name: str
    group: str
    material: Material
    mesh: Mesh | None = None
    lines: Lines | None = None
    label: Label | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if sum(x is not None for x in (self.mesh, self.lines, self.label)) != 1:
            raise ValueError(f"Node {self.name!r}: give exactly one of mesh, lines, label")

    @property
    def points(self) -> np.ndarray:
        """Every point of the node (k, 3), for bounds."""
        if self.mesh is not None:
            return self.mesh.vertices
        if self.lines is not None:
            return self.lines.points.reshape(-1, 3)
        return self.label.position[None, :]


@dataclass(frozen=True)
class Scene:
    """The experiment scene: nodes in the lab frame (mm), a title, and what it shows.

    ``info`` holds the numbers the scene was built from (energy, reflection, 2theta, stage
    angles, rotation, mount U, path length, inset scale...); ``legend`` pairs each element
    drawn with its colour; ``notes`` says what is not to scale (a compact layout).
    """

    nodes: tuple[Node, ...]
    title: str
    info: dict[str, Any] = field(default_factory=dict)
    legend: tuple[tuple[str, tuple[float, float, float, float]], ...] = ()
    notes: tuple[str, ...] = ()

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"scene has no node {name!r}; it has {[n.name for n in self.nodes]}")

    def group(self, group: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.group == group)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of every node's points (mm)."""
        pts = np.concatenate([n.points for n in self.nodes])
        return pts.min(axis=0), pts.max(axis=0)


# ---------------------------------------------------------------------------- mesh helpers

def _frame(axis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit ``w`` along ``axis`` and two unit vectors ``u``, ``v`` completing a right frame."""
    w = np.asarray(axis, dtype=float)
    w = w / np.linalg.norm(w)
    helper = np.array([0.0, 0.0, 1.0]) if abs(w[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(helper, w)
    u /= np.linalg.norm(u)
    return u, np.cross(w, u), w


def box_mesh(center, half_axes) -> Mesh:
    """A parallelepiped centred at ``center``; the columns of ``half_axes`` (3, 3) are its
    half-edge vectors (a box rotated by R with half sizes h: ``R * h``)."""
    c = np.asarray(center, dtype=float)
    h = np.asarray(half_axes, dtype=float)
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
    verts = c + signs @ h.T
    # vertex index = 4*(i>0) + 2*(j>0) + (k>0); two triangles per face, outward normals
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    if np.linalg.det(h) < 0:
        quads = [q[::-1] for q in quads]
    faces = [t for a, b, c_, d in quads for t in ((a, b, c_), (a, c_, d))]
    return Mesh(verts, np.array(faces))


def cylinder_mesh(start, end, radius: float, sections: int = 20, *, end_radius=None,
                  capped: bool = True) -> Mesh:
    """A (truncated-cone) cylinder from ``start`` to ``end``."""
    a = np.asarray(start, dtype=float)
    b = np.asarray(end, dtype=float)
    if np.linalg.norm(b - a) == 0:
        raise ValueError("cylinder_mesh: start and end coincide")
    u, v, _ = _frame(b - a)
    t = np.linspace(0.0, 2.0 * math.pi, sections, endpoint=False)
    ring = np.cos(t)[:, None] * u + np.sin(t)[:, None] * v
    r1 = radius if end_radius is None else end_radius
    verts = [a + radius * ring, b + r1 * ring]
    n = sections
    faces = []
    for i in range(n):
        j = (i + 1) % n
        faces += [(i, j, n + j), (i, n + j, n + i)]
    if capped:
        verts += [a[None, :], b[None, :]]
        ca, cb = 2 * n, 2 * n + 1
        for i in range(n):
            j = (i + 1) % n
            faces += [(ca, j, i), (cb, n + i, n + j)]
    return Mesh(np.concatenate(verts), np.array(faces))


def cone_mesh(base, tip, radius: float, sections: int = 20) -> Mesh:
    """A cone with its base circle at ``base`` and its apex at ``tip``."""
    a = np.asarray(base, dtype=float)
    b = np.asarray(tip, dtype=float)
    u, v, _ = _frame(b - a)
    t = np.linspace(0.0, 2.0 * math.pi, sections, endpoint=False)
    ring = a + radius * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * v)
    n = sections
    verts = np.concatenate([ring, b[None, :], a[None, :]])
    faces = [(i, (i + 1) % n, n) for i in range(n)] + [((i + 1) % n, i, n + 1) for i in range(n)]
    return Mesh(verts, np.array(faces))


def arrow_mesh(start, end, radius: float, head_length: float | None = None,
               head_radius: float | None = None, sections: int = 16) -> Mesh:
    """A shaft and a conical head, pointing from ``start`` to ``end`` (the head's tip)."""
    a = np.asarray(start, dtype=float)
    b = np.asarray(end, dtype=float)
    length = float(np.linalg.norm(b - a))
    if length == 0:
        raise ValueError("arrow_mesh: start and end coincide")
    hl = min(head_length if head_length is not None else 4.0 * radius, 0.5 * length)
    hr = head_radius if head_radius is not None else 2.2 * radius
    neck = b - (b - a) / length * hl
    return merge_meshes([cylinder_mesh(a, neck, radius, sections), cone_mesh(neck, b, hr, sections)])


def sphere_mesh(center, radius: float, subdivisions: int = 2) -> Mesh:
    """An icosphere (20 * 4**subdivisions triangles)."""
    p = (1.0 + 5.0 ** 0.5) / 2.0
    v = np.array([[-1, p, 0], [1, p, 0], [-1, -p, 0], [1, -p, 0], [0, -1, p], [0, 1, p],
                  [0, -1, -p], [0, 1, -p], [p, 0, -1], [p, 0, 1], [-p, 0, -1], [-p, 0, 1]], float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9],
                  [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2],
                  [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10],
                  [8, 6, 7], [9, 8, 1]])
    verts = list(v / np.linalg.norm(v, axis=1, keepdims=True))
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(i, j):
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        nf = []
        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            nf += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        f = np.array(nf)
    return Mesh(np.asarray(center, float) + radius * np.array(verts), f)


def ring_mesh(center, axis, radius: float, tube: float, *, start_deg: float = 0.0,
              stop_deg: float = 360.0, sections: int = 64, tube_sections: int = 8,
              reference=None) -> Mesh:
    """A torus (or an arc of one, ``start_deg`` to ``stop_deg``) about ``axis``.

    Angles are measured from ``reference`` (a vector normal to ``axis``; default any),
    right-handed about ``axis``.
    """
    c = np.asarray(center, dtype=float)
    u, v, w = _frame(axis)
    if reference is not None:
        r = np.asarray(reference, dtype=float)
        r = r - (r @ w) * w
        u = r / np.linalg.norm(r)
        v = np.cross(w, u)
    closed = abs(stop_deg - start_deg) >= 360.0
    n = sections if closed else max(2, int(sections * abs(stop_deg - start_deg) / 360.0) + 1)
    t = np.radians(np.linspace(start_deg, stop_deg, n, endpoint=not closed))
    s = np.linspace(0.0, 2.0 * math.pi, tube_sections, endpoint=False)
    radial = np.cos(t)[:, None] * u + np.sin(t)[:, None] * v  # (n, 3)
    verts = (c + radius * radial[:, None, :]
             + tube * (np.cos(s)[None, :, None] * radial[:, None, :]
                       + np.sin(s)[None, :, None] * w))
    verts = verts.reshape(-1, 3)
    m = tube_sections
    faces = []
    for i in range(n if closed else n - 1):
        i1 = (i + 1) % n
        for j in range(m):
            j1 = (j + 1) % m
            a, b, c_, d = i * m + j, i1 * m + j, i1 * m + j1, i * m + j1
            faces += [(a, b, c_), (a, c_, d)]
    return Mesh(verts, np.array(faces))


def merge_meshes(meshes) -> Mesh:
    """One mesh of several (faces re-indexed)."""
    meshes = list(meshes)
    if not meshes:
        raise ValueError("merge_meshes: no meshes")
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(np.concatenate([m.vertices for m in meshes]),
                np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]))
