"""Crystal mounts, goniometers and Bragg solutions (conventions: :mod:`xrdflow._sweep`).

Lab frame: beam along +x, z up, y = z x x. A :class:`Mount` (U) maps the crystal's Cartesian
frame to the lab at zero angles; :func:`goniometer_rotation` is ``Rz(omega) Rx(chi) Ry(phi)``;
:func:`orient_block` solves the goniometer angles that put reciprocal vectors in the Bragg
condition, one energy block at a time (numpy only, no labels).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._lattice import parse_indices, three_indices
from ._phases import PhaseLike, load_phase
from .units import HC_KEV_A

__all__ = ["Mount", "mount", "as_mount", "default_beam", "goniometer_rotation", "orient_block", "parse_indices"]


def _float_indices(spec: Any) -> tuple[str, np.ndarray] | None:
    """``"[0.5 1 0]"``, ``("uvw", (0.5, 1, 0))``: a kind and three real indices, else None."""
    if isinstance(spec, str):
        s = spec.strip()
        kind = "uvw" if s.startswith("[") and s.endswith("]") else "hkl"
        if s[:1] in "[(" and s[-1:] in "])":
            s = s[1:-1]
        parts = [p for p in re.split(r"[\s,]+", s.strip()) if p]
    elif len(spec) == 2 and isinstance(spec[0], str):
        kind, parts = spec[0], list(spec[1])
    else:
        return None
    try:
        vals = np.array([float(p) for p in parts])
    except (TypeError, ValueError):
        return None
    if vals.shape != (3,) or not np.all(np.isfinite(vals)) or not np.any(vals):
        return None
    return kind, vals


def _cartesian(structure, spec: Any) -> np.ndarray:
    """Cartesian vector of a direction ``[uvw]`` or a plane normal ``(hkl)`` (1/A for hkl)."""
    try:
        kind, idx = parse_indices(spec) if isinstance(spec, str) else (
            (spec[0], tuple(spec[1])) if (len(spec) == 2 and isinstance(spec[0], str))
            else parse_indices(spec))
        if all(float(v).is_integer() for v in idx):
            three = three_indices(kind, tuple(int(v) for v in idx), spec)
        else:
            raise ValueError(spec)
    except (ValueError, TypeError):
        real = _float_indices(spec)
        if real is None:
            raise ValueError(f"cannot read a direction or plane normal from {spec!r}: write "
                             f"[uvw], [uvtw], (hkl), (hkil) or three numbers") from None
        kind, three = real
    if kind not in ("uvw", "hkl"):
        raise ValueError(f"index kind must be 'uvw' or 'hkl', got {kind!r}")
    if kind == "uvw":
        return three @ structure.lattice.matrix
    return three @ structure.lattice.reciprocal_lattice.matrix


def _named_cartesian(structure, spec: Any, name: str) -> np.ndarray:
    try:
        return _cartesian(structure, spec)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def default_beam(structure, vertical: Any) -> str:
    """The plate normal (beam at zero angles) assumed when only ``vertical`` is given.

    ``vertical x [001]`` (Cartesian cross product with the crystal's c axis), or
    ``vertical x [100]`` when the vertical is along c: the choice DF-XRM users know
    (for a reflection Q vertical, the exit surface Q x [001]). Returned as real
    direction indices ``"[u v w]"``.
    """
    z = _cartesian(structure, vertical)
    for other in ("[001]", "[100]"):
        x = np.cross(z, _cartesian(structure, other))
        if np.linalg.norm(x) > 1e-6 * np.linalg.norm(z) * np.linalg.norm(
                _cartesian(structure, other)):
            break
    uvw = x @ np.linalg.inv(structure.lattice.matrix)  # Cartesian -> direction indices
    uvw = uvw / np.max(np.abs(uvw))
    return "[" + " ".join(f"{v:.6g}" for v in np.where(np.abs(uvw) < 1e-12, 0.0, uvw)) + "]"


@dataclass(frozen=True)
class Mount:
    """Orientation of a crystal on the goniometer: ``v_lab = matrix @ v_cart`` at zero angles.

    ``matrix`` (U) is a proper rotation (orthonormal, det +1) from pymatgen's Cartesian frame
    of the structure to the lab frame (beam +x, vertical +z).
    """

    matrix: np.ndarray
    description: str = "orientation matrix"
    beam_adjustment_deg: float = 0.0

    def __post_init__(self):
        u = np.asarray(self.matrix, dtype=float)
        if u.shape != (3, 3) or not np.all(np.isfinite(u)):
            raise ValueError(f"mount: U must be a finite 3x3 matrix, got shape {u.shape}")
        if not np.allclose(u @ u.T, np.eye(3), atol=1e-8) or np.linalg.det(u) < 0:
            raise ValueError("mount: U must be a proper rotation (orthonormal, det = +1)")
        u = u.copy()
        u.setflags(write=False)
        object.__setattr__(self, "matrix", u)


def mount(phase: PhaseLike, *, vertical: Any, beam: Any = None) -> Mount:
    """Orientation from a crystal direction/plane normal vertical and another along the beam.

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen Structure (gives the lattice).
    vertical
        Along the goniometer axis (lab +z): ``"[uvw]"``/``"[uvtw]"`` for a direction,
        ``"(hkl)"``/``"(hkil)"`` for a plane normal, or ``("uvw", (u, v, w))``.
    beam
        Along the incident beam (lab +x), same forms; this is also the plate normal of the
        shortest-path stage. Projected perpendicular to ``vertical`` if needed (the angle
        moved is ``Mount.beam_adjustment_deg``). Default: :func:`default_beam`
        (``vertical x [001]``). Directions may have real indices (``"[0.5 1 0]"``).

    Examples
    --------
    >>> m = mount("Mg", vertical="[0001]", beam="[2-1-10]")
    >>> np.round(m.matrix @ np.array([0.0, 0.0, 1.0]), 12).tolist()  # c axis -> up
    [0.0, 0.0, 1.0]
    """
    structure = load_phase(phase)
    z = _named_cartesian(structure, vertical, "vertical")
    if beam is None:
        beam = default_beam(structure, vertical)
    x = _named_cartesian(structure, beam, "beam")
    z = z / np.linalg.norm(z)
    xn = x / np.linalg.norm(x)
    xp = xn - np.dot(xn, z) * z
    if np.linalg.norm(xp) < 1e-6:
        raise ValueError(f"beam: {beam!r} is parallel to vertical {vertical!r}")
    adjust = math.degrees(math.asin(min(1.0, abs(float(np.dot(xn, z))))))
    xp = xp / np.linalg.norm(xp)
    y = np.cross(z, xp)
    return Mount(np.array([xp, y, z]), description=f"vertical {vertical}, beam {beam}",
                 beam_adjustment_deg=adjust)


def as_mount(phase: PhaseLike, value: Any) -> Mount | None:
    """``None``, a :class:`Mount`, ``{"vertical": ..., "beam": ...}`` or a 3x3 U -> a Mount."""
    if value is None or isinstance(value, Mount):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"vertical", "beam"}
        if unknown or "vertical" not in value:
            raise ValueError("mount: a mapping needs the key 'vertical' (and optionally 'beam')")
        return mount(phase, vertical=value["vertical"], beam=value.get("beam"))
    arr = np.asarray(value, dtype=float)
    return Mount(arr)


def goniometer_rotation(omega_deg: Any, chi_deg: Any = 0.0, phi_deg: Any = 0.0) -> np.ndarray:
    """Rotation matrices ``Rz(omega) @ Rx(chi) @ Ry(phi)`` (shape ``(..., 3, 3)``), in degrees.

    All right-handed; omega about the vertical lab axis, chi and phi about the sample's x
    and y axes (lab x and y at omega = 0).

    Examples
    --------
    >>> np.round(goniometer_rotation(90.0) @ [1.0, 0.0, 0.0], 12).tolist()
    [0.0, 1.0, 0.0]
    """
    w = np.radians(np.asarray(omega_deg, dtype=float))
    c = np.radians(np.asarray(chi_deg, dtype=float))
    p = np.radians(np.asarray(phi_deg, dtype=float))
    w, c, p = np.broadcast_arrays(w, c, p)
    cw, sw, cc, sc = np.cos(w), np.sin(w), np.cos(c), np.sin(c)
    cp, sp = np.cos(p), np.sin(p)
    zero, one = np.zeros_like(w), np.ones_like(w)
    rz = np.stack([np.stack([cw, -sw, zero], -1), np.stack([sw, cw, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cc, -sc], -1),
                   np.stack([zero, sc, cc], -1)], -2)
    ry = np.stack([np.stack([cp, zero, sp], -1), np.stack([zero, one, zero], -1),
                   np.stack([-sp, zero, cp], -1)], -2)
    return rz @ rx @ ry


def orient_block(energy: np.ndarray, g0: np.ndarray, stage: str, plane: str) -> np.ndarray:
    """Goniometer solutions for one energy block.

    g0: (R, 3) reciprocal vectors in the lab frame at zero angles (1/A, 2 pi included).
    Returns (E, R, 2, 6): omega, tilt (deg), diffracted direction x, y, z, eta (deg).
    """
    k = (2.0 * np.pi / (HC_KEV_A / energy))[:, None, None]  # (E,1,1)
    gx, gy, gz = (g0[None, :, None, i] for i in range(3))  # (1,R,1)
    g2 = gx**2 + gy**2 + gz**2
    gn = np.sqrt(g2)
    sign = np.array([1.0, -1.0])[None, None, :]
    shape = np.broadcast_shapes(k.shape, gx.shape, sign.shape)
    tilt = np.zeros(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        if stage == "omega":
            # x component of Rz(omega) g0 must be -|G|^2 / (2k) (elastic scattering)
            rho = np.hypot(gx, gy)
            phi = np.arctan2(gy, gx)
            c = -g2 / (2.0 * k * rho)
            # a tangent (double) solution: rounding may push |c| past 1 by an ulp or two
            c = np.where(np.abs(c) <= 1.0 + 1e-12, np.clip(c, -1.0, 1.0), np.nan)
            omega = sign * np.arccos(c) - phi  # (E,R,2)
        else:
            # target G in the lab: |G| (-sin t, cos t n), n = +z (vertical) or +y (horizontal)
            st = gn / (2.0 * k)
            st = np.where(st <= 1.0 + 1e-12, np.minimum(st, 1.0), np.nan)
            ct = np.sqrt(1.0 - st**2)
            tx = -gn * st
            ty = gn * ct if plane == "horizontal" else np.zeros_like(ct)
            tz = gn * ct if plane == "vertical" else np.zeros_like(ct)
            # the inner tilt keeps the component along its axis: (Rz(-omega) t).a = g0.a
            if stage == "omega-chi":  # tilt about x
                A, B, g0a = tx, ty, gx
            else:  # omega-phi: tilt about y
                A, B, g0a = ty, -tx, gy
            rho = np.hypot(A, B)
            psi = np.arctan2(B, A)
            c = g0a / rho
            c = np.where(np.abs(c) <= 1.0 + 1e-12, np.clip(c, -1.0, 1.0), np.nan)
            omega = psi + sign * np.arccos(c)
            wx = tx * np.cos(omega) + ty * np.sin(omega)
            wy = -tx * np.sin(omega) + ty * np.cos(omega)
            wz = np.broadcast_to(tz, omega.shape)
            if stage == "omega-chi":
                tilt = np.arctan2(wz, wy) - np.arctan2(gz, gy)
            else:
                tilt = np.arctan2(wx, wz) - np.arctan2(gx, gz)
            tilt = np.where(np.isfinite(omega), tilt, np.nan)
        omega = np.angle(np.exp(1j * omega))  # wrap to (-pi, pi]
        tilt = np.angle(np.exp(1j * tilt))
        # diffracted direction: k_out = k x + Rz(omega) Rtilt g0 (applied, not assumed)
        ct_, st_ = np.cos(tilt), np.sin(tilt)
        if stage == "omega-phi":
            rx = ct_ * gx + st_ * gz
            ry = np.broadcast_to(gy, omega.shape)
            rz = -st_ * gx + ct_ * gz
        else:
            rx = np.broadcast_to(gx, omega.shape)
            ry = ct_ * gy - st_ * gz
            rz = st_ * gy + ct_ * gz
        cw, sw = np.cos(omega), np.sin(omega)
        kx, ky, kz = k + cw * rx - sw * ry, sw * rx + cw * ry, rz + 0.0 * omega
        norm = np.sqrt(kx**2 + ky**2 + kz**2)
        out = np.empty(omega.shape + (6,))
        out[..., 0] = np.degrees(omega)
        out[..., 1] = np.degrees(tilt)
        out[..., 2] = kx / norm
        out[..., 3] = ky / norm
        out[..., 4] = kz / norm
        out[..., 5] = np.degrees(np.arctan2(kz, ky))
    return out
