"""Geometry sweeps: energy x reflection [x thickness] as labeled, lazy data.

For a phase, :func:`sweep` answers for whole ranges at once what an experiment planner asks
one point at a time:

1. is the sample too absorbing or too thick at this energy (attenuation length,
   transmission through ``thickness_mm``, from xraydb's Elam tables);
2. does this reflection at this energy give a diffraction angle the instrument can reach
   (d, q, 2theta, Bragg angle, relative intensity, ``reachable``);
3. how must the mounted crystal be rotated to bring the reflection into the Bragg
   condition (goniometer angles and diffracted-beam direction, NaN where none exists).

Conventions
-----------
Lab frame (right-handed): the incident beam travels along +x, z points up, y = z x x
(horizontal, to the left when looking downstream). Wave vectors in 1/Angstrom with
``|k| = 2 pi / lambda``; a reciprocal lattice vector ``G = 2 pi (h a* + k b* + l c*)``.
The Laue condition is ``k_out - k_in = G_lab``.

Mount: the orientation matrix ``U`` maps the crystal's Cartesian frame (pymatgen's
``lattice.matrix`` frame) to the lab frame with all goniometer angles at zero:
``v_lab = U @ v_cart``. :func:`mount` builds it from a crystal direction ``[uvw]`` or plane
normal ``(hkl)`` that is vertical (along +z, the goniometer axis) and another along the
beam (+x); the beam one is made exactly perpendicular to the vertical one (Gram-Schmidt) and
the angle it had to be moved is recorded.

Goniometer (:func:`goniometer_rotation`): ``R = Rz(omega) @ Rx(chi) @ Ry(phi)``. ``omega``
is a right-handed rotation about the vertical lab axis z (the base circle); ``chi`` and
``phi`` are right-handed tilts about the sample's x and y axes, which coincide with the lab
x (beam) and y axes at omega = 0 and ride on omega. ``G_lab = R @ U @ G_cart``.

* ``stage="omega"`` (one circle): for each reflection and energy there are in general two
  omega solutions (``solution`` = 0, 1), NaN where none exists (the reflection's G is too
  close to the rotation axis, or no Bragg angle exists); the scattering azimuth follows.
* ``stage="omega-chi"`` / ``"omega-phi"`` (two circles: omega plus a tilt chi about the
  sample's x axis, or phi about its y axis): the scattering plane is fixed
  (``scattering_plane="vertical"``: diffracted beam up, in the x-z plane;
  ``"horizontal"``: towards +y, in the x-y plane) and (omega, tilt) solve for it; again two
  solutions, NaN where the tilt axis cannot reach (the inner tilt keeps G's component
  along its own axis, so not every reflection can be put in every plane).

Which reflection is oriented: the indices in the ``reflection`` label. By default these are
the family representatives (``"Mg 10-10"`` -> (1, 0, 0)); pass ``reflections=[...]`` with
specific members (``"01-10"``, ``(0, 1, 0)``) to get the angles for those. Families'
other members have other angles: they are separate reflections for orientation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import crystal
from .crystal import PhaseLike
from .units import HC_KEV_A

__all__ = [
    "Mount",
    "mount",
    "goniometer_rotation",
    "parse_indices",
    "sweep",
    "sweep_table",
]

#: energy x reflection points per dask chunk when ``chunks`` is not given
TARGET_CHUNK_POINTS = 500_000


# --------------------------------------------------------------------------------------
# indices and mounts
# --------------------------------------------------------------------------------------
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


def _to_three(kind: str, idx: tuple[int, ...], text: Any) -> np.ndarray:
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


def _cartesian(structure, spec: Any) -> np.ndarray:
    kind, idx = parse_indices(spec) if isinstance(spec, str) else (
        (spec[0], tuple(spec[1])) if (len(spec) == 2 and isinstance(spec[0], str))
        else parse_indices(spec))
    if kind not in ("uvw", "hkl"):
        raise ValueError(f"index kind must be 'uvw' or 'hkl', got {kind!r}")
    three = _to_three(kind, tuple(int(v) for v in idx), spec)
    if kind == "uvw":
        return three @ structure.lattice.matrix
    return three @ structure.lattice.reciprocal_lattice.matrix


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


def mount(phase: PhaseLike, *, vertical: Any, beam: Any) -> Mount:
    """Orientation from a crystal direction/plane normal vertical and another along the beam.

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen Structure (gives the lattice).
    vertical
        Along the goniometer axis (lab +z): ``"[uvw]"``/``"[uvtw]"`` for a direction,
        ``"(hkl)"``/``"(hkil)"`` for a plane normal, or ``("uvw", (u, v, w))``.
    beam
        Along the incident beam (lab +x), same forms. Projected perpendicular to
        ``vertical`` if needed (the angle moved is ``Mount.beam_adjustment_deg``).

    Examples
    --------
    >>> m = mount("Mg", vertical="[0001]", beam="[2-1-10]")
    >>> np.round(m.matrix @ np.array([0.0, 0.0, 1.0]), 12).tolist()  # c axis -> up
    [0.0, 0.0, 1.0]
    """
    structure = crystal.load_phase(phase)
    z = _cartesian(structure, vertical)
    x = _cartesian(structure, beam)
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


def _as_mount(phase: PhaseLike, value: Any) -> Mount | None:
    if value is None or isinstance(value, Mount):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"vertical", "beam"}
        if unknown or len(value) != 2:
            raise ValueError("mount: a mapping needs exactly the keys 'vertical' and 'beam'")
        return mount(phase, vertical=value["vertical"], beam=value["beam"])
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


# --------------------------------------------------------------------------------------
# numpy kernels (one energy block at a time)
# --------------------------------------------------------------------------------------
def _sin_theta(energy: np.ndarray, d: np.ndarray) -> np.ndarray:
    s = (HC_KEV_A / energy)[:, None] / (2.0 * d[None, :])
    return np.where(s <= 1.0, s, np.nan)


def _k_theta_block(energy: np.ndarray, d: np.ndarray, what: str) -> np.ndarray:
    s = _sin_theta(energy, d)
    theta = np.degrees(np.arcsin(s))
    return 2.0 * theta if what == "two_theta" else theta


def _intensity_block(energy: np.ndarray, d: np.ndarray, f2m: np.ndarray, lp: bool) -> np.ndarray:
    s = _sin_theta(energy, d)
    raw = np.broadcast_to(f2m, s.shape).astype(float)
    if lp:
        t = np.arcsin(s)
        raw = raw * (1.0 + np.cos(2 * t) ** 2) / (s**2 * np.cos(t))
    raw = np.where(np.isfinite(s), raw, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        top = np.nanmax(np.where(np.isfinite(raw), raw, -np.inf), axis=1, keepdims=True)
        out = 100.0 * raw / top
    return np.where(np.isfinite(out), out, np.nan)


def _mu_block(energy: np.ndarray, elements: dict, rho: float) -> np.ndarray:
    return crystal._mu_per_mm(elements, rho, energy)


def _orient_block(energy: np.ndarray, g0: np.ndarray, stage: str, plane: str) -> np.ndarray:
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
            c = np.where(np.abs(c) <= 1.0, c, np.nan)
            omega = sign * np.arccos(c) - phi  # (E,R,2)
        else:
            # target G in the lab: |G| (-sin t, cos t n), n = +z (vertical) or +y (horizontal)
            st = gn / (2.0 * k)
            st = np.where(st <= 1.0, st, np.nan)
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


# --------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------
def _energies(energy_kev: Any) -> np.ndarray:
    e = np.atleast_1d(np.asarray(energy_kev, dtype=float))
    if e.ndim != 1 or e.size == 0:
        raise ValueError("energy_kev must be a scalar or a 1-D array of energies")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"energy_kev must be finite and > 0 (got min {np.nanmin(e)!r})")
    if len(np.unique(e)) != e.size:
        raise ValueError("energy_kev must not contain duplicates")
    return e


def _select_reflections(structure, name: str, wanted: Any, d_lo: float, symprec: float,
                        debye_waller_factors) -> dict[str, np.ndarray]:
    """Reflection table: labels, hkl strings, h k l, d, multiplicity, |F|^2."""
    hexagonal = structure.lattice.is_hexagonal()
    if wanted is None:
        fam = crystal._families(structure, d_lo, symprec=symprec,
                                debye_waller_factors=debye_waller_factors)
        hkl = fam["hkl"]
        d, mult, f2 = fam["d"], fam["multiplicity"], fam["f2"]
    else:
        if isinstance(wanted, xr.Dataset):
            hkl = np.stack([wanted.h.values, wanted.k.values, wanted.l.values], axis=1)
        else:
            if isinstance(wanted, str) or (
                    isinstance(wanted, Sequence) and wanted and isinstance(wanted[0], int)):
                wanted = [wanted]
            rows = []
            for item in wanted:
                text = item
                if isinstance(item, str) and item.startswith(name + " "):
                    text = item[len(name) + 1:]
                kind, idx = parse_indices(text)
                if kind != "hkl":
                    raise ValueError(f"reflections: {item!r} is a direction, not a reflection")
                rows.append(_to_three("hkl", idx, item).astype(np.int64))
            hkl = np.array(rows, dtype=np.int64).reshape(-1, 3)
        if len(hkl) == 0:
            raise ValueError("reflections: empty selection")
        recip = structure.lattice.reciprocal_lattice_crystallographic.matrix
        d = 1.0 / np.linalg.norm(hkl @ recip, axis=1)
        mult = crystal._multiplicity(structure, hkl, symprec)
        f2 = crystal._structure_factor_sq(structure, hkl, debye_waller_factors)
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], -np.round(d, 10)))
    hkl, d, mult, f2 = hkl[order], d[order], mult[order], f2[order]
    labels = [crystal._hkl_label(r, hexagonal) for r in hkl]
    full = [f"{name} {lab}" for lab in labels]
    if len(set(full)) != len(full):
        raise ValueError("reflections: the same reflection is listed twice")
    return dict(label=np.array(full, dtype=str), hkl_str=np.array(labels, dtype=str),
                hkl=np.asarray(hkl, dtype=np.int64), d=d, mult=np.asarray(mult, np.int64),
                f2=np.asarray(f2, float))


def sweep(
    phase: PhaseLike,
    *,
    energy_kev: Any,
    reflections: Any = None,
    thickness_mm: Any = None,
    two_theta_range: tuple[float, float] | None = None,
    transmission_range: tuple[float, float] = (0.05, 1.0),
    mount: Any = None,
    stage: str = "omega",
    scattering_plane: str = "vertical",
    d_min: float | None = None,
    density: float | None = None,
    lorentz_polarization: bool = True,
    name: str | None = None,
    debye_waller_factors: Mapping[str, float] | None = None,
    symprec: float = 0.01,
    chunks: int | None = None,
) -> xr.Dataset:
    """Diffraction geometry and absorption over energy x reflection [x thickness], lazily.

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen Structure.
    energy_kev
        Photon energies (keV), scalar or 1-D array (no duplicates).
    reflections
        ``None``: every reflection family with ``d >= d_min`` that reaches 2theta <=
        ``two_theta_range[1]`` at the highest energy. Else a list of indices (``"10-10"``,
        ``"Mg 01-10"``, ``(0, 1, 0)``) or a Dataset from :func:`xrdflow.reflections`; given
        indices are kept as given (specific members, see the module docstring).
    thickness_mm
        Sample thickness along the beam (mm): a scalar, or a 1-D array giving a
        ``thickness`` dimension. ``None``: no transmission, ``reachable`` from 2theta only.
    two_theta_range
        The 2theta range (deg) the instrument reaches; default (0, 180).
    transmission_range
        Window of acceptable transmission (fraction) for ``reachable``.
    mount
        Crystal orientation: a :class:`Mount`, ``{"vertical": "[0001]", "beam": "[2-1-10]"}``
        or a 3x3 U matrix. ``None``: no orientation variables.
    stage
        ``"omega"`` (rotation about the vertical axis only), ``"omega-chi"`` (plus the tilt
        chi about the sample's x axis) or ``"omega-phi"`` (tilt phi about its y axis); the
        two-circle stages fix the scattering plane.
    scattering_plane
        For two-circle stages: ``"vertical"`` (diffracted beam up) or ``"horizontal"``
        (towards +y).
    d_min
        Smallest d (A) considered when ``reflections`` is None; default 0.5 A when the 2theta
        range does not already limit it.
    density
        g/cm^3 for the absorption; default the crystal density.
    lorentz_polarization
        Include the Lorentz-polarization factor in ``intensity`` (as in
        :func:`xrdflow.reflections`).
    name
        Phase label in the reflection labels; default as :func:`xrdflow.reflections`.
    debye_waller_factors, symprec
        As in :func:`xrdflow.reflections`.
    chunks
        Energies per dask chunk; default about 500,000 energy x reflection points a chunk.

    Returns
    -------
    xarray.Dataset
        Dims ``energy``, ``reflection`` (labels as :func:`xrdflow.reflections`), ``thickness``
        (if an array was given), ``solution`` (2) and ``xyz`` (3) with a mount. Per
        reflection: ``d_spacing``, ``q``, ``multiplicity``, ``structure_factor_sq`` (numpy).
        Lazy (dask, chunked along energy): ``two_theta``, ``bragg_angle`` (deg),
        ``intensity`` (strongest = 100 at each energy), ``attenuation_length`` (mm),
        ``transmission``, ``reachable`` (bool); with a mount ``omega`` [, ``chi`` or ``phi``] (deg),
        ``diffracted_direction`` (unit vector, lab frame) and ``eta`` (deg, azimuth of the
        diffracted beam about the incident beam, 0 = +y, 90 = +z).

    Examples
    --------
    >>> ds = sweep("Mg", energy_kev=np.linspace(30, 90, 61), thickness_mm=5.0,
    ...            two_theta_range=(2.0, 12.0), mount={"vertical": "[0001]", "beam": "[2-1-10]"})
    >>> float(ds.two_theta.sel(energy=90.0, reflection="Mg 10-10").round(3))
    2.84
    >>> bool(ds.reachable.sel(energy=30.0, reflection="Mg 10-10"))
    True
    """
    from . import __version__

    import dask.array as da

    energy = _energies(energy_kev)
    tt_rng = crystal._check_range(two_theta_range, "two_theta_range", 0.0, 180.0) or (0.0, 180.0)
    tr_rng = crystal._check_range(transmission_range, "transmission_range", 0.0, 1.0)
    if d_min is not None:
        d_min = float(crystal._positive(d_min, "d_min"))
    if stage not in ("omega", "omega-chi", "omega-phi"):
        raise ValueError(f"stage must be 'omega', 'omega-chi' or 'omega-phi', got {stage!r}")
    if scattering_plane not in ("vertical", "horizontal"):
        raise ValueError(
            f"scattering_plane must be 'vertical' or 'horizontal', got {scattering_plane!r}")
    thick = None
    if thickness_mm is not None:
        thick = np.asarray(thickness_mm, dtype=float)
        if thick.ndim > 1 or thick.size == 0 or np.any(~np.isfinite(thick)) or np.any(thick < 0):
            raise ValueError(f"thickness_mm must be >= 0, scalar or 1-D, got {thickness_mm!r}")
    if chunks is not None and (int(chunks) != chunks or chunks < 1):
        raise ValueError(f"chunks must be a positive integer, got {chunks!r}")

    structure = crystal.load_phase(phase)
    label = name or crystal.phase_name(phase)
    mnt = _as_mount(structure, mount)
    elements, rho = crystal._composition(structure, density)

    # reflections: all that can reach 2theta <= hi at the highest energy
    lam_min = HC_KEV_A / energy.max()
    bounds = [lam_min / 2.0]
    if d_min is not None:
        bounds.append(d_min)
    if tt_rng[1] < 180.0:
        bounds.append(lam_min / (2.0 * math.sin(math.radians(tt_rng[1]) / 2.0)))
    if len(bounds) == 1:
        bounds.append(crystal.DEFAULT_D_MIN)
    table = _select_reflections(structure, label, reflections, max(bounds), symprec,
                                debye_waller_factors)
    n_refl = len(table["d"])
    if n_refl == 0:
        raise ValueError("reflections: no reflection satisfies the ranges given")

    per_chunk = int(chunks) if chunks else max(1, TARGET_CHUNK_POINTS // n_refl)
    e_da = da.from_array(energy, chunks=per_chunk)
    d = table["d"]
    f2m = table["f2"] * table["mult"]
    meta2 = np.empty((0, 0), dtype=float)

    def per_er(func, **kw):
        return da.map_blocks(func, e_da, new_axis=[1], chunks=(e_da.chunks[0], (n_refl,)),
                             dtype=float, meta=meta2, **kw)

    two_theta = per_er(_k_theta_block, d=d, what="two_theta")
    bragg = per_er(_k_theta_block, d=d, what="theta")
    intensity = per_er(_intensity_block, d=d, f2m=f2m, lp=bool(lorentz_polarization))
    mu = da.map_blocks(_mu_block, e_da, elements=elements, rho=rho, dtype=float,
                       meta=np.empty((0,), float))
    att = 1.0 / mu

    e_dims = ("energy",)
    er = ("energy", "reflection")
    data_vars: dict[str, Any] = {}
    coords: dict[str, Any] = dict(
        energy=("energy", energy, dict(units="keV", long_name="photon energy")),
        wavelength=("energy", HC_KEV_A / energy, dict(units="angstrom", long_name="wavelength")),
        reflection=("reflection", table["label"], dict(units="", long_name="reflection label")),
        hkl=("reflection", table["hkl_str"],
             dict(units="", long_name="Miller (Miller-Bravais for hexagonal) indices")),
        phase=("reflection", np.full(n_refl, label), dict(units="", long_name="phase")),
        h=("reflection", table["hkl"][:, 0], dict(units="1", long_name="Miller index h")),
        k=("reflection", table["hkl"][:, 1], dict(units="1", long_name="Miller index k")),
        l=("reflection", table["hkl"][:, 2], dict(units="1", long_name="Miller index l")),
        coincident=("reflection", crystal._coincident(table["label"], d), dict(
            units="", long_name="other reflections at the same d (not symmetry-equivalent)")),
    )
    data_vars["d_spacing"] = ("reflection", d, dict(units="angstrom", long_name="d-spacing"))
    data_vars["q"] = ("reflection", 20.0 * np.pi / d,
                      dict(units="1/nm", long_name="scattering vector length q = 2 pi/d"))
    data_vars["multiplicity"] = ("reflection", table["mult"],
                                 dict(units="1", long_name="multiplicity of the reflection family"))
    data_vars["structure_factor_sq"] = ("reflection", table["f2"],
                                        dict(units="electron^2", long_name="|F|^2 of one member"))
    data_vars["two_theta"] = (er, two_theta, dict(
        units="deg", long_name="scattering angle 2theta (NaN: no Bragg reflection)"))
    data_vars["bragg_angle"] = (er, bragg, dict(units="deg", long_name="Bragg angle theta"))
    data_vars["intensity"] = (er, intensity, dict(
        units="1", long_name="relative intensity (strongest = 100 at each energy)",
        lorentz_polarization=int(bool(lorentz_polarization))))
    data_vars["attenuation_length"] = (e_dims, att, dict(
        units="mm", long_name="X-ray attenuation length (1/e), xraydb Elam total"))

    tt_ok = (two_theta >= tt_rng[0]) & (two_theta <= tt_rng[1])
    if thick is not None:
        if thick.ndim == 1:
            coords["thickness"] = ("thickness", thick, dict(units="mm", long_name="sample thickness"))
            trans = da.exp(-mu[:, None] * thick[None, :])
            data_vars["transmission"] = (("energy", "thickness"), trans, dict(
                units="1", long_name="transmission through the sample"))
            tr_ok = (trans >= tr_rng[0]) & (trans <= tr_rng[1])
            reach = tt_ok[:, :, None] & tr_ok[:, None, :]
            reach_dims = ("energy", "reflection", "thickness")
        else:
            coords["thickness"] = ((), float(thick), dict(units="mm", long_name="sample thickness"))
            trans = da.exp(-mu * float(thick))
            data_vars["transmission"] = (e_dims, trans, dict(
                units="1", long_name="transmission through the sample"))
            tr_ok = (trans >= tr_rng[0]) & (trans <= tr_rng[1])
            reach = tt_ok & tr_ok[:, None]
            reach_dims = er
    else:
        reach, reach_dims = tt_ok, er
    data_vars["reachable"] = (reach_dims, reach, dict(
        units="1", long_name="2theta inside two_theta_range and transmission inside "
                             "transmission_range"))

    if mnt is not None:
        g_cart = table["hkl"].astype(float) @ structure.lattice.reciprocal_lattice.matrix
        g0 = g_cart @ mnt.matrix.T  # (R, 3) lab frame at zero angles
        coords["solution"] = ("solution", np.array([0, 1]),
                              dict(units="1", long_name="goniometer solution index"))
        coords["xyz"] = ("xyz", np.array(["x", "y", "z"]),
                         dict(units="", long_name="lab axis (x beam, z up)"))
        ers = ("energy", "reflection", "solution")
        solved = da.map_blocks(_orient_block, e_da, new_axis=[1, 2, 3],
                               chunks=(e_da.chunks[0], (n_refl,), (2,), (6,)), dtype=float,
                               meta=np.empty((0, 0, 0, 0), float), g0=g0, stage=stage,
                               plane=scattering_plane)
        data_vars["omega"] = (ers, solved[..., 0], dict(
            units="deg", long_name="goniometer rotation about the vertical axis z "
                                   "(NaN: no solution)"))
        if stage != "omega":
            axis = "x" if stage == "omega-chi" else "y"
            data_vars[stage.split("-")[1]] = (ers, solved[..., 1], dict(
                units="deg", long_name=f"tilt about the sample {axis} axis (riding on omega)"))
        data_vars["diffracted_direction"] = (ers + ("xyz",), solved[..., 2:5], dict(
            units="1", long_name="unit vector of the diffracted beam, lab frame"))
        data_vars["eta"] = (ers, solved[..., 5], dict(
            units="deg", long_name="azimuth of the diffracted beam about the beam (0 = +y, 90 = +z)"))

    ds = xr.Dataset(data_vars=data_vars, coords=coords)
    ds.attrs.update(
        title="xrdflow geometry sweep",
        xrdflow_version=__version__,
        phase=label,
        phase_reference=crystal._reference(phase),
        space_group=structure.get_space_group_info(symprec=symprec)[0],
        lattice_abc_angstrom=", ".join(f"{v:.6f}" for v in structure.lattice.abc),
        lattice_angles_deg=", ".join(f"{v:.4f}" for v in structure.lattice.angles),
        composition=structure.composition.reduced_formula,
        density_g_cm3=rho,
        two_theta_range=list(tt_rng),
        transmission_range=list(tr_rng),
        lorentz_polarization=int(bool(lorentz_polarization)),
        lab_frame="beam along +x, z up, y = z cross x; G_lab = Rz(omega) Rx(chi) Ry(phi) U G_cart",
    )
    if mnt is not None:
        ds.attrs.update(
            mount=mnt.description,
            mount_U=mnt.matrix.ravel().tolist(),
            mount_beam_adjustment_deg=mnt.beam_adjustment_deg,
            stage=stage,
            scattering_plane=scattering_plane if stage != "omega" else "free",
        )
    return ds


# --------------------------------------------------------------------------------------
# reporting and export
# --------------------------------------------------------------------------------------
def sweep_table(ds: xr.Dataset, energy_kev: float, *, thickness_mm: float | None = None,
                reachable_only: bool = True) -> str:
    """Plain-text table of the reflections at the sweep energy nearest ``energy_kev``.

    Parameters
    ----------
    ds
        A dataset from :func:`sweep`.
    energy_kev
        Energy (keV); the nearest energy of the sweep is used (stated in the header).
    thickness_mm
        For a sweep with a thickness dimension: the thickness to report (nearest).
    reachable_only
        List only reachable reflections.

    Examples
    --------
    >>> ds = sweep("Mg", energy_kev=[87.1], two_theta_range=(2.5, 3.5))
    >>> print(sweep_table(ds, 87.1).splitlines()[0])
    Mg at 87.1 keV (lambda = 0.142347 A), 2theta range 2.5-3.5 deg: 3 of 3 reflections reachable
    """
    e = float(crystal._positive(energy_kev, "energy_kev"))
    row = ds.sel(energy=e, method="nearest")
    if "thickness" in row.dims:
        if thickness_mm is None:
            raise ValueError("thickness_mm: the sweep has several thicknesses, choose one")
        row = row.sel(thickness=thickness_mm, method="nearest")
    row = row.compute()
    reach = row.reachable.values.astype(bool)
    n_all = int(row.sizes["reflection"])
    lo, hi = ds.attrs.get("two_theta_range", [0.0, 180.0])
    head = (f"{ds.attrs.get('phase', '')} at {float(row.energy):g} keV "
            f"(lambda = {float(row.wavelength):.6f} A), 2theta range {lo:g}-{hi:g} deg: "
            f"{int(reach.sum())} of {n_all} reflections reachable")
    lines = [head]
    if "transmission" in row:
        lines.append(f"thickness {float(row.thickness):g} mm: transmission "
                     f"{float(row.transmission):.4g}, attenuation length "
                     f"{float(row.attenuation_length):.4g} mm")
    else:
        lines.append(f"attenuation length {float(row.attenuation_length):.4g} mm")
    cols = ["reflection", "d (A)", "q (1/nm)", "2theta", "theta", "mult", "I rel", "reach"]
    has_omega = "omega" in row
    if has_omega:
        cols += ["omega1", "omega2"]
    tilt_name = "chi" if "chi" in row else ("phi" if "phi" in row else None)
    if tilt_name:
        cols += [f"{tilt_name}1", f"{tilt_name}2"]
    rows = []
    for i in range(n_all):
        if reachable_only and not reach[i]:
            continue
        r = row.isel(reflection=i)
        vals = [str(r.reflection.values), f"{float(r.d_spacing):.5f}", f"{float(r.q):.3f}",
                f"{float(r.two_theta):.4f}", f"{float(r.bragg_angle):.4f}",
                f"{int(r.multiplicity)}", f"{float(r.intensity):.2f}",
                "yes" if reach[i] else "no"]
        if has_omega:
            vals += [f"{v:.3f}" for v in r.omega.values]
        if tilt_name:
            vals += [f"{v:.3f}" for v in r[tilt_name].values]
        rows.append(vals)
    widths = [max(len(c), *(len(v[j]) for v in rows)) if rows else len(c)
              for j, c in enumerate(cols)]
    lines.append("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(cols, widths))))
    for vals in rows:
        lines.append("  ".join(v.rjust(w) if j else v.ljust(w)
                               for j, (v, w) in enumerate(zip(vals, widths))))
    return "\n".join(lines)
