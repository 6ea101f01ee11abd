"""Goniometers (nested rotation stages) and the shortest-path Bragg solution.

Lab frame as everywhere in the planner (:mod:`xrdflow._sweep`): the beam travels along +x,
z points up, y = z x x. Orientations are rotation matrices ``R`` acting on the lab frame at
zero angles: ``G_lab = R @ U @ G_cart`` (``U``: the mount, :class:`xrdflow._mounts.Mount`).

Goniometer
----------
A :class:`Goniometer` is an ordered list of axes, outermost first, each with a name, its lab
direction when every angle is zero and a sense (+1: right-handed about the direction, -1:
left-handed). Inner axes ride on outer ones, so a setting ``(a1, a2, a3)`` is the rotation
``R = R1(a1) @ R2(a2) @ R3(a3)`` with every ``Ri`` about its *zero-angle* direction.
:meth:`Goniometer.angles` inverts this for any rotation (Davenport angles): the middle angle
has two values in general; the one with the smaller magnitude (the tilt closest to the
stage's rest position) is returned, the other is ``2 * atan2(Q, P) - a2`` (see the code).

Presets (:data:`GONIOMETERS`):

* ``"omega-chi-phi"``: omega about z (base), chi about x, phi about y: the stage of
  :func:`xrdflow._mounts.goniometer_rotation`, ``Rz(omega) Rx(chi) Ry(phi)``.
* ``"dfxrm"``: a dark-field X-ray microscopy / Bragg-microscopy stage: the outer rocking
  ``phi`` about the horizontal axis normal to the beam (y), then the roll ``chi`` about the
  beam (x), then ``omega`` about the sample's up axis (z): ``Ry(phi) Rx(chi) Rz(omega)``.

Shortest path
-------------
:func:`shortest_path_block` solves, for reciprocal vectors ``g0`` (lab frame at zero angles)
and a plate normal ``n0`` (idem), every orientation that (1) satisfies the Laue condition
``k_out = k_in + G``, ``|k_out| = |k_in|``; (2) puts the diffracted beam in the requested
scattering plane (``"vertical"``: x-z, diffracted beam up; ``"horizontal"``: x-y, towards +y);
(3) spends the remaining freedom, the rotation about G, so that the plate normal lies as
close as possible to the bisector ``b`` of the incident and diffracted beams (symmetric Laue
geometry when the normal is perpendicular to G). With ``beta`` the angle between the normal
and G, the normal at the solution is ``cos(beta) G_hat +- sin(beta) b``; the beam then meets
the normal at ``cos(alpha_in) = +-sin(beta) cos(theta) - cos(beta) sin(theta)`` and leaves at
``cos(alpha_out) = +-sin(beta) cos(theta) + cos(beta) sin(theta)``. Both beams cross the two
large faces (transmission) only if ``sin(beta) cos(theta) > |cos(beta)| sin(theta)``; the two
signs are the two distinct solutions (the crystal turned by 180 deg about G: the beam enters
through one face or the other); NaN where transmission is impossible (the reflection's
planes too close to the plate's faces: a Bragg, reflection geometry). Any other rotation
about G lowers both cosines, so the mean path through a plate of thickness t,
``t / 2 (1 / cos(alpha_in) + 1 / cos(alpha_out))`` (averaged over the depth where the beam
diffracts), is a minimum there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .units import HC_KEV_A

__all__ = ["Axis", "Goniometer", "GONIOMETERS", "as_goniometer", "goniometer", "axis_rotation",
           "shortest_path_block"]

_NAMED_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def axis_rotation(axis: np.ndarray, angle_rad: Any) -> np.ndarray:
    """Right-handed rotation matrices about the unit vector ``axis`` (shape ``(..., 3, 3)``)."""
    e = np.asarray(axis, dtype=float)
    a = np.asarray(angle_rad, dtype=float)
    c, s = np.cos(a), np.sin(a)
    k = np.array([[0.0, -e[2], e[1]], [e[2], 0.0, -e[0]], [-e[1], e[0], 0.0]])
    ee = np.outer(e, e)
    out = np.multiply.outer(1.0 - c, ee)  # (1 - cos) e e^T + sin [e]x + cos I
    out += np.multiply.outer(s, k)
    for i in range(3):
        out[..., i, i] += c
    return out


@dataclass(frozen=True)
class Axis:
    """One rotation axis: ``name``, lab ``direction`` at zero angles, ``sense`` (+1 or -1)."""

    name: str
    direction: tuple[float, float, float]
    sense: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"goniometer: axis name must be an identifier, got {self.name!r}")
        d = self.direction
        if isinstance(d, str):
            if d.lstrip("+-") not in _NAMED_AXES:
                raise ValueError(f"goniometer: axis {self.name!r} direction must be x, y, z "
                                 f"(optionally signed) or three numbers, got {d!r}")
            sign = -1.0 if d.startswith("-") else 1.0
            d = tuple(sign * v for v in _NAMED_AXES[d.lstrip("+-")])
        try:
            vec = np.asarray(d, dtype=float).reshape(3)
        except (TypeError, ValueError):
            raise ValueError(f"goniometer: axis {self.name!r} direction must be three numbers, "
                             f"got {self.direction!r}") from None
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm < 1e-12:
            raise ValueError(f"goniometer: axis {self.name!r} direction must be a non-zero "
                             f"finite vector, got {self.direction!r}")
        if self.sense not in (1, -1):
            raise ValueError(f"goniometer: axis {self.name!r} sense must be +1 or -1, "
                             f"got {self.sense!r}")
        object.__setattr__(self, "direction", tuple(float(v) for v in vec / norm))

    @property
    def vector(self) -> np.ndarray:
        """The signed unit vector: a positive angle is right-handed about it."""
        return self.sense * np.asarray(self.direction)


@dataclass(frozen=True)
class Goniometer:
    """Nested rotation stages, outermost first (see the module docstring).

    Examples
    --------
    >>> g = GONIOMETERS["omega-chi-phi"]
    >>> r = g.rotation(30.0, 10.0, -5.0)
    >>> np.round(g.angles(r), 10).tolist()
    [30.0, 10.0, -5.0]
    """

    name: str
    axes: tuple[Axis, ...]

    def __post_init__(self):
        axes = tuple(self.axes)
        if not 1 <= len(axes) <= 3 or not all(isinstance(a, Axis) for a in axes):
            raise ValueError("goniometer: needs one to three Axis entries, outermost first")
        names = [a.name for a in axes]
        if len(set(names)) != len(names):
            raise ValueError(f"goniometer: axis names must differ, got {names}")
        object.__setattr__(self, "axes", axes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def describe(self) -> str:
        parts = [f"{a.name} about {'-' if a.sense < 0 else ''}"
                 f"({', '.join(f'{v:g}' for v in a.direction)})" for a in self.axes]
        return f"{self.name}: " + ", then ".join(parts) + " (outermost first, right-handed)"

    def rotation(self, *angles_deg: Any) -> np.ndarray:
        """``R1(a1) @ R2(a2) @ ...`` (``(..., 3, 3)``) for angles in degrees, broadcast."""
        if len(angles_deg) != len(self.axes):
            raise ValueError(f"goniometer {self.name}: needs {len(self.axes)} angles "
                             f"({', '.join(self.names)}), got {len(angles_deg)}")
        arrays = np.broadcast_arrays(*(np.radians(np.asarray(a, dtype=float))
                                       for a in angles_deg))
        out = np.broadcast_to(np.eye(3), arrays[0].shape + (3, 3))
        for axis, a in zip(self.axes, arrays):
            out = out @ axis_rotation(axis.vector, a)
        return out

    def angles(self, rotation: Any) -> np.ndarray:
        """Stage angles (deg, ``(..., n_axes)``) that give ``rotation`` (``(..., 3, 3)``).

        NaN where the stage cannot reach the orientation (or the rotation is NaN). With
        three axes the middle one takes the value of smaller magnitude (module docstring).
        """
        r = np.asarray(rotation, dtype=float)
        e = [a.vector for a in self.axes]
        if len(e) == 1:
            return _one_axis(r, e[0])[..., None]
        if len(e) == 2:
            return _two_axes(r, e[0], e[1])
        return _three_axes(r, *e)


def _angle_between_about(axis, v, w) -> np.ndarray:
    """Angle (rad) of the rotation about ``axis`` taking ``v``'s to ``w``'s perpendicular part."""
    vp = v - (v @ axis)[..., None] * axis
    wp = w - (w @ axis)[..., None] * axis
    return np.arctan2(np.cross(vp, wp) @ axis, np.sum(vp * wp, axis=-1))


def _perpendicular(e: np.ndarray) -> np.ndarray:
    trial = np.eye(3)[int(np.argmin(np.abs(e)))]
    p = trial - (trial @ e) * e
    return p / np.linalg.norm(p)


def _residual_ok(r, r_back) -> np.ndarray:
    return np.max(np.abs(r - r_back), axis=(-2, -1)) < 1e-7


def _one_axis(r, e1) -> np.ndarray:
    p = _perpendicular(e1)
    a1 = _angle_between_about(e1, np.broadcast_to(p, r.shape[:-1]), r @ p)
    ok = _residual_ok(r, axis_rotation(e1, a1))
    return np.where(ok, np.degrees(a1), np.nan)


def _two_axes(r, e1, e2) -> np.ndarray:
    # R e2 = R1(a1) e2: a1 takes e2 to R e2 about e1; then R2(a2) = R1(-a1) R
    re2 = r @ e2
    a1 = _angle_between_about(e1, np.broadcast_to(e2, re2.shape), re2)
    rest = np.swapaxes(axis_rotation(e1, a1), -1, -2) @ r
    a2 = _one_axis(rest, e2)
    ok = _residual_ok(r, axis_rotation(e1, a1) @ axis_rotation(e2, np.radians(a2)))
    out = np.stack([np.degrees(a1), a2], axis=-1)
    return np.where(ok[..., None], out, np.nan)


def _three_axes(r, e1, e2, e3) -> np.ndarray:
    # e1 . R e3 = e1 . R2(a2) e3 = P cos a2 + Q sin a2 + S (Rodrigues)
    s = (e1 @ e2) * (e2 @ e3)
    p_ = e1 @ e3 - s
    q_ = e1 @ np.cross(e2, e3)
    lhs = np.einsum("i,...ij,j->...", e1, r, e3) - s
    amp = np.hypot(p_, q_)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = lhs / amp if amp > 1e-12 else np.full_like(lhs, np.nan)
    c = np.where(np.abs(c) <= 1.0 + 1e-9, np.clip(c, -1.0, 1.0), np.nan)
    sq = np.sqrt(1.0 - c**2)  # |sin(a2 - base)|: loses precision near |c| = 1 ...
    if abs(s) < 1e-12 and abs(p_) < 1e-12:
        # ... unless the axes are orthogonal (e1 . e3 = 0, e2 normal to both): then it is
        # the length of (R^T e1)'s part perpendicular to e3, computed from components
        m = np.einsum("i,...ij->...j", e1, r)
        sq = np.where(np.isfinite(c), np.minimum(np.linalg.norm(
            m - (m @ e3)[..., None] * e3, axis=-1), 1.0), np.nan)
    base = np.arctan2(q_, p_)
    half = np.arctan2(sq, c)
    cands = np.stack([base + half, base - half], axis=-1)
    cands = np.angle(np.exp(1j * cands))
    a2 = np.where(np.abs(cands[..., 0]) <= np.abs(cands[..., 1]), cands[..., 0], cands[..., 1])
    # a1 takes R2(a2) e3 to R e3 about e1 (any value if R e3 lies on e1: then 0)
    v = axis_rotation(e2, a2) @ e3
    w = r @ e3
    on_axis = np.linalg.norm(np.cross(w, e1), axis=-1) < 1e-12
    a1 = np.where(on_axis, 0.0, _angle_between_about(e1, v, w))
    rest = (np.swapaxes(axis_rotation(e2, a2), -1, -2)
            @ np.swapaxes(axis_rotation(e1, a1), -1, -2) @ r)
    a3 = np.radians(_one_axis(rest, e3))
    back = axis_rotation(e1, a1) @ axis_rotation(e2, a2) @ axis_rotation(e3, a3)
    out = np.degrees(np.stack([a1, a2, a3], axis=-1))
    return np.where(_residual_ok(r, back)[..., None], out, np.nan)


GONIOMETERS: dict[str, Goniometer] = {
    "omega-chi-phi": Goniometer("omega-chi-phi", (Axis("omega", "z"), Axis("chi", "x"),
                                                  Axis("phi", "y"))),
    "dfxrm": Goniometer("dfxrm", (Axis("phi", "y"), Axis("chi", "x"), Axis("omega", "z"))),
}


def as_goniometer(value: Any) -> Goniometer:
    """A preset name, a :class:`Goniometer`, or a mapping / list describing the axes.

    A mapping: ``{"name": ..., "axes": [{"name": "mu", "direction": "y", "sense": 1}, ...]}``;
    a list: ``[("mu", "y"), ("omega", [0, 0, 1], -1), ...]`` (outermost first).

    Examples
    --------
    >>> as_goniometer([("mu", "y"), ("omega", "z")]).names
    ('mu', 'omega')
    """
    if isinstance(value, Goniometer):
        return value
    if isinstance(value, str):
        try:
            return GONIOMETERS[value]
        except KeyError:
            raise ValueError(f"goniometer: unknown preset {value!r}; choose one of "
                             f"{', '.join(GONIOMETERS)} or describe the axes") from None
    name, axes = "custom", value
    if isinstance(value, Mapping):
        unknown = set(value) - {"name", "axes"}
        if unknown or "axes" not in value:
            raise ValueError("goniometer: a mapping needs 'axes' (and optionally 'name')")
        name, axes = str(value.get("name", "custom")), value["axes"]
    if not isinstance(axes, Sequence) or isinstance(axes, str):
        raise ValueError(f"goniometer: axes must be a list, outermost first, got {axes!r}")
    out = []
    for item in axes:
        if isinstance(item, Mapping):
            extra = set(item) - {"name", "direction", "sense"}
            if extra or not {"name", "direction"} <= set(item):
                raise ValueError(f"goniometer: an axis needs 'name' and 'direction' (and "
                                 f"optionally 'sense'), got {dict(item)!r}")
            out.append(Axis(item["name"], item["direction"], int(item.get("sense", 1))))
        elif isinstance(item, Sequence) and 2 <= len(item) <= 3:
            out.append(Axis(item[0], item[1], int(item[2]) if len(item) == 3 else 1))
        else:
            raise ValueError(f"goniometer: cannot read axis {item!r}")
    return Goniometer(name, tuple(out))


#: the public name (``xrdflow.goniometer``)
goniometer = as_goniometer


# --------------------------------------------------------------------------------------
# the shortest-path Bragg solution (one energy block, numpy)
# --------------------------------------------------------------------------------------
#: fields of the last axis of :func:`shortest_path_block`'s output
SHORTEST_PATH_FIELDS = ("r00", "r01", "r02", "r10", "r11", "r12", "r20", "r21", "r22",
                        "path_factor", "entry_angle", "exit_angle", "kx", "ky", "kz", "eta")


def _unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def shortest_path_block(energy: np.ndarray, g0: np.ndarray, n0: np.ndarray,
                        plane: str) -> np.ndarray:
    """Shortest-path Bragg orientations for one energy block.

    energy: (E,) keV; g0: (R, 3) reciprocal vectors (1/A, 2 pi included), lab frame at zero
    angles; n0: (3,) or (R, 3) plate normal, lab frame at zero angles. Returns (E, R, 2, 16):
    the rotation R row by row, the path factor (mean path / thickness), the entry and exit
    angles to the normal (deg), the diffracted direction and its azimuth eta about the beam
    (deg, 0 = +y, 90 = +z); all NaN where no transmission solution exists.
    """
    energy = np.asarray(energy, dtype=float)
    g0 = np.asarray(g0, dtype=float).reshape(-1, 3)
    n0 = _unit_rows(np.broadcast_to(np.asarray(n0, dtype=float), g0.shape))
    k = 2.0 * np.pi / (HC_KEV_A / energy)  # (E,)
    gn = np.linalg.norm(g0, axis=1)  # (R,)
    sin_t = gn[None, :] / (2.0 * k[:, None])  # (E, R)
    sin_t = np.where(sin_t <= 1.0 + 1e-12, np.minimum(sin_t, 1.0), np.nan)
    cos_t = np.sqrt(1.0 - sin_t**2)
    # the target frame in the lab: G_hat, the bisector b, and their cross product
    x_hat = np.array([1.0, 0.0, 0.0])
    n_hat = np.array([0.0, 0.0, 1.0]) if plane == "vertical" else np.array([0.0, 1.0, 0.0])
    g_t = -sin_t[..., None] * x_hat + cos_t[..., None] * n_hat  # (E, R, 3)
    b_t = cos_t[..., None] * x_hat + sin_t[..., None] * n_hat
    # the source frame at zero angles: g_hat, the normal's part perpendicular to G
    g_hat = g0 / gn[:, None]
    cos_b = np.sum(n0 * g_hat, axis=1)  # (R,)
    n_perp = n0 - cos_b[:, None] * g_hat
    sin_b = np.linalg.norm(n_perp, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        e2 = np.where(sin_b[:, None] > 1e-12, n_perp / sin_b[:, None], np.nan)
    e3 = np.cross(g_hat, e2)
    src = np.stack([g_hat, e2, e3], axis=-1)  # (R, 3, 3): columns g_hat, e2, e3
    out = np.empty(sin_t.shape + (2, 16))
    k_out = np.stack([1.0 - 2.0 * sin_t**2, *(2.0 * sin_t * cos_t * n for n in n_hat[1:])],
                     axis=-1)  # cos 2theta x + sin 2theta n
    for s, sign in enumerate((1.0, -1.0)):
        f2 = sign * b_t
        dst = np.stack([g_t, f2, np.cross(g_t, f2)], axis=-1)  # (E, R, 3, 3)
        rot = dst @ np.swapaxes(src, -1, -2)[None]
        c_in = sign * sin_b * cos_t - cos_b * sin_t
        c_out = sign * sin_b * cos_t + cos_b * sin_t
        through = (c_in * c_out > 0) & (np.minimum(np.abs(c_in), np.abs(c_out)) > 1e-12)
        with np.errstate(invalid="ignore", divide="ignore"):
            path = 0.5 * (1.0 / np.abs(c_in) + 1.0 / np.abs(c_out))
        bad = ~through
        o = out[:, :, s]
        o[..., :9] = rot.reshape(rot.shape[:-2] + (9,))
        o[..., 9] = path
        o[..., 10] = np.degrees(np.arccos(np.minimum(np.abs(c_in), 1.0)))
        o[..., 11] = np.degrees(np.arccos(np.minimum(np.abs(c_out), 1.0)))
        o[..., 12:15] = k_out
        o[..., 15] = np.degrees(np.arctan2(k_out[..., 2], k_out[..., 1]))
        o[bad] = np.nan
    return out
