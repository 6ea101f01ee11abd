"""Build the planner's 3D scene (:class:`~xrdflow.scene.model.Scene`) from a plan.

:func:`build_scene` runs one :func:`xrdflow.plan` (one energy, one reflection, the sample
thickness as ``thickness_mm``) and hands it to :func:`scene_from_plan`, which draws an
existing plan dataset (so an app computes the plan once and redraws it cheaply).

Geometry (lab frame of :func:`xrdflow.sweep`: beam along +x, z up, y = z x x; mm). The
sample is a plate centred on the origin: thickness along the plate normal (the sweep's
surface normal, ``U @ n_crystal`` in the sample frame; default the mount's beam direction,
the sample x), height along the sample z projected normal to the plate normal, width
completing a right-handed frame (width x height = normal); the plate is turned by the
solution's rotation ``R``. The incident beam runs along +x through the origin, diffracts
at the plate's mid-plane (depth t/2, the origin) and leaves along ``k_out``: the drawn path
inside the plate (entry surface -> origin -> exit surface) is the beam's run through the
actual plate box. With ``stage="shortest-path"`` the beam enters and leaves through the two
large faces, so it is ``t/2/cos(entry) + t/2/cos(exit)``, the sweep's ``path_length``; when
the plate is laterally small the beam can leave through a side face instead and the drawn
path is shorter than the sweep's plate model (noted). The fixed stages (omega, omega-chi,
omega-phi) have no ``path_length``: the title and ``info["path_length_mm"]`` give the drawn
path, and a beam running along (or within :data:`GRAZING_DEG` of) the plate's plane is noted
(the path then runs through the plate's side faces, not 1/cos of a grazing angle). The
objective lens (when the plan has one) lies on ``k_out``
from ``d1`` to ``d1 + lens_length`` (distances from the sample centre), the detector at the
sample-detector distance. The crystal inset is ``crystal_nodes`` with rotation ``R @ U``:
the same orientation as the sample, a block :data:`INSET_FRACTION` of the largest sample
size, beside the goniometer circles (up and upstream in the default view) with a leader
line to the plate.

``compact=True`` draws any distance longer than :data:`COMPACT_LIMIT` sample sizes as
:data:`COMPACT_LENGTH` sample sizes (a shortened lens :data:`COMPACT_LENS_LENGTH`), each
gap marked by a break (two strokes, node ``beam_breaks``); the detector plate is then
:data:`DETECTOR_FRACTION` sample sizes and the magnified beam widens only as far as fits on
it. Labels are short (``CRL ×16.7``, ``detector 5 m``, ``2θ 13.36°``; :data:`LABEL_PT`);
the true numbers are in ``Scene.notes`` and ``Scene.info``. ``info["view"]`` is the
default view (matplotlib ``elev``/``azim``): the actual scattering plane's normal
``±(k_in x k_out)`` (the sign putting the eye on the -y side of a near-vertical plane, the
+z side of a near-horizontal one) turned by the small fixed tilt of :data:`VIEWS` (the
views for the exactly vertical and horizontal planes), so the orthographic picture shows 2θ
nearly true whatever the plane (``stage="omega"`` leaves eta free); the renderers use it unless given a
view, and the labels are placed (:class:`_Placer`) so they cover neither each other nor
the drawing as seen from it. No plotting library is imported here.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..options import boolean, choice, positive, positive_array
from .crystal import _check_cells, _crystal_nodes
from .model import (  # view_basis: also importable from here, as before
    Label,
    Lines,
    Material,
    Mesh,
    Node,
    Scene,
    arrow_mesh,
    box_mesh,
    cylinder_mesh,
    ring_mesh,
    view_angles,
    view_basis,
)

__all__ = ["build_scene", "scene_from_plan", "COMPACT_LIMIT", "COMPACT_LENGTH",
           "LENS_RADIUS_FRACTION", "DETECTOR_FRACTION", "INSET_FRACTION", "VIEWS",
           "GRAZING_DEG"]

#: with ``compact=True`` distances longer than this many largest sample sizes are shortened
COMPACT_LIMIT = 4.0
#: ... and drawn this many largest sample sizes long (the incident beam's drawn length too)
COMPACT_LENGTH = 2.0
#: ... except a shortened lens, drawn this many largest sample sizes long
COMPACT_LENS_LENGTH = 1.5
#: drawn radius of the objective lens: this fraction of the largest sample size (at least
#: 1.3 x half the beam's larger side, so the diffracted beam passes inside it)
LENS_RADIUS_FRACTION = 0.15
#: with ``compact=True`` the detector plate's side is this many largest sample sizes (the
#: magnified beam drawn widening only as far as fits on it; ``compact=False``: the whole
#: magnified beam fits on the plate)
DETECTOR_FRACTION = 1.25
#: schematic sample-detector distance without a lens or a distance (largest sample sizes)
SCHEMATIC_DETECTOR = 2.5
#: the crystal inset's block of cells spans this fraction of the largest sample size
INSET_FRACTION = 0.9
#: font size (pt) of the scene's labels, and of the smaller ones (axes, lab triad)
LABEL_PT = 7.5
SMALL_PT = 6.5
#: default view (matplotlib elev/azim, degrees) of an exactly vertical (normal -y) and an
#: exactly horizontal (normal +z) scattering plane: looking along the plane's normal tilted
#: a little (vertical: from a little above and downstream; horizontal: from a little
#: towards -y). Any other plane's view is the same tilt from its own normal.
VIEWS = {"vertical": {"elev": 12.0, "azim": -80.0}, "horizontal": {"elev": 70.0, "azim": -90.0}}
#: a beam within this many degrees of the plate's plane is noted as running along it
GRAZING_DEG = 1.0

_X = np.array([1.0, 0.0, 0.0])
_Y = np.array([0.0, 1.0, 0.0])
_Z = np.array([0.0, 0.0, 1.0])

_GREEK = {"omega": "ω", "chi": "χ", "phi": "φ", "mu": "μ", "theta": "θ", "kappa": "κ",
          "eta": "η", "delta": "δ", "gamma": "γ", "nu": "ν", "alpha": "α", "beta": "β",
          "psi": "ψ", "tau": "τ", "rho": "ρ", "sigma": "σ", "xi": "ξ", "zeta": "ζ"}

_COLORS = {
    "sample": (0.55, 0.72, 0.92, 0.35),
    "beam_in": (0.85, 0.1, 0.1, 0.85),
    "beam_in_sample": (0.85, 0.1, 0.1, 1.0),
    "beam_out_sample": (1.0, 0.55, 0.0, 1.0),
    "beam_transmitted": (0.85, 0.1, 0.1, 0.2),
    "beam_diffracted": (1.0, 0.55, 0.0, 0.8),
    "beam_magnified": (1.0, 0.55, 0.0, 0.3),
    "k_in": (0.65, 0.05, 0.05, 1.0),
    "k_out": (0.9, 0.45, 0.0, 1.0),
    "G": (0.55, 0.2, 0.75, 1.0),
    "goniometer": (0.45, 0.45, 0.5, 1.0),
    "goniometer_axis": (0.45, 0.45, 0.5, 0.6),
    "lens": (0.72, 0.74, 0.8, 0.65),
    "detector": (0.2, 0.2, 0.22, 0.85),
    "lab_x": (0.9, 0.0, 0.0, 1.0),
    "lab_y": (0.0, 0.65, 0.0, 1.0),
    "lab_z": (0.0, 0.0, 0.9, 1.0),
    "label": (0.1, 0.1, 0.1, 1.0),
    "leader": (0.3, 0.3, 0.3, 1.0),
}


def _material(kind: str) -> Material:
    return Material(kind, _COLORS[kind])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------- validation
def _check_args(solution, sample_size_mm, beam_size_mm, detector_distance_mm, compact,
                bonds, polyhedra, cells):
    """Validate once: (solution, size, beam, detector distance, cells)."""
    if isinstance(solution, (bool, np.bool_)) or not isinstance(solution, (int, np.integer)):
        raise ValueError(f"solution: must be 0 or 1, got {solution!r}")
    choice(int(solution), "solution", (0, 1))
    size = positive_array(sample_size_mm, "sample_size_mm")
    if size.shape != (3,):
        raise ValueError(f"sample_size_mm: must be three positive lengths (width, height, "
                         f"thickness), got {sample_size_mm!r}")
    beam = positive_array(beam_size_mm, "beam_size_mm")
    if beam.shape != (2,):
        raise ValueError(f"beam_size_mm: must be two positive lengths (horizontal width, "
                         f"vertical height), got {beam_size_mm!r}")
    det = None if detector_distance_mm is None else positive(detector_distance_mm,
                                                             "detector_distance_mm")
    boolean(compact, "compact")
    boolean(bonds, "bonds")
    boolean(polyhedra, "polyhedra")
    return int(solution), size, beam, det, _check_cells(cells)


# -------------------------------------------------------------------------- public API
def build_scene(phase: Any, *, energy_kev: float, reflection: Any, mount: Any,
                stage: str = "shortest-path", goniometer: Any = None,
                scattering_plane: str = "vertical", surface_normal: Any = None,
                solution: int = 0, sample_size_mm=(1.0, 1.0, 0.2), beam_size_mm=(0.5, 0.1),
                lens: Any = None, lens_distance_mm: float | None = None,
                lens_magnification: float | None = None,
                detector_distance_mm: float | None = None, density: float | None = None,
                compact: bool = True, cells=(1, 1, 1), bonds: bool = True,
                polyhedra: bool = False) -> Scene:
    """The 3D scene of one planned experiment (lab frame, mm).

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen Structure. A CIF is parsed once: the
        plan and the drawing share the Structure (its ``b_iso`` site property carries the
        CIF's Debye-Waller factors; the plan's ``phase_reference`` still names the file).
    energy_kev
        Photon energy (keV), one value.
    reflection
        The reflection brought into the Bragg condition (``"111"``, ``"1 0 -1 1"``,
        ``(1, 1, 1)``): that exact member, not its family representative.
    mount, stage, goniometer, scattering_plane, surface_normal, density
        As in :func:`xrdflow.sweep` (``goniometer`` and ``surface_normal`` with
        ``stage="shortest-path"`` only).
    solution
        Which of the two orientation solutions (0 or 1).
    sample_size_mm
        ``(width, height, thickness)`` of the plate (mm); the thickness is the plan's
        ``thickness_mm`` (path length, transmission).
    beam_size_mm
        Incident beam cross-section ``(horizontal width along y, vertical height along z)``
        (mm).
    lens, lens_distance_mm, lens_magnification
        The objective lens and its imaging condition, as in :func:`xrdflow.sweep`; with a
        lens and neither condition, ``detector_distance_mm`` is the lens' sample-detector
        distance.
    detector_distance_mm
        Sample-detector distance (mm) without a lens; default a schematic distance
        (labelled as not to scale).
    compact
        Shorten distances longer than :data:`COMPACT_LIMIT` x the largest sample size (the
        labels and ``Scene.notes`` state the true distances); False: true distances.
    cells, bonds, polyhedra
        The crystal inset, as in :func:`xrdflow.scene.crystal_nodes`.

    Raises
    ------
    ValueError
        Naming the parameter: a bad ``solution``, ``sample_size_mm``, ``beam_size_mm``...,
        or ``reflection`` when it has no solution (or is forbidden) at this energy.

    Examples
    --------
    >>> scene = build_scene("Si", energy_kev=17.0, reflection="111",
    ...                     mount={"vertical": "(111)"}, goniometer="dfxrm")
    >>> round(scene.info["two_theta_deg"], 2), scene.node("sample").group
    (13.36, 'sample')
    """
    from .._phases import BUILTIN_PHASES, load_phase, phase_reference
    from .._plan import plan

    checked = _check_args(solution, sample_size_mm, beam_size_mm, detector_distance_mm,
                          compact, bonds, polyhedra, cells)
    size, det = checked[1], checked[3]
    if np.ndim(energy_kev) > 0 and np.size(energy_kev) != 1:
        raise ValueError(f"energy_kev: build_scene takes one energy, got {energy_kev!r}")
    if lens is not None and lens_distance_mm is None and lens_magnification is None:
        if det is None:
            raise ValueError("lens_distance_mm, lens_magnification: give one of them (or "
                             "detector_distance_mm) with a lens")
        lens_distance_mm = det
    kwargs: dict[str, Any] = dict(thickness_mm=float(size[2]), scattering_plane=scattering_plane,
                                  density=density)
    if goniometer is not None:
        kwargs["goniometer"] = goniometer
    if surface_normal is not None:
        kwargs["surface_normal"] = surface_normal
    if lens is not None:
        kwargs.update(lens=lens, lens_distance_mm=lens_distance_mm,
                      lens_magnification=lens_magnification)
    elif lens_distance_mm is not None or lens_magnification is not None:
        raise ValueError("lens_distance_mm, lens_magnification: need lens")
    energy = float(np.ravel(energy_kev)[0]) if np.ndim(energy_kev) else energy_kev
    # parse a CIF once (~1 s each): the plan and the drawing share the Structure (its site
    # property b_iso keeps the CIF's Debye-Waller factors); a built-in name stays a name
    builtin = isinstance(phase, str) and phase in BUILTIN_PHASES
    structure = load_phase(phase)
    if not builtin:
        kwargs.setdefault("name", structure.composition.reduced_formula)
    ds = plan(phase if builtin else structure, energy_kev=energy, reflection=reflection,
              mount=mount, stage=stage, **kwargs).compute()
    if not builtin:
        ds.attrs["phase_reference"] = phase_reference(phase)  # "CIF file ...", as for a path
    return _scene(ds, structure, None, checked, bool(compact), bool(bonds), bool(polyhedra),
                  goniometer)


def scene_from_plan(ds, phase: Any, reflection: Any = None, solution: int = 0, *,
                    sample_size_mm=(1.0, 1.0, 0.2), beam_size_mm=(0.5, 0.1),
                    detector_distance_mm: float | None = None, compact: bool = True,
                    cells=(1, 1, 1), bonds: bool = True, polyhedra: bool = False,
                    goniometer: Any = None) -> Scene:
    """The 3D scene of an existing plan (:func:`xrdflow.plan` / :func:`xrdflow.sweep` with
    a mount, one energy).

    Parameters
    ----------
    ds
        The plan dataset (one energy; lazy or computed).
    phase
        The plan's phase (name, CIF path or pymatgen Structure, e.g. one parsed once with
        :func:`xrdflow._phases.load_phase`): the crystal inset's structure. Its lattice and
        composition must be the plan's (``lattice_abc_angstrom``, ``composition``).
    reflection
        Which reflection of ``ds`` (label ``"Si 111"``, indices ``"111"`` / ``(1, 1, 1)``);
        ``None``: the plan's only reflection.
    solution
        0 or 1.
    sample_size_mm, beam_size_mm, detector_distance_mm, compact, cells, bonds, polyhedra
        As in :func:`build_scene`. With a lens in the plan the detector is at the lens'
        ``total_distance_mm`` unless ``detector_distance_mm`` is given (then noted).
    goniometer
        The stage's goniometer (a :class:`xrdflow._goniometer.Goniometer` or preset name):
        its axes are drawn exactly (:func:`build_scene` passes its own); default: read
        back from the plan's ``goniometer`` attribute (a plan loaded from a file).

    Returns
    -------
    Scene
        Nodes, title, ``info`` (see the module docstring of :mod:`xrdflow.scene` and the
        report), ``legend`` (elements of the inset) and ``notes``.
    """
    from .._phases import load_phase

    checked = _check_args(solution, sample_size_mm, beam_size_mm, detector_distance_mm,
                          compact, bonds, polyhedra, cells)
    return _scene(ds, load_phase(phase), reflection, checked, bool(compact), bool(bonds),
                  bool(polyhedra), goniometer)


def _scene(ds, structure, reflection, checked, compact: bool, bonds: bool, polyhedra: bool,
           goniometer) -> Scene:
    """scene_from_plan after validation (``checked``: :func:`_check_args`'s result)."""
    solution, size, beam, det, cells = checked
    if "rotation" not in ds or "mount_U" not in ds.attrs:
        raise ValueError("ds: the plan has no orientation (plan it with a mount)")
    if ds.sizes.get("energy", 1) != 1:
        raise ValueError(f"ds: a scene shows one energy, the plan has {ds.sizes['energy']}")
    _check_phase(ds, structure)
    index = _reflection_index(ds, reflection)
    row = ds.isel(energy=0, reflection=index)
    row = _thickness_row(row, float(size[2]))
    row = row.compute()
    label = str(row.reflection.values)
    rot = np.asarray(row.rotation.values[solution], dtype=float)
    angles = [float(row[n].values[solution]) for n in ds.attrs.get("stage_angles", [])]
    if not np.all(np.isfinite(rot)) or not np.all(np.isfinite(angles)):
        raise ValueError(
            f"reflection: {label} has no {ds.attrs.get('stage', '')} solution {solution} at "
            f"{float(row.energy):g} keV with the mount {ds.attrs.get('mount', '')} "
            f"(no Bragg angle, no transmission through the plate, or the goniometer cannot "
            f"reach the orientation)")
    geo = _Geometry(ds, row, structure, solution, rot, size, beam)
    return geo.scene(det, compact, cells, bonds, polyhedra, goniometer)


def _check_phase(ds, structure) -> None:
    """The phase drawn must be the plan's: same lattice (a, b, c) and composition as the
    plan's attributes (when it has them)."""
    a = ds.attrs
    problems = []
    comp = a.get("composition")
    if comp is not None and str(comp) != structure.composition.reduced_formula:
        problems.append(f"composition {structure.composition.reduced_formula}, the plan's {comp}")
    abc = a.get("lattice_abc_angstrom")
    if abc is not None:
        try:
            want = np.array([float(v) for v in str(abc).split(",")])
        except ValueError:
            want = None
        have = np.asarray(structure.lattice.abc, dtype=float)
        if want is not None and (want.shape != (3,) or not np.allclose(have, want, rtol=1e-5,
                                                                        atol=1e-5)):
            problems.append(f"lattice a, b, c {', '.join(f'{v:.6f}' for v in have)} A, the "
                            f"plan's {abc} A")
    if problems:
        raise ValueError(f"phase: {structure.composition.reduced_formula} is not the plan's "
                         f"phase {a.get('phase', '')!r} ({'; '.join(problems)}); pass the "
                         f"phase the plan was computed with")


# ------------------------------------------------------------------------------ helpers
def _reflection_index(ds, reflection) -> int:
    labels = [str(v) for v in ds.reflection.values]
    if reflection is None:
        if len(labels) != 1:
            raise ValueError(f"reflection: the plan has {len(labels)} reflections "
                             f"({', '.join(labels)}), choose one")
        return 0
    if isinstance(reflection, str):
        text = reflection.strip()
        for i, lab in enumerate(labels):
            if text == lab or text == str(ds.hkl.values[i]) or text == lab.split(" ", 1)[-1]:
                return i
    from .._lattice import parse_indices, three_indices

    try:
        kind, idx = parse_indices(reflection)
        want = three_indices(kind, idx, reflection).astype(int)
    except (ValueError, TypeError):
        raise ValueError(f"reflection: cannot read {reflection!r} as indices") from None
    hkl = np.stack([ds.h.values, ds.k.values, ds.l.values], axis=1)
    hit = np.flatnonzero(np.all(hkl == want, axis=1))
    if not len(hit):
        raise ValueError(f"reflection: {reflection!r} is not in the plan ({', '.join(labels)})")
    return int(hit[0])


def _thickness_row(row, t: float):
    """The row at the plate thickness: the nearest of a thickness dimension; a scalar
    thickness must be the plate's."""
    if "thickness" in row.dims:
        row = row.sel(thickness=t, method="nearest")
    if "thickness" in row.coords:
        tp = float(row.thickness)
        if not math.isclose(tp, t, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"sample_size_mm: thickness {t:g} mm differs from the plan's "
                             f"thickness_mm {tp:g} (plan again with the plate's thickness)")
    return row


_AXIS_RE = re.compile(r"([A-Za-z_]\w*) about (-?)\(([^)]*)\)")


def _stage_axes(ds, goniometer=None) -> list[tuple[str, np.ndarray]]:
    """(name, signed unit vector at zero angles) of every stage axis, outermost first."""
    names = list(ds.attrs.get("stage_angles", []))
    stage = ds.attrs.get("stage", "omega")
    if goniometer is not None:
        from .._goniometer import as_goniometer

        g = as_goniometer(goniometer)
        axes = [(a.name, a.vector) for a in g.axes]
    elif stage == "shortest-path":
        found = _AXIS_RE.findall(str(ds.attrs.get("goniometer", "")))
        axes = [(n, (-1.0 if s else 1.0) * _unit([float(v) for v in vec.split(",")]))
                for n, s, vec in found]
    else:
        fixed = {"omega": _Z, "chi": _X, "phi": _Y}
        axes = [(n, fixed[n]) for n in names if n in fixed]
    if [a[0] for a in axes] != names:
        raise ValueError(f"goniometer: cannot read the stage axes of the plan (angles "
                         f"{names}); pass goniometer=")
    return axes


def _exit_distance(axes: np.ndarray, halves: np.ndarray, direction: np.ndarray) -> float:
    """Distance from the centre of a box (unit axes as columns, half sizes) to its surface
    along the unit ``direction``."""
    c = np.abs(axes.T @ direction)
    with np.errstate(divide="ignore"):
        return float(np.min(np.where(c > 1e-15, halves / c, np.inf)))


def _beam_box(start, end, width_dir, width: float, height: float) -> Mesh:
    """A beam of rectangular cross-section (``width`` along the part of ``width_dir``
    normal to the beam, ``height`` normal to both) from ``start`` to ``end``."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    d = end - start
    k = _unit(d)
    u = np.asarray(width_dir, float) - (np.asarray(width_dir, float) @ k) * k
    u = _unit(u) if np.linalg.norm(u) > 1e-9 else _unit(np.cross(k, _X if abs(k[0]) < 0.9 else _Y))
    v = np.cross(k, u)
    return box_mesh(0.5 * (start + end), np.column_stack([0.5 * d, 0.5 * width * u,
                                                         0.5 * height * v]))


def _symbol(name: str) -> str:
    return _GREEK.get(name.lower(), name)


def _fmt(v: float, digits: int = 2) -> str:
    return f"{round(float(v), digits) + 0.0:.{digits}f}"


def _mm(v: float) -> str:
    """A length for a label: 4 significant digits, no exponent for ordinary sizes."""
    return f"{float(v):.4g}" if abs(v) >= 1e-3 else f"{float(v):.3g}"


def _short(v: float) -> str:
    """A distance for a short in-scene label: ``5 m``, ``209 mm``, ``0.5 mm``."""
    v = float(v)
    return f"{v / 1000.0:.3g} m" if abs(v) >= 1000.0 else f"{v:.3g} mm"


def _rotation_between(a, b) -> np.ndarray:
    """The smallest rotation taking the unit vector ``a`` to the unit vector ``b``
    (``a @ b > -1``)."""
    a, b = _unit(a), _unit(b)
    v, c = np.cross(a, b), float(a @ b)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def scattering_view(k_out) -> tuple[dict[str, float], np.ndarray]:
    """The default view (elev/azim) for a diffracted direction ``k_out`` (beam along +x)
    and the scattering plane's unit normal it looks along (before the tilt).

    The normal ``±(x × k_out)`` is signed towards -y for a plane nearer vertical, towards
    +z for one nearer horizontal; the eye is that plane's :data:`VIEWS` eye turned by the
    smallest rotation taking the lab plane's normal (-y or +z) to the actual normal, so it
    lies the same small tilt from the normal whatever the plane. A tilted plane nearer
    horizontal whose eye would then be on the +y side (the beam running right to left on
    the screen) is seen from the -y side of its normal instead.
    """
    k = _unit(k_out)
    side = np.cross(_X, k)
    side = _unit(side) if np.linalg.norm(side) > 1e-9 else _Y.copy()
    plane = "vertical" if abs(side @ _Y) >= abs(side @ _Z) else "horizontal"
    for plane in dict.fromkeys((plane, "vertical")):
        ref = -_Y if plane == "vertical" else _Z
        normal = side if side @ ref >= 0 else -side
        eye = _rotation_between(ref, normal) @ view_basis(**VIEWS[plane])[0]
        if eye[1] <= 1e-9:  # from the -y side: the beam runs left to right on the screen
            break
    return view_angles(eye, VIEWS[plane]["azim"]), normal


class _Placer:
    """Puts labels where they cover the least drawing and no other label, as seen in the
    default view: each label has candidate positions (best first); its cost is the weight
    of the drawn points under its text box, a large penalty for touching a placed label,
    and a small one for a less preferred candidate."""

    def __init__(self, right, up, mm_per_pt):
        self.basis = np.stack([right, up])  # (2, 3): lab -> screen (mm)
        self.mmpp = mm_per_pt
        self.pts = np.zeros((0, 2))  # the drawing's points on the screen (mm) ...
        self.w = np.zeros(0)  # ... and their weights
        self.boxes: list[tuple[float, float, float, float]] = []

    def screen(self, p) -> np.ndarray:
        return np.asarray(p, float) @ self.basis.T

    def half_size(self, text: str, pt: float) -> tuple[float, float]:
        return (0.5 * (0.62 * len(text) + 0.8) * pt * self.mmpp, 0.5 * 1.5 * pt * self.mmpp)

    def place(self, text: str, pt: float, candidates) -> np.ndarray:
        hw, hh = self.half_size(text, pt)
        extra = np.array([c[1] if isinstance(c, tuple) else 0.0 for c in candidates])
        cands = np.array([c[0] if isinstance(c, tuple) else c for c in candidates],
                         float).reshape(-1, 3)
        qs = self.screen(cands)
        near = ((self.pts[:, 0] > qs[:, 0].min() - hw) & (self.pts[:, 0] < qs[:, 0].max() + hw)
                & (self.pts[:, 1] > qs[:, 1].min() - hh) & (self.pts[:, 1] < qs[:, 1].max() + hh))
        pts, w = self.pts[near], self.w[near]
        best, best_cost = None, math.inf
        for i, (c, q) in enumerate(zip(cands, qs)):
            inside = (np.abs(pts[:, 0] - q[0]) < hw) & (np.abs(pts[:, 1] - q[1]) < hh)
            cost = float(w[inside].sum()) + 0.05 * i + float(extra[i])
            for bx, by, bw, bh in self.boxes:
                ox = bw + hw - abs(q[0] - bx)
                oy = bh + hh - abs(q[1] - by)
                if ox > 0 and oy > 0:
                    cost += 50.0 + 50.0 * min(ox / hw, oy / hh)
            if cost < best_cost:
                best, best_cost = np.asarray(c, float), cost
        q = self.screen(best)
        self.boxes.append((float(q[0]), float(q[1]), hw, hh))
        return best

    def around(self, anchor, half, text: str, pt: float, order=("below", "above", "right",
                                                               "left", "br", "bl", "ar", "al"),
               gap: float = 0.0):
        """Candidate label centres beside a screen box ``half`` = (hx, hy) mm at ``anchor``."""
        hw, hh = self.half_size(text, pt)
        hx, hy = half
        g = gap + 1.5 * self.mmpp
        r, u = self.basis
        dirs = {"below": (0, -1), "above": (0, 1), "right": (1, 0), "left": (-1, 0),
                "br": (1, -1), "bl": (-1, -1), "ar": (1, 1), "al": (-1, 1)}
        out = []
        for key in order:
            dx, dy = dirs[key]
            out.append(np.asarray(anchor, float) + dx * (hx + hw + g) * r
                       + dy * (hy + hh + g) * u)
        return out


def nodes_info(nodes, name: str) -> dict:
    """The ``info`` of the node called ``name`` in a list of nodes."""
    return next(n.info for n in nodes if n.name == name)


def _edge_points(mesh: Mesh, step: float, limit: int = 40) -> np.ndarray:
    """Points along every triangle edge of ``mesh`` at most ``step`` apart, and spread over
    its larger faces (for the label placer: a wide beam box is more than its 8 corners)."""
    t = mesh.vertices[mesh.faces]  # (m, 3, 3)
    a = t.reshape(-1, 3)
    b = t[:, [1, 2, 0]].reshape(-1, 3)
    n = np.clip(np.ceil(np.linalg.norm(b - a, axis=1) / step).astype(int), 1, limit)
    idx = np.repeat(np.arange(len(a)), n)
    frac = (np.arange(len(idx)) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    edges = a[idx] + frac[:, None] * (b[idx] - a[idx])
    area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    k = np.clip((area / step ** 2).astype(int), 0, 400)
    if not k.sum():
        return edges
    f = np.repeat(np.arange(len(t)), k)
    uv = np.random.default_rng(0).random((len(f), 2))
    flip = uv.sum(axis=1) > 1.0
    uv[flip] = 1.0 - uv[flip]
    tf = t[f]
    inner = tf[:, 0] + uv[:, :1] * (tf[:, 1] - tf[:, 0]) + uv[:, 1:] * (tf[:, 2] - tf[:, 0])
    return np.concatenate([edges, inner])


class _Geometry:
    """Every vector of the scene for one plan row and solution (lab, mm)."""

    def __init__(self, ds, row, structure, solution, rot, size, beam):
        self.ds, self.row, self.structure, self.sol = ds, row, structure, solution
        self.rot = rot
        self.size, self.beam = size, beam
        self.big = float(size.max())
        self.u = np.asarray(ds.attrs["mount_U"], dtype=float).reshape(3, 3)
        self.hkl = np.array([int(row.h), int(row.k), int(row.l)])
        g_cart = self.hkl.astype(float) @ structure.lattice.reciprocal_lattice.matrix
        self.g_lab = rot @ self.u @ g_cart
        self.k_out = _unit(np.asarray(row.diffracted_direction.values[solution], dtype=float))
        self.wavelength = float(row.wavelength)
        self.k = 2.0 * math.pi / self.wavelength
        self.two_theta = float(row.two_theta)
        g_geo = self.k * (self.k_out - _X)
        resid = float(np.linalg.norm(g_geo - self.g_lab) / np.linalg.norm(self.g_lab))
        if not resid < 1e-6:
            raise RuntimeError(f"scene: k_out - k_in differs from R U G_hkl by {resid:.3g} "
                               f"(relative): the plan is inconsistent")
        self.laue_residual = resid
        # the plate: sample-frame axes (width, height, normal) at zero angles, then rotated
        n0 = _unit(ds.attrs.get("surface_normal_lab_at_zero", [1.0, 0.0, 0.0]))
        h0 = _Z - (_Z @ n0) * n0
        if np.linalg.norm(h0) < 1e-9:  # the plate lies flat: height along the sample x
            h0 = _X - (_X @ n0) * n0
        h0 = _unit(h0)
        w0 = np.cross(h0, n0)
        self.plate0 = np.column_stack([w0, h0, n0])
        self.plate = rot @ self.plate0  # lab columns: width, height, normal
        self.halves = 0.5 * size
        self.l_in = _exit_distance(self.plate, self.halves, -_X)
        self.l_out = _exit_distance(self.plate, self.halves, self.k_out)
        self.l_through = _exit_distance(self.plate, self.halves, _X)
        self.path_drawn = self.l_in + self.l_out
        normal = self.plate[:, 2]
        self.entry_deg = math.degrees(math.acos(min(1.0, abs(float(normal @ _X)))))
        self.exit_deg = math.degrees(math.acos(min(1.0, abs(float(normal @ self.k_out)))))
        t = float(size[2])
        self.notes: list[str] = []
        self.path_model: float | None = None  # the sweep's plate-path model, if it has one
        if "path_length" in row:
            self.path_model = float(row.path_length.values[solution])
        elif "path_factor" in row:
            self.path_model = float(row.path_factor.values[solution]) * t
        # the path shown: the sweep's where it has one, else the drawn path (fixed stages)
        self.path_sweep = self.path_drawn if self.path_model is None else self.path_model
        grazing = [f"{what} {90.0 - deg:.3g}° from the plate's plane"
                   for what, deg in (("incident beam", self.entry_deg),
                                     ("diffracted beam", self.exit_deg))
                   if 90.0 - deg < GRAZING_DEG]
        self.grazing = bool(grazing)
        if grazing:
            self.notes.append(f"the beam runs along the plate ({', '.join(grazing)}): the "
                              f"path through the plate, {self.path_drawn:.4g} mm, goes "
                              f"through its side faces (set by the width and height)")
        elif self.path_model is None:
            planar = [0.5 * t / max(abs(float(normal @ d)), 1e-300) for d in (_X, self.k_out)]
            if not math.isclose(self.path_drawn, sum(planar), rel_tol=1e-6):
                self.notes.append(f"the beam leaves the plate through a side face: path "
                                  f"{self.path_drawn:.4g} mm (through the two large faces it "
                                  f"would be {sum(planar):.4g} mm)")
        self.angles = {n: float(row[n].values[solution]) for n in ds.attrs["stage_angles"]}
        side = np.cross(_X, self.k_out)
        self.side = _unit(side) if np.linalg.norm(side) > 1e-9 else _Y.copy()
        self.up = _unit(np.cross(self.side, self.k_out))  # in the scattering plane, normal to k_out
        self.half_diag = 0.5 * float(np.linalg.norm(size))
        # the default view: along the scattering plane's normal, a small fixed tilt off it
        self.view, self.plane_normal = scattering_view(self.k_out)
        self.eye, self.right, self.screen_up = view_basis(self.view["elev"], self.view["azim"])
        # label node -> its candidate positions (best first): a list, or a callable
        # (placer, text, pt) -> list, evaluated when the picture's scale is known
        self.candidates: dict[str, Any] = {}

    # ------------------------------------------------------------------ distances
    def _drawn(self, true_mm: float, what: str, compact: bool,
               length: float = COMPACT_LENGTH) -> tuple[float, bool]:
        if compact and true_mm > COMPACT_LIMIT * self.big:
            drawn = length * self.big
            self.shortened.append(f"{what} {_mm(true_mm)} mm drawn {_mm(drawn)} mm")
            return drawn, True
        return true_mm, False

    def _lens(self) -> dict[str, float] | None:
        row = self.row
        if "d1_mm" not in row:
            return None
        vals = {k: float(row[k]) for k in ("d1_mm", "lens_length_mm", "d2_mm",
                                             "total_distance_mm", "magnification",
                                             "focal_length_mm") if k in row}
        if not all(math.isfinite(v) for v in vals.values()):
            self.notes.append("lens: no imaging solution at this energy; lens not drawn")
            return None
        return vals

    # -------------------------------------------------------------------- the scene
    def scene(self, det, compact, cells, bonds, polyhedra, goniometer) -> Scene:
        nodes: list[Node] = []
        big = self.big
        lens = self._lens()
        info_lens: dict[str, Any] = {}
        self.compact = compact
        self.shortened: list[str] = []
        self.breaks: list[float] = []  # distances along k_out of the shortened gaps' middles
        # the layout along k_out (distances from the sample centre): true and drawn
        if lens is not None:
            d1, ll, d2 = lens["d1_mm"], lens["lens_length_mm"], lens["d2_mm"]
            total = lens["total_distance_mm"]
            if det is not None and not math.isclose(det, total, rel_tol=1e-6):
                if det <= d1 + ll:
                    raise ValueError(f"detector_distance_mm: {det:g} mm is not behind the lens "
                                     f"(it ends at {d1 + ll:.4g} mm)")
                self.notes.append(f"detector at detector_distance_mm = {_mm(det)} mm, not at "
                                  f"the lens' image distance {_mm(total)} mm")
                d2, total = det - d1 - ll, det
            d1_d, s1 = self._drawn(d1, "d1", compact)
            ll_d, s2 = self._drawn(ll, "lens", compact, COMPACT_LENS_LENGTH)
            d2_d, s3 = self._drawn(d2, "d2", compact)
            det_true, det_drawn, det_short = total, d1_d + ll_d + d2_d, s1 or s2 or s3
            if s1:
                self.breaks.append(max(d1_d - 0.15 * big, 0.5 * (self.l_out + d1_d)))
            if s3:
                self.breaks.append(d1_d + ll_d + 0.5 * d2_d)
            if det_short:
                self.notes.append(f"shortened (not to scale): {', '.join(self.shortened)}; "
                                  f"detector {_mm(total)} mm from the sample drawn at "
                                  f"{_mm(det_drawn)} mm")
            info_lens = dict(lens=str(self.ds.attrs.get("lens", "")), **lens,
                             drawn_d1_mm=d1_d, drawn_lens_length_mm=ll_d, drawn_d2_mm=d2_d)
        elif det is not None:
            det_true = det
            det_drawn, det_short = self._drawn(det, "sample-detector distance", compact)
            if det_short:
                self.notes.append(f"shortened (not to scale): {self.shortened[0]}")
                self.breaks.append(max(det_drawn - 0.3 * big, 0.5 * (self.l_out + det_drawn)))
        else:
            det_true = None
            det_drawn, det_short = SCHEMATIC_DETECTOR * big, False
            self.notes.append(f"no lens and no detector_distance_mm: detector drawn at a "
                              f"schematic {_mm(det_drawn)} mm (not to scale)")
        nodes += self._sample_nodes()
        nodes += self._beam_nodes(det_drawn, lens, info_lens)
        det_nodes = self._detector_nodes(det_drawn, det_true, det_short, lens)
        if lens is not None:
            nodes += self._lens_nodes(lens, info_lens)
            lens_end = (info_lens["drawn_d1_mm"] + info_lens["drawn_lens_length_mm"]) * self.k_out
            nodes.append(self._magnified_node(lens_end, det_drawn * self.k_out,
                                              lens["magnification"],
                                              det_nodes[0].info["side_mm"]))
        nodes += det_nodes
        if self.breaks:
            nodes.append(self._break_node())
        nodes += self._vector_nodes()
        rings, ring_max = self._goniometer_nodes(goniometer)
        nodes += rings
        inset, legend, inset_info = self._inset_nodes(ring_max, cells, bonds, polyhedra)
        nodes += inset
        nodes += self._axes_nodes(nodes)
        nodes = self._place_labels(nodes)
        names = [n.name for n in nodes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:  # pragma: no cover - the names are distinct by construction
            raise RuntimeError(f"scene: duplicate node names {sorted(dup)}")
        info = self._info(det_true, det_drawn, compact, info_lens, inset_info)
        info["view"] = dict(self.view)
        info["label_mm_per_pt"] = self.mm_per_pt  # the placer's picture scale
        return Scene(tuple(nodes), self._title(), info, tuple(legend), tuple(self.notes))

    # --------------------------------------------------------------- label placement
    _WEIGHTS = {"beam": 1.0, "goniometer": 2.0, "crystal": 1.0, "sample": 1.0, "lens": 1.0,
                "detector": 1.0, "vectors": 0.6, "labels": 0.6, "axes": 1.0}

    def _place_labels(self, nodes: list[Node]) -> list[Node]:
        """Move every label with candidates (``self.candidates``) to its best place in the
        default view (see :class:`_Placer`); the others stay and are avoided."""
        from dataclasses import replace

        drawn = [n for n in nodes if n.label is None]
        step = 0.04 * self.big
        pts, weights = [], []
        for n in drawn:
            if n.mesh is not None:
                p = (n.mesh.vertices if len(n.mesh.faces) > 200  # dense already
                     else _edge_points(n.mesh, step))
            else:
                seg = n.lines.points
                f = np.linspace(0.0, 1.0, 9)
                p = (seg[:, None, 0, :] + f[None, :, None] * (seg[:, None, 1, :]
                                                              - seg[:, None, 0, :])).reshape(-1, 3)
            if len(p) > 1500:
                p = p[:: int(math.ceil(len(p) / 1500))]
            pts.append(p)
            weights.append(np.full(len(p), self._WEIGHTS.get(n.group, 1.0)))
        placer = _Placer(self.right, self.screen_up, 1.0)
        placer.pts = placer.screen(np.concatenate(pts))
        placer.w = np.concatenate(weights)
        span = np.ptp(placer.pts, axis=0)
        # the picture's scale: ~6.6 x 5 in of drawing in the default 7 x 6 in figure
        placer.mmpp = self.mm_per_pt = max(float(span[0]) / 475.0, float(span[1]) / 360.0, 1e-9)
        by_name = {n.name: i for i, n in enumerate(nodes)}
        for n in nodes:  # fixed labels: avoided by the others
            if n.label is not None and n.name not in self.candidates:
                hw, hh = placer.half_size(n.label.text, n.label.size)
                c = placer.screen(n.label.position)
                placer.boxes.append((float(c[0]), float(c[1]), hw, hh))
        out = list(nodes)
        # the circles' labels first (each has one circle to sit on), then the rest in order
        order = sorted(self.candidates, key=lambda k: not k.startswith("goniometer_"))
        for name in order:
            make = self.candidates[name]
            i = by_name[name]
            lab = nodes[i].label
            cands = make(placer, lab.text, lab.size) if callable(make) else make
            pos = placer.place(lab.text, lab.size, cands)
            out[i] = replace(nodes[i], label=Label(pos, lab.text, lab.size))
            if name == "sample_label":
                out += self._sample_leader(placer, pos, lab)
        return out

    def _sample_leader(self, placer, pos, lab) -> list[Node]:
        """A thin line from the sample's label to the plate when the label sits out beyond
        the goniometer circles."""
        q = placer.screen(pos)
        dist = float(np.hypot(*q))
        if dist < self.r_max:
            return []
        hw, hh = placer.half_size(lab.text, lab.size)
        u = -q / dist  # towards the sample, on the screen
        step = min(hw / max(abs(u[0]), 1e-9), hh / max(abs(u[1]), 1e-9))
        d3 = u[0] * self.right + u[1] * self.screen_up
        start = pos + step * d3
        edge = _exit_distance(self.plate, self.halves, -d3)
        end = -edge * d3
        return [Node("sample_leader", "sample", _material("leader"),
                     lines=Lines(np.array([[start, end]]), width=0.6))]

    def _half_screen(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Centre (3,) and screen half extents (hx, hy) mm of ``points`` in the default view."""
        p = np.asarray(points, float).reshape(-1, 3)
        qx, qy = p @ self.right, p @ self.screen_up
        c = (0.5 * (qx.max() + qx.min()) * self.right + 0.5 * (qy.max() + qy.min()) * self.screen_up
             + float(np.mean(p @ self.eye)) * self.eye)
        return c, np.array([0.5 * np.ptp(qx), 0.5 * np.ptp(qy)])

    def _title(self) -> str:
        angles = ", ".join(f"{_symbol(n)} {_fmt(a)}°" for n, a in self.angles.items())
        return (f"{self.ds.attrs.get('phase', '')} ({self._indices_text()}) at "
                f"{float(self.row.energy):g} "
                f"keV: 2θ {_fmt(self.two_theta)}°, {angles}; path {self.path_sweep:.3g} mm"
                + (" (along the plate)" if self.grazing else ""))

    def _indices_text(self) -> str:
        """The reflection's indices as the plan labels them (four for hexagonal hkil)."""
        from .._lattice import parse_indices

        try:
            _, idx = parse_indices(str(self.row.hkl.values))
        except (ValueError, AttributeError, KeyError):
            idx = tuple(self.hkl)
        return " ".join(str(v) for v in idx)

    def _info(self, det_true, det_drawn, compact, info_lens, inset_info) -> dict[str, Any]:
        a = self.ds.attrs
        info: dict[str, Any] = dict(
            phase=a.get("phase", ""), reflection=str(self.row.reflection.values),
            hkl=self.hkl.tolist(), energy_kev=float(self.row.energy),
            wavelength_a=self.wavelength, two_theta_deg=self.two_theta,
            **{f"{n}_deg": v for n, v in self.angles.items()},
            stage=a.get("stage", ""), goniometer=a.get("goniometer", a.get("stage", "")),
            scattering_plane=a.get("scattering_plane", ""), mount=a.get("mount", ""),
            solution=self.sol, rotation=self.rot.tolist(), mount_U=self.u.tolist(),
            k_out=self.k_out.tolist(), g_lab=self.g_lab.tolist(),
            eta_deg=float(self.row.eta.values[self.sol]),
            entry_angle_deg=self.entry_deg, exit_angle_deg=self.exit_deg,
            path_length_mm=self.path_sweep, path_in_sample_mm=self.path_drawn,
            laue_residual=self.laue_residual,
            sample_size_mm=self.size.tolist(), beam_size_mm=self.beam.tolist(),
            sample_axes=self.plate.tolist(),
            detector_distance_mm=det_true, drawn_detector_distance_mm=det_drawn,
            compact=compact, **inset_info, **info_lens)
        if self.path_model is not None and not math.isclose(self.path_drawn, self.path_model,
                                                            rel_tol=1e-6):
            self.notes.append(f"the beam leaves the plate through a side face: drawn path "
                              f"{self.path_drawn:.4g} mm, the plate-path model "
                              f"{self.path_sweep:.4g} mm (a laterally small plate)")
        return info

    # ------------------------------------------------------------------- the nodes
    def _sample_nodes(self) -> list[Node]:
        h = self.plate * self.halves
        w, hh, t = self.size
        box = box_mesh(np.zeros(3), h)
        top = float(box.vertices[:, 2].max())
        centre, half = self._half_screen(box.vertices)
        self.candidates["sample_label"] = lambda pl, text, pt: (
            pl.around(centre, half, text, pt, order=("below", "bl", "br", "above"))
            + [(c, 1.0) for c in pl.around(centre, (self.r_max, self.r_max), text, pt,
                                           order=("below", "br", "bl"),
                                           gap=-0.5 * pt * pl.mmpp)])
        return [
            Node("sample", "sample", _material("sample"), mesh=box,
                 info=dict(size_mm=self.size.tolist(), axes=self.plate.tolist(),
                           axes_at_zero=self.plate0.tolist())),
            Node("sample_label", "sample", _material("label"),
                 label=Label([0.0, 0.0, top + 0.15 * self.big], f"{w:g} × {hh:g} × {t:g} mm",
                             size=LABEL_PT)),
        ]

    def _beam_nodes(self, det_drawn: float, lens, info_lens) -> list[Node]:
        big, (bw, bh) = self.big, self.beam
        p_in = -self.l_in * _X
        p_out = self.l_out * self.k_out
        r_in = 0.35 * min(bw, bh, float(self.size[2]))
        src = p_in - COMPACT_LENGTH * big * _X
        nodes = [
            Node("beam_in", "beam", _material("beam_in"), mesh=_beam_box(src, p_in, _Y, bw, bh),
                 info=dict(start=src.tolist(), end=p_in.tolist(), width_mm=bw, height_mm=bh)),
            Node("beam_in_sample", "beam", _material("beam_in_sample"),
                 mesh=cylinder_mesh(p_in, np.zeros(3), r_in, 16),
                 info=dict(start=p_in.tolist(), end=[0.0, 0.0, 0.0], length_mm=self.l_in)),
            Node("beam_out_sample", "beam", _material("beam_out_sample"),
                 mesh=cylinder_mesh(np.zeros(3), p_out, r_in, 16),
                 info=dict(start=[0.0, 0.0, 0.0], end=p_out.tolist(), length_mm=self.l_out)),
        ]
        t_start = self.l_through * _X
        t_end = (self.l_through + det_drawn) * _X
        nodes.append(Node("beam_transmitted", "beam", _material("beam_transmitted"),
                          mesh=_beam_box(t_start, t_end, _Y, bw, bh),
                          info=dict(start=t_start.tolist(), end=t_end.tolist())))
        stop = info_lens["drawn_d1_mm"] if lens is not None else det_drawn - 0.03 * big
        stop = max(stop, self.l_out + 1e-3 * big)
        d_end = stop * self.k_out
        nodes.append(Node("beam_diffracted", "beam", _material("beam_diffracted"),
                          mesh=_beam_box(p_out, d_end, _Y, bw, bh),
                          info=dict(start=p_out.tolist(), end=d_end.tolist())))
        return nodes

    def _break_node(self) -> Node:
        """Two short slanted strokes across the diffracted beam in the middle of each
        shortened gap: the draughtsman's "not to scale" break."""
        half = 0.16 * self.big
        gap = 0.05 * self.big
        # strokes in the view plane, tilted 60 degrees from the beam on the screen
        along = _unit(self.k_out - (self.k_out @ self.eye) * self.eye)
        across = _unit(np.cross(self.eye, along))
        d = _unit(0.5 * along + 0.866 * across)
        segs = []
        for s in self.breaks:
            c = s * self.k_out
            for off in (-gap, gap):
                m = c + off * along
                segs.append([m - half * d, m + half * d])
        return Node("beam_breaks", "beam", _material("leader"),
                    lines=Lines(np.array(segs), width=1.3),
                    info=dict(distances_mm=list(self.breaks)))

    def _footprint_radius(self) -> float:
        """Half the larger side of the beam's cross-section (mm)."""
        return 0.5 * float(self.beam.max())

    def _lens_nodes(self, lens, info_lens) -> list[Node]:
        a = info_lens["drawn_d1_mm"] * self.k_out
        b = (info_lens["drawn_d1_mm"] + info_lens["drawn_lens_length_mm"]) * self.k_out
        r = max(LENS_RADIUS_FRACTION * self.big, 1.3 * self._footprint_radius())
        desc = str(self.ds.attrs.get("lens", ""))
        kind = "CRL" if ("lenslet" in desc.lower() or "crl" in desc.lower()) else "lens"
        text = f"{kind} ×{lens['magnification']:.3g}"
        name = desc.split(":")[0].strip()
        self.notes.append(
            f"lens{' ' + name if name else ''}: d1 {_mm(lens['d1_mm'])} mm, length "
            f"{_mm(lens['lens_length_mm'])} mm, f {_mm(lens.get('focal_length_mm', math.nan))} "
            f"mm, d2 {_mm(lens['d2_mm'])} mm, M {lens['magnification']:.4g}")
        centre, half = self._half_screen(np.array([a, b]))
        half = half + r
        self.candidates["lens_label"] = lambda pl, text, pt: pl.around(
            centre, half, text, pt, order=("above", "below", "ar", "br"))
        return [
            Node("lens", "lens", _material("lens"), mesh=cylinder_mesh(a, b, r, 32),
                 info=dict(start=a.tolist(), end=b.tolist(), radius_mm=r,
                           d1_mm=lens["d1_mm"], lens_length_mm=lens["lens_length_mm"])),
            Node("lens_label", "lens", _material("label"),
                 label=Label(0.5 * (a + b) + 2.0 * r * self.up, text, size=LABEL_PT)),
        ]

    def _detector_nodes(self, det_drawn, det_true, shortened, lens) -> list[Node]:
        big = self.big
        center = det_drawn * self.k_out
        side = max(DETECTOR_FRACTION * big, 1.2 * float(self.beam.max()))
        if lens is not None and not self.compact:
            side = max(side, 1.2 * lens["magnification"] * float(self.beam.max()))
        half = 0.5 * side
        u = self.side
        v = self.up
        box = box_mesh(center, np.column_stack([0.01 * big * self.k_out, half * u, half * v]))
        text = ("detector (not to scale)" if det_true is None
                else f"detector {_short(det_true)}")
        c, h = self._half_screen(box.vertices)
        self.candidates["detector_label"] = lambda pl, text, pt: pl.around(
            c, h, text, pt, order=("above", "below", "right", "ar", "br"))
        return [
            Node("detector", "detector", _material("detector"), mesh=box,
                 info=dict(center=center.tolist(), distance_mm=det_true,
                           drawn_distance_mm=det_drawn, side_mm=side, shortened=bool(shortened),
                           normal=self.k_out.tolist())),
            Node("detector_label", "detector", _material("label"),
                 label=Label(center + (half + 0.2 * big) * v, text, size=LABEL_PT)),
        ]

    def _magnified_node(self, lens_end: np.ndarray, det_center: np.ndarray, m: float,
                        side: float) -> Node:
        """The beam behind the lens: the diffracted beam's cross-section at the lens,
        widening to ``m`` times it just before the detector plate (a rectangular frustum;
        with ``compact`` at most as wide as fits on the plate, noted)."""
        bw, bh = self.beam
        drawn_m = m
        if self.compact:
            drawn_m = min(m, 0.85 * side / float(self.beam.max()))
            if drawn_m < m * (1 - 1e-9):
                self.notes.append(f"magnified beam drawn widening {drawn_m:.3g} x, not "
                                  f"{m:.3g} x (to fit the shortened detector)")
        end = det_center - 0.03 * self.big * self.k_out  # stop short of the plate's face
        mesh = _beam_box(lens_end, end, _Y, bw, bh)
        v = mesh.vertices.copy()
        far = np.arange(4, 8)  # box_mesh: index 4i + 2j + k, i > 0 the far end
        v[far] = end + drawn_m * (v[far] - end)
        return Node("beam_magnified", "beam", _material("beam_magnified"),
                    mesh=Mesh(v, mesh.faces),
                    info=dict(start=lens_end.tolist(), end=end.tolist(),
                              start_size_mm=[bw, bh], end_size_mm=[drawn_m * bw, drawn_m * bh],
                              magnification=m, drawn_magnification=drawn_m))

    def _vector_nodes(self) -> list[Node]:
        big = self.big
        lk = 1.5 * big
        s = lk / self.k  # mm per 1/A
        shaft = 0.012 * big
        g_end = s * self.g_lab
        kin_start = -lk * _X
        kout_end = lk * self.k_out
        arrow = dict(head_length=5 * shaft, head_radius=2.5 * shaft)
        nodes = [
            Node("k_in", "vectors", _material("k_in"),
                 mesh=arrow_mesh(kin_start, np.zeros(3), shaft, **arrow),
                 info=dict(vector_inv_a=(self.k * _X).tolist(), mm_per_inv_a=s)),
            Node("k_out", "vectors", _material("k_out"),
                 mesh=arrow_mesh(np.zeros(3), kout_end, shaft, **arrow),
                 info=dict(vector_inv_a=(self.k * self.k_out).tolist(), mm_per_inv_a=s)),
            Node("G", "vectors", _material("G"),
                 mesh=arrow_mesh(np.zeros(3), g_end, shaft, **arrow),
                 info=dict(vector_inv_a=self.g_lab.tolist(), mm_per_inv_a=s)),
            Node("k_in_label", "vectors", _material("k_in"),
                 label=Label(kin_start - 0.12 * big * self.up, "k_in", size=LABEL_PT)),
            Node("k_out_label", "vectors", _material("k_out"),
                 label=Label(kout_end + 0.1 * big * self.up, "k_out", size=LABEL_PT)),
            Node("G_label", "vectors", _material("G"),
                 label=Label(g_end + 0.1 * big * _unit(self.g_lab), f"G ({self._indices_text()})",
                             size=LABEL_PT)),
        ]
        z0 = np.zeros(3)
        hb = 0.5 * float(self.beam.max()) + shaft  # clear of the beam the arrow lies in
        self.candidates["k_in_label"] = lambda pl, text, pt: (
            pl.around(-0.8 * lk * _X, (0.0, hb), text, pt, order=("below", "above"))
            + pl.around(-0.45 * lk * _X, (0.0, hb), text, pt, order=("below", "above")))
        self.candidates["k_out_label"] = lambda pl, text, pt: (
            pl.around(kout_end, (0.0, hb), text, pt, order=("above", "ar", "below", "br"))
            + pl.around(0.7 * kout_end, (0.0, hb), text, pt, order=("above", "below")))
        self.candidates["G_label"] = lambda pl, text, pt: (
            pl.around(g_end, (0.0, 0.0), text, pt, order=("above", "al", "ar", "left", "right"))
            + pl.around(z0, (0.0, 0.0), text, pt, order=("al", "bl")))
        # the 2theta arc, from the beam direction to k_out, in the scattering plane
        tt = math.radians(self.two_theta)
        perp = (_unit(self.k_out - (self.k_out @ _X) * _X) if tt > 1e-9
                else self.up)  # in the scattering plane, normal to the beam, towards k_out
        ang = np.linspace(0.0, tt, 33)
        rad = 0.9 * lk
        pts = rad * (np.cos(ang)[:, None] * _X + np.sin(ang)[:, None] * perp)
        nodes.append(Node("two_theta_arc", "labels", _material("label"),
                          lines=Lines(np.stack([pts[:-1], pts[1:]], axis=1), width=1.2)))
        bis = math.cos(tt / 2) * _X + math.sin(tt / 2) * perp
        nodes.append(Node("two_theta_label", "labels", _material("label"),
                          label=Label(rad * 1.15 * bis, f"2θ {_fmt(self.two_theta)}°",
                                      size=LABEL_PT)))

        def two_theta(pl, text, pt):
            hw, hh = pl.half_size(text, pt)
            mid = [(rad + f * hw) * bis for f in (1.1, 1.5, 2.0)]
            return (mid + pl.around(pts[0], (0.0, 0.0), text, pt, order=("br", "below"))
                    + pl.around(pts[-1], (0.0, 0.0), text, pt, order=("al", "above")))

        self.candidates["two_theta_label"] = two_theta
        return nodes

    def _goniometer_nodes(self, goniometer) -> tuple[list[Node], float]:
        from .._goniometer import axis_rotation

        axes = _stage_axes(self.ds, goniometer)
        n = len(axes)
        carried = np.eye(3)
        nodes = []
        tube = 0.01 * self.big
        r_max = self.half_diag * 1.1 + tube
        targets = (-140.0, -90.0, -35.0, -115.0, -65.0, 180.0)
        for i, (name, e) in enumerate(axes):
            angle = self.angles[name]
            d = carried @ e  # the axis at the solution: carried by the outer circles
            r = self.half_diag * (1.1 + 0.18 * (n - 1 - i))
            r_max = max(r_max, r + tube)
            ref = np.cross(d, _X) if abs(d @ _X) < 0.9 else np.cross(d, _Y)
            ref = _unit(ref)
            mesh = ring_mesh(np.zeros(3), d, r, tube, sections=72, tube_sections=6, reference=ref)
            nodes.append(Node(f"goniometer_{name}", "goniometer", _material("goniometer"),
                              mesh=mesh,
                              info=dict(axis=d.tolist(), axis_at_zero=np.asarray(e).tolist(),
                                        angle_deg=angle, radius_mm=r)))
            nodes.append(Node(f"goniometer_{name}_axis", "goniometer", _material("goniometer_axis"),
                              lines=Lines(np.array([[-1.15 * r * d, 1.15 * r * d]]), width=0.8)))
            nodes.append(Node(f"goniometer_{name}_label", "goniometer", _material("label"),
                              label=Label(r * ref + 1.15 * r * 0.15 * d,
                                          f"{_symbol(name)} = {_fmt(angle)}°", size=LABEL_PT)))
            self.candidates[f"goniometer_{name}_label"] = self._ring_candidates(
                d, ref, r, targets[i % len(targets)])
            if math.isfinite(angle):
                carried = carried @ axis_rotation(e, math.radians(angle))
        self.r_max = r_max
        if np.all(np.isfinite(carried)) and not np.allclose(carried, self.rot, atol=1e-6):
            self.notes.append("goniometer: the stage angles do not reproduce the rotation; "
                              "circles drawn from the stage angles")
        return nodes, r_max

    def _ring_candidates(self, d, ref, r, target_deg):
        """Label centres just outside a ring (axis ``d``, radius ``r``) in the default view,
        nearest the screen direction ``target_deg`` first."""
        t = np.radians(np.arange(0.0, 360.0, 7.5))
        v = np.cross(d, ref)
        ring = r * (np.cos(t)[:, None] * ref + np.sin(t)[:, None] * v)  # (k, 3)
        qx, qy = ring @ self.right, ring @ self.screen_up
        rad = np.hypot(qx, qy)
        ang = np.degrees(np.arctan2(qy, qx))
        diff = np.abs((ang - target_deg + 180.0) % 360.0 - 180.0)
        order = np.argsort(diff / 30.0 - 2.0 * rad / r)
        order = [k for k in order if rad[k] > 0.55 * r] or list(order)

        def outward(k, hw, hh, mmpp):
            """(screen direction of ring point k as a lab vector, the offset that puts a
            label's box just clear of that point)."""
            ux, uy = qx[k] / max(rad[k], 1e-12), qy[k] / max(rad[k], 1e-12)
            off = min(hw / max(abs(ux), 1e-9), hh / max(abs(uy), 1e-9)) + 2.0 * mmpp
            return ux * self.right + uy * self.screen_up, off

        def make(pl, text, pt):
            hw, hh = pl.half_size(text, pt)
            out = []
            for k in order:
                d3, off = outward(k, hw, hh, pl.mmpp)
                out.append(ring[k] + off * d3)
            for k in order[:12]:  # beyond the outer circles, in line with this one's point
                d3, off = outward(k, hw, hh, pl.mmpp)
                out.append(((self.r_max + off) * d3, 0.8))
            return out

        return make

    def _inset_nodes(self, ring_max: float, cells, bonds, polyhedra):
        lattice = self.structure.lattice.matrix
        rot_c = self.rot @ self.u
        cells_arr = np.asarray(cells, dtype=float)
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
        corners = (corners * cells_arr) @ lattice @ rot_c.T  # block corners, A, lab directions
        extent = float(np.ptp(corners, axis=0).max())
        scale = INSET_FRACTION * self.big / extent
        # the block's half size on the screen (default view), about the block's centre
        cq = (corners - corners.mean(axis=0)) * scale
        hx = float(np.abs(cq @ self.right).max())
        hy = float(np.abs(cq @ self.screen_up).max())
        radius = math.hypot(hx, hy)
        # up and upstream of the sample (screen upper left), clear of the circles and beams
        direction = _unit(-0.6 * self.right + 0.8 * self.screen_up)
        center = direction * (ring_max + radius + 0.12 * self.big)
        block_center = 0.5 * (cells_arr @ lattice)  # Cartesian A
        origin = center - scale * rot_c @ block_center
        nodes = _crystal_nodes(self.structure, rotation=rot_c, origin=origin,
                              scale_mm_per_A=scale, cells=cells, bonds=bonds, polyhedra=polyhedra)
        for n in nodes:  # the a, b, c labels: beside their arrow tips, off the atoms
            if n.label is not None and n.name.endswith("_label"):
                tip = np.asarray(nodes_info(nodes, n.name[:-len("_label")])["end"])
                self.candidates[n.name] = (
                    lambda pl, text, pt, tip=tip, d=n.label.position - tip: [tip + d] + pl.around(
                        tip, (0.0, 0.0), text, pt))
        start = _exit_distance(self.plate, self.halves, direction) * direction
        end = center - 0.9 * radius * direction
        out = list(nodes)
        out.append(Node("crystal_leader", "crystal", _material("leader"),
                        lines=Lines(np.array([[start, end]]), width=0.8)))
        comp = self.structure.composition.reduced_formula
        many = cells_arr.prod() > 1
        text = (f"{comp} {self.ds.attrs.get('space_group', '')}"
                + (f", {'×'.join(str(int(c)) for c in cells_arr)} cells" if many else "")).strip()
        out.append(Node("crystal_label", "crystal", _material("label"), label=Label(
            center + (radius + 0.1 * self.big) * self.screen_up, text, size=LABEL_PT)))
        self.candidates["crystal_label"] = lambda pl, text, pt: pl.around(
            center, (hx, hy), text, pt, order=("above", "al", "ar", "left", "below"),
            gap=0.06 * self.big)
        self.notes.append(f"crystal inset: {'×'.join(str(int(c)) for c in cells_arr)} "
                          f"cell{'s' if many else ''} magnified {scale * 1e7:.3g} x "
                          f"({scale:.4g} mm per Å), in the same orientation as the sample")
        info = dict(inset_scale_mm_per_A=scale, inset_rotation=rot_c.tolist(),
                    inset_origin_mm=origin.tolist(), inset_center_mm=center.tolist())
        return out, nodes.legend, info

    def _axes_nodes(self, nodes: list[Node]) -> list[Node]:
        """The lab triad, a round length (its label says which) at the lower left corner."""
        pts = np.concatenate([n.points for n in nodes])
        lo = pts.min(axis=0)
        raw = max(0.6 * self.big, 0.03 * float(np.ptp(pts, axis=0).max()))
        mag = 10.0 ** math.floor(math.log10(raw))
        length = max(f * mag for f in (1.0, 2.0, 5.0) if f * mag <= raw)
        corner = lo - 0.1 * self.big
        shaft = 0.02 * length
        out = []
        for vec, name, text in ((_X, "lab_x", "x (beam)"), (_Y, "lab_y", "y"),
                                (_Z, "lab_z", "z (up)")):
            end = corner + length * vec
            out.append(Node(name, "axes", _material(name),
                            mesh=arrow_mesh(corner, end, shaft, head_length=6 * shaft,
                                            head_radius=2.5 * shaft),
                            info=dict(length_mm=length)))
            out.append(Node(f"{name}_label", "axes", _material(name),
                            label=Label(end, text, size=SMALL_PT)))
            self.candidates[f"{name}_label"] = (
                lambda pl, text, pt, end=end: pl.around(end, (0.0, 0.0), text, pt,
                                                        order=("right", "above", "ar", "br",
                                                               "left", "below")))
        out.append(Node("lab_scale_label", "axes", _material("label"), label=Label(
            corner, f"arrows {length:g} mm", size=SMALL_PT)))
        self.candidates["lab_scale_label"] = lambda pl, text, pt: pl.around(
            corner, (0.0, 0.0), text, pt, order=("below", "br", "bl", "left"))
        return out
