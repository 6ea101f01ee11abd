"""3D figure of a diffraction experiment: beam, sample, mounted unit cell, diffracted beam,
detector; as a matplotlib figure (PDF for the logbook) and as a glTF 2.0 scene.

Lab frame as in :mod:`xrdflow.sweep`: beam along +x, z up. The scene is *schematic*:
directions and angles are true (the sample and unit cell are rotated by the goniometer
solution, the diffracted beam leaves at the true 2theta and azimuth), lengths are not
(the unit cell is scaled to the sample, the detector distance is a few sample sizes).

glTF: written with trimesh (an optional dependency: ``pip install trimesh``) as one
self-contained ``.gltf`` file (JSON with the binary buffer embedded as base64), in metres
with glTF's +Y up (lab z -> glTF +Y, lab x -> glTF +X, lab y -> glTF -Z), so Blender and web
viewers show the vertical axis up. One node per object, named (``incident_beam``,
``diffracted_beam``, ``sample``, ``unit_cell``, ``detector``...), with PBR colours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..options import choice, positive, positive_array

__all__ = ["Scene", "experiment_scene", "plot_experiment_3d", "write_gltf"]

_COLORS = {
    "incident_beam": (0.85, 0.1, 0.1, 1.0),
    "transmitted_beam": (0.85, 0.1, 0.1, 0.35),
    "diffracted_beam": (1.0, 0.55, 0.0, 1.0),
    "scattering_vector": (0.55, 0.2, 0.75, 1.0),
    "rotation_axis": (0.4, 0.4, 0.4, 1.0),
    "unit_cell": (0.1, 0.3, 0.8, 1.0),
    "sample": (0.6, 0.75, 0.9, 0.35),
    "detector": (0.2, 0.2, 0.2, 0.6),
    "lab_x": (0.9, 0.0, 0.0, 1.0),
    "lab_y": (0.0, 0.65, 0.0, 1.0),
    "lab_z": (0.0, 0.0, 0.9, 1.0),
}


@dataclass(frozen=True)
class Segment:
    """A straight rod from ``start`` to ``end`` (scene units: mm)."""

    name: str
    start: np.ndarray
    end: np.ndarray
    radius: float
    color: tuple[float, float, float, float]


@dataclass(frozen=True)
class Box:
    """A box centred at ``center`` with half-extent vectors as the columns of ``half_axes``."""

    name: str
    center: np.ndarray
    half_axes: np.ndarray
    color: tuple[float, float, float, float]


@dataclass(frozen=True)
class Scene:
    """Objects of the 3D experiment scene (lab frame, mm) and a description."""

    segments: tuple[Segment, ...]
    boxes: tuple[Box, ...]
    title: str
    info: dict[str, Any] = field(default_factory=dict)


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def experiment_scene(
    phase: Any,
    *,
    energy_kev: float,
    reflection: str,
    mount: Any,
    stage: str = "omega",
    scattering_plane: str = "vertical",
    goniometer: Any = None,
    surface_normal: Any = None,
    solution: int = 0,
    sample_size_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    distance_mm: float | None = None,
    detector_size_mm: float | None = None,
) -> Scene:
    """The experiment at one energy with ``reflection`` in the Bragg condition.

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen Structure.
    energy_kev
        Photon energy (keV).
    reflection
        Indices of the reflection to bring into the Bragg condition (``"10-11"``).
    mount, stage, scattering_plane, goniometer, surface_normal
        As in :func:`xrdflow.sweep`.
    solution
        Which of the two goniometer solutions (0 or 1).
    sample_size_mm
        Sample extent along the sample's x, y, z axes (lab axes at zero angles).
    distance_mm, detector_size_mm
        Schematic sample-detector distance and detector width; default 6 and 2 sample sizes.

    Raises
    ------
    ValueError
        If no goniometer solution exists for this reflection, energy and stage.

    Examples
    --------
    >>> scene = experiment_scene("Mg", energy_kev=30.0, reflection="10-11",
    ...                          mount={"vertical": "[0001]", "beam": "[2-1-10]"})
    >>> round(scene.info["two_theta_deg"], 3)
    9.667
    """
    from .._phases import load_phase

    size, dist, det = _check_scene_args(solution, sample_size_mm, distance_mm, detector_size_mm)
    structure = load_phase(phase)
    sol = _bragg_solution(structure, energy_kev, reflection, mount, stage, scattering_plane,
                          solution, goniometer, surface_normal)
    big = float(size.max())
    segs = (_beam_segments(sol, dist, big) + _cell_segments(sol, structure, size)
            + _triad_segments(dist, big))
    boxes = _scene_boxes(sol, size, dist, det)
    r, ds = sol.row, sol.ds
    angles = ", ".join(f"{k} {round(v, 3) + 0.0:.3f}°" for k, v in sol.angles.items())
    title = (f"{ds.attrs['phase']} {r.hkl.values} at {float(energy_kev):g} keV: "
             f"2θ {sol.two_theta:.3f}°, {angles} ({ds.attrs['mount']})")
    info = dict(phase=ds.attrs["phase"], reflection=str(r.reflection.values),
                energy_kev=float(energy_kev), two_theta_deg=sol.two_theta,
                **{f"{k}_deg": v for k, v in sol.angles.items()},
                stage=stage, goniometer=ds.attrs.get("goniometer", stage),
                rotation=sol.rot.ravel().tolist(), mount=ds.attrs["mount"],
                mount_U=sol.u.ravel().tolist(), diffracted_direction=sol.kout.tolist(),
                schematic="angles true, lengths schematic (mm scene units)")
    return Scene(tuple(segs), tuple(boxes), title, info)


def _check_scene_args(solution, sample_size_mm, distance_mm, detector_size_mm):
    """(sample size (3,), distance, detector width), mm, validated; defaults 6 and 2 sizes."""
    choice(solution, "solution", (0, 1))
    size = positive_array(sample_size_mm, "sample_size_mm")
    if size.shape != (3,):
        raise ValueError(f"sample_size_mm: must be three positive lengths, got {sample_size_mm!r}")
    big = float(size.max())
    dist = 6.0 * big if distance_mm is None else positive(distance_mm, "distance_mm")
    det = 2.0 * big if detector_size_mm is None else positive(detector_size_mm, "detector_size_mm")
    return size, dist, det


class _Solution(NamedTuple):
    ds: Any  # the one-energy, one-reflection sweep
    row: Any  # ds at that energy and reflection
    angles: dict  # stage angle name -> degrees
    rot: np.ndarray  # stage rotation R
    u: np.ndarray  # mount matrix U
    kout: np.ndarray  # unit diffracted direction
    g_lab: np.ndarray  # the reflection's G in the lab, at the solution
    two_theta: float


def _bragg_solution(structure, energy_kev, reflection, mount, stage, scattering_plane,
                    solution, goniometer=None, surface_normal=None) -> _Solution:
    from .._sweep import sweep

    ds = sweep(structure, energy_kev=[float(energy_kev)], reflections=[reflection], mount=mount,
               stage=stage, scattering_plane=scattering_plane, goniometer=goniometer,
               surface_normal=surface_normal).compute()
    r = ds.isel(energy=0, reflection=0)
    rot = r.rotation[solution].values
    if not np.all(np.isfinite(rot)):
        raise ValueError(
            f"reflection: {reflection} has no {stage} goniometer solution at {energy_kev} keV "
            f"with this mount")
    angles = {name: float(r[name][solution]) for name in ds.attrs["stage_angles"]}
    u = np.asarray(ds.attrs["mount_U"], dtype=float).reshape(3, 3)
    hkl = np.array([int(r.h), int(r.k), int(r.l)], dtype=float)
    g_lab = rot @ u @ (hkl @ structure.lattice.reciprocal_lattice.matrix)
    return _Solution(ds, r, angles, rot, u, r.diffracted_direction[solution].values,
                     g_lab, float(r.two_theta))


def _segment(name: str, a, b, radius: float) -> Segment:
    return Segment(name, np.asarray(a, float), np.asarray(b, float), radius,
                   _COLORS[name.split("#")[0]])


def _beam_segments(sol: _Solution, dist: float, big: float) -> list[Segment]:
    """Beams, scattering vector and rotation axis."""
    rad = 0.02 * big
    return [
        _segment("incident_beam", [-dist, 0, 0], [0, 0, 0], rad),
        _segment("transmitted_beam", [0, 0, 0], [dist, 0, 0], 0.5 * rad),
        _segment("diffracted_beam", [0, 0, 0], dist * sol.kout, rad),
        _segment("scattering_vector", [0, 0, 0], 0.9 * big * _unit(sol.g_lab), 0.6 * rad),
        _segment("rotation_axis", [0, 0, -big], [0, 0, big], 0.3 * rad),
    ]


def _triad_segments(dist: float, big: float) -> list[Segment]:
    """A small lab triad (x, y, z), off to the side."""
    tri = np.array([-0.8 * dist, -1.5 * big, -1.5 * big])
    rad = 0.02 * big
    return [_segment(name, tri, tri + 0.8 * big * np.eye(3)[i], 0.4 * rad)
            for i, name in enumerate(("lab_x", "lab_y", "lab_z"))]


def _cell_segments(sol: _Solution, structure, size: np.ndarray) -> list[Segment]:
    """The 12 edges of the unit cell, rotated as mounted, scaled to 0.8 of the smallest size."""
    rad = 0.02 * float(size.max())
    lat = (sol.rot @ sol.u @ structure.lattice.matrix.T).T  # rows: a, b, c in the lab
    scale = 0.8 * float(size.min()) / np.linalg.norm(lat, axis=1).max()
    a, b, c = lat * scale
    origin = -(a + b + c) / 2.0
    corners = {(i, j, k): origin + i * a + j * b + k * c
               for i in (0, 1) for j in (0, 1) for k in (0, 1)}
    segs = []
    for key, p in corners.items():
        for axis in range(3):
            if key[axis] == 0:
                other = list(key)
                other[axis] = 1
                segs.append(_segment(f"unit_cell#{len(segs)}", p, corners[tuple(other)],
                                     0.25 * rad))
    return segs


def _scene_boxes(sol: _Solution, size: np.ndarray, dist: float, det: float) -> list[Box]:
    """The sample (rotated by the goniometer) and the detector, facing the diffracted beam."""
    big = float(size.max())
    kout = sol.kout
    boxes = [Box("sample", np.zeros(3), sol.rot @ np.diag(size / 2.0), _COLORS["sample"])]
    uvec = np.cross([0.0, 0.0, 1.0], kout)
    if np.linalg.norm(uvec) < 1e-9:
        uvec = np.cross([0.0, 1.0, 0.0], kout)
    uvec = _unit(uvec)
    vvec = _unit(np.cross(kout, uvec))
    boxes.append(Box("detector", dist * kout,
                     np.column_stack([0.01 * big * kout, det / 2 * uvec, det / 2 * vvec]),
                     _COLORS["detector"]))
    return boxes


def _box_faces(box: Box) -> list[np.ndarray]:
    h = box.half_axes
    faces = []
    for axis in range(3):
        o1, o2 = [i for i in range(3) if i != axis]
        for sgn in (-1, 1):
            c = box.center + sgn * h[:, axis]
            faces.append(np.array([c - h[:, o1] - h[:, o2], c + h[:, o1] - h[:, o2],
                                   c + h[:, o1] + h[:, o2], c - h[:, o1] + h[:, o2]]))
    return faces


def plot_experiment_3d(scene: Scene, *, fig=None, elev: float = 22.0, azim: float = -60.0):
    """Draw a :class:`Scene` with matplotlib (3D axes); save with ``fig.savefig("x.pdf")``.

    Examples
    --------
    >>> scene = experiment_scene("Al", energy_kev=20.0, reflection="111",
    ...                          mount={"vertical": "[001]", "beam": "[100]"})
    >>> fig = plot_experiment_3d(scene)
    >>> fig.axes[0].name
    '3d'
    """
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    if fig is None:
        fig = Figure(figsize=(8.0, 6.0), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    labelled = set()
    for seg in scene.segments:
        base = seg.name.split("#")[0]
        label = None if base in labelled or base.startswith("lab_") else base.replace("_", " ")
        labelled.add(base)
        pts = np.array([seg.start, seg.end])
        ax.plot(pts[:, 0], pts[:, 1], pts[:, 2], color=seg.color[:3], alpha=seg.color[3],
                lw=max(0.6, 60 * seg.radius / max(1e-12, _extent(scene))), label=label)
    for name, text in (("lab_x", "x (beam)"), ("lab_y", "y"), ("lab_z", "z (up)")):
        seg = next(s for s in scene.segments if s.name == name)
        ax.text(*seg.end, text, color=seg.color[:3], fontsize=8)
    for box in scene.boxes:
        poly = Poly3DCollection(_box_faces(box), facecolor=box.color[:3], alpha=box.color[3],
                                edgecolor="k", linewidths=0.3)
        ax.add_collection3d(poly)
        ax.text(*(box.center + box.half_axes.sum(axis=1) * 0 + np.array([0, 0, 1.1]) *
                  np.abs(box.half_axes[2]).max()), box.name, fontsize=8)
    pts = np.concatenate([np.array([s.start, s.end]) for s in scene.segments] +
                         [np.concatenate(_box_faces(b)) for b in scene.boxes])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(np.maximum(hi - lo, 1e-9))
    ax.view_init(elev=elev, azim=azim)
    ax.set_xlabel("x, beam (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_zlabel("z, up (mm)")
    ax.set_title(scene.title, fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    return fig


def _extent(scene: Scene) -> float:
    pts = np.array([p for s in scene.segments for p in (s.start, s.end)])
    return float(np.ptp(pts, axis=0).max())


#: lab (x, y, z; z up, mm) -> glTF (X, Y, Z; Y up, metres)
_LAB_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) * 1e-3


def write_gltf(scene: Scene, path: str | Path) -> Path:
    """Write a :class:`Scene` as a self-contained glTF 2.0 file (``.gltf``, buffer embedded).

    Needs trimesh. The file is written atomically.

    Examples
    --------
    >>> import tempfile, pathlib, json
    >>> scene = experiment_scene("Al", energy_kev=20.0, reflection="111",
    ...                          mount={"vertical": "[001]", "beam": "[100]"})
    >>> out = write_gltf(scene, pathlib.Path(tempfile.mkdtemp()) / "exp.gltf")
    >>> json.loads(out.read_text())["asset"]["version"]
    '2.0'
    """
    try:
        import trimesh
        from trimesh.visual import TextureVisuals
        from trimesh.visual.material import PBRMaterial
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("write_gltf needs trimesh: pip install trimesh") from exc
    from ..nexus import atomic_output

    path = Path(path)
    if path.suffix.lower() != ".gltf":
        raise ValueError(f"path: {path} must end in .gltf")

    def material(name, color):
        rgba = [int(round(255 * c)) for c in color]
        return TextureVisuals(material=PBRMaterial(
            name=name, baseColorFactor=rgba, metallicFactor=0.0, roughnessFactor=0.8,
            alphaMode="BLEND" if color[3] < 1 else "OPAQUE", doubleSided=True))

    to_gltf = np.eye(4)
    to_gltf[:3, :3] = _LAB_TO_GLTF
    out = trimesh.Scene()
    for seg in scene.segments:
        if np.linalg.norm(seg.end - seg.start) == 0:
            continue
        mesh = trimesh.creation.cylinder(radius=seg.radius, segment=[seg.start, seg.end],
                                         sections=16)
        mesh.apply_transform(to_gltf)
        mesh.visual = material(seg.name.split("#")[0], seg.color)
        out.add_geometry(mesh, node_name=seg.name.replace("#", "_"),
                         geom_name=seg.name.replace("#", "_"))
    for box in scene.boxes:
        transform = np.eye(4)
        transform[:3, :3] = box.half_axes * 2.0  # unit cube -> box
        transform[:3, 3] = box.center
        mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
        mesh.apply_transform(transform)
        mesh.apply_transform(to_gltf)
        mesh.visual = material(box.name, box.color)
        out.add_geometry(mesh, node_name=box.name, geom_name=box.name)
    files = out.export(file_type="gltf", embed_buffers=True)
    data = files["model.gltf"] if isinstance(files, dict) else files
    with atomic_output(path) as tmp:
        tmp.write_bytes(data if isinstance(data, bytes) else str(data).encode())
    return path
