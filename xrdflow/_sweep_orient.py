"""The orientation variables of :func:`xrdflow.sweep`: goniometer solutions over energy x
reflection, lazily (conventions: :mod:`xrdflow._sweep`).

``orientation_vars`` for the one- and two-circle stages (:func:`xrdflow._mounts.orient_block`),
``shortest_path_vars`` for ``stage="shortest-path"``
(:func:`xrdflow._goniometer.shortest_path_block`); both solve one dask block of energies at
a time through :func:`_solve_blocks`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ._goniometer import Goniometer, shortest_path_block
from ._mounts import Mount, goniometer_rotation, orient_block
from .units import DEGREE, DIMENSIONLESS, MM, attrs

__all__ = ["orientation_vars", "shortest_path_vars"]

_ERS = ("energy", "reflection", "solution")

_ROTATION_ATTRS = attrs("stage rotation R: G_lab = R U G_cart (rows lab, columns sample)",
                        DIMENSIONLESS)


def _g0_lab(table: xr.Dataset, structure, mnt: Mount) -> np.ndarray:
    hkl = np.stack([table[i].values for i in ("h", "k", "l")], axis=1)
    g_cart = hkl.astype(float) @ structure.lattice.reciprocal_lattice.matrix
    return g_cart @ mnt.matrix.T  # (R, 3) lab frame at zero angles


def _solve_blocks(kernel, e_da, table: xr.Dataset, structure, mnt: Mount, n_fields: int,
                  coords: dict, **kw):
    """``kernel(energy_block, g0=..., **kw)`` -> (energy, reflection, solution, field), lazily;
    adds the coordinates of the orientation dims to ``coords``."""
    import dask.array as da

    coords["solution"] = ("solution", np.array([0, 1]),
                          attrs("goniometer solution index", DIMENSIONLESS))
    coords["xyz"] = ("xyz", np.array(["x", "y", "z"]), attrs("lab axis (x beam, z up)", units=""))
    coords["lab"] = ("lab", np.array(["x", "y", "z"]),
                     attrs("row of the rotation: lab axis (x beam, z up)", units=""))
    coords["sample"] = ("sample", np.array(["x", "y", "z"]), attrs(
        "column of the rotation: sample axis (the lab axis at zero angles)", units=""))
    return da.map_blocks(kernel, e_da, new_axis=[1, 2, 3],
                         chunks=(e_da.chunks[0], (table.sizes["reflection"],), (2,), (n_fields,)),
                         dtype=float, meta=np.empty((0, 0, 0, 0), float),
                         g0=_g0_lab(table, structure, mnt), **kw)


def _beam_vars(solved, first: int) -> dict[str, Any]:
    """diffracted_direction (fields first..first+2) and eta (first+3)."""
    return dict(
        diffracted_direction=(_ERS + ("xyz",), solved[..., first:first + 3], attrs(
            "unit vector of the diffracted beam, lab frame", DIMENSIONLESS)),
        eta=(_ERS, solved[..., first + 3], attrs(
            "azimuth of the diffracted beam about the beam (0 = +y, 90 = +z)", DEGREE)),
    )


def _rotation_block(solved: np.ndarray, stage: str) -> np.ndarray:
    tilt = solved[..., 1]
    zero = np.zeros_like(tilt)
    chi, phi = (tilt, zero) if stage == "omega-chi" else (
        (zero, tilt) if stage == "omega-phi" else (zero, zero))
    return goniometer_rotation(solved[..., 0], chi, phi)


def orientation_vars(e_da, table: xr.Dataset, structure, mnt: Mount, stage: str,
                     plane: str, coords: dict) -> dict[str, Any]:
    """omega [, chi or phi], rotation, diffracted_direction and eta (adds the dims' coords)."""
    import dask.array as da

    solved = _solve_blocks(orient_block, e_da, table, structure, mnt, 6, coords,
                           stage=stage, plane=plane)
    out: dict[str, Any] = dict(omega=(_ERS, solved[..., 0], attrs(
        "goniometer rotation about the vertical axis z (NaN: no solution)", DEGREE)))
    if stage != "omega":
        axis = "x" if stage == "omega-chi" else "y"
        out[stage.split("-")[1]] = (_ERS, solved[..., 1], attrs(
            f"tilt about the sample {axis} axis (riding on omega)", DEGREE))
    rot = da.map_blocks(_rotation_block, solved, stage=stage, drop_axis=[3], new_axis=[3, 4],
                        chunks=solved.chunks[:3] + ((3,), (3,)), dtype=float,
                        meta=np.empty((0, 0, 0, 0, 0), float))
    out["rotation"] = (_ERS + ("lab", "sample"), rot, _ROTATION_ATTRS)
    out.update(_beam_vars(solved, 2))
    return out


def _angles_block(rot: np.ndarray, gonio: Goniometer) -> np.ndarray:
    return gonio.angles(rot)


def shortest_path_vars(e_da, table: xr.Dataset, structure, mnt: Mount, plane: str,
                       gonio: Goniometer, normal: np.ndarray, mu, thickness,
                       coords: dict) -> dict[str, Any]:
    """The shortest-path stage: rotation, goniometer angles, path, entry/exit angles."""
    import dask.array as da

    solved = _solve_blocks(shortest_path_block, e_da, table, structure, mnt, 16, coords,
                           n0=normal, plane=plane)
    rot = solved[..., :9].reshape(solved.shape[:3] + (3, 3))
    angles = da.map_blocks(_angles_block, rot, gonio=gonio, drop_axis=[3, 4], new_axis=[3],
                           chunks=rot.chunks[:3] + ((len(gonio.axes),),), dtype=float,
                           meta=np.empty((0, 0, 0, 0), float))
    out: dict[str, Any] = {}
    for i, axis in enumerate(gonio.axes):
        out[axis.name] = (_ERS, angles[..., i], attrs(
            f"{gonio.name} stage angle {axis.name}, about "
            f"{'-' if axis.sense < 0 else ''}({', '.join(f'{v:g}' for v in axis.direction)}) "
            f"at zero angles (NaN: no transmission solution)", DEGREE))
    out["rotation"] = (_ERS + ("lab", "sample"), rot, _ROTATION_ATTRS)
    out["path_factor"] = (_ERS, solved[..., 9], attrs(
        "mean path through the plate / plate thickness (incident + diffracted, averaged "
        "over the diffracting depth)", DIMENSIONLESS))
    out["entry_angle"] = (_ERS, solved[..., 10], attrs(
        "angle between the incident beam and the plate normal", DEGREE))
    out["exit_angle"] = (_ERS, solved[..., 11], attrs(
        "angle between the diffracted beam and the plate normal", DEGREE))
    if thickness is not None:
        thick = np.asarray(thickness, dtype=float)
        if thick.ndim == 1:
            path = solved[..., 9][..., None] * thick
            dims = _ERS + ("thickness",)
            trans = da.exp(-mu[:, None, None, None] * path)
        else:
            path = solved[..., 9] * float(thick)
            dims = _ERS
            trans = da.exp(-mu[:, None, None] * path)
        out["path_length"] = (dims, path, attrs(
            "mean path of the beams through the plate", MM))
        out["path_transmission"] = (dims, trans, attrs(
            "transmission along the mean path of the beams through the plate", DIMENSIONLESS))
    out.update(_beam_vars(solved, 12))
    return out
