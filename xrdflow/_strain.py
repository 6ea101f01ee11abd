"""Lattice strain from fitted peaks: d/d0 - 1 and the relative change of the FWHM."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import xarray as xr

from . import options as O
from . import units as U

__all__ = ["lattice_strain"]


def _named_reference(fits: xr.Dataset, d: xr.DataArray, reference: str, dim: str):
    """(d0, how) for ``reference="first"`` or ``"d0"``."""
    if reference not in O.STRAIN_REFERENCES:
        raise ValueError(f"reference: must be 'first', 'd0', values or a Dataset, got {reference!r}")
    if reference == "first":
        if dim not in fits.dims:
            raise ValueError(f"dim: {dim!r} is not a dim of fits (reference='first')")
        return d.isel({dim: 0}, drop=True), f"first {dim}"
    if "d0" not in fits.coords:
        raise ValueError("reference: 'd0' needs a d0 peak coord")
    d0 = fits["d0"].reset_coords(drop=True)
    if not np.all(np.isfinite(d0.values)):
        raise ValueError("reference: some d0 values are NaN (peaks given without reflections)")
    return d0, "d0 of the reflections"


def _dataset_reference(fits: xr.Dataset, reference: xr.Dataset, dim: str, with_fwhm: bool):
    """(d0, fwhm0 or None, how) from a fits Dataset of a reference measurement."""
    if "d_spacing" not in reference:
        raise ValueError("reference: the reference Dataset needs 'd_spacing'")
    missing = set(fits["peak"].values.tolist()) - set(reference["peak"].values.tolist())
    if missing:
        raise ValueError(f"reference: peaks {sorted(missing)} are not in the reference Dataset")
    ref = reference.sel(peak=fits["peak"])
    d0 = ref["d_spacing"]
    if dim in d0.dims:
        d0 = d0.mean(dim)
    fwhm0 = None
    if with_fwhm and "fwhm" in ref:
        fwhm0 = ref["fwhm"].mean(dim) if dim in ref["fwhm"].dims else ref["fwhm"]
    return d0.reset_coords(drop=True), fwhm0, "reference Dataset"


def _given_reference(fits: xr.Dataset, reference: Any) -> xr.DataArray:
    """d0 along ``peak`` from a sequence (one per peak) or a mapping label -> d0."""
    labels = [str(v) for v in fits["peak"].values]
    if isinstance(reference, Mapping):
        missing = set(labels) - {str(k) for k in reference}
        if missing:
            raise ValueError(f"reference: no d0 for peaks {sorted(missing)}")
        values = np.array([float(reference[k]) for k in labels])
    else:
        values = np.asarray(reference, dtype=float).ravel()
        if values.shape != (len(labels),):
            raise ValueError(f"reference: expected {len(labels)} d0 values, got {values.size}")
    values = O.positive_array(values, "reference")
    return xr.DataArray(values, dims="peak", coords={"peak": fits["peak"].values})


def lattice_strain(fits: xr.Dataset, *, reference: Any = "first", dim: str = "frame") -> xr.Dataset:
    """Add ``lattice_strain = d / d0 - 1`` and ``fwhm_change = fwhm / fwhm0 - 1`` to fits.

    Lazy when ``fits`` is. The frame coords of ``fits`` (``applied_strain``, ``load``...)
    stay on the result, so ``lattice_strain`` can be plotted against applied strain.

    Parameters
    ----------
    fits : xr.Dataset
        Output of :func:`xrdflow.fit_peaks` (needs ``d_spacing``; ``fwhm`` if present).
    reference : "first", "d0", sequence, mapping or xr.Dataset
        Where d0 comes from: ``"first"`` the first frame along ``dim`` (per azimuth and
        peak); ``"d0"`` the ``d0`` peak coord (the reflections' nominal d-spacings);
        a sequence (one value per peak) or mapping label -> d0 in Angstrom; or a fits
        Dataset of a reference measurement (its ``d_spacing``/``fwhm`` averaged over
        ``dim`` if it has it). The FWHM reference is the first frame unless a Dataset
        is given.
    dim : str
        The frame dim.

    Returns
    -------
    xr.Dataset
        ``fits`` with ``lattice_strain``, ``lattice_strain_error``, ``d0_reference`` and
        (when ``fwhm`` is present) ``fwhm_change``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> fits = xr.Dataset({"d_spacing": (("frame", "peak"), [[2.0], [2.002]])},
    ...                   coords={"peak": ["a"]})
    >>> float(lattice_strain(fits).lattice_strain[1, 0])  # doctest: +ELLIPSIS
    0.00099999...
    """
    if not isinstance(fits, xr.Dataset):
        raise ValueError(f"fits: expected an xarray.Dataset, got {type(fits).__name__}")
    if "d_spacing" not in fits:
        raise ValueError("fits: needs a 'd_spacing' variable "
                         "(fit_peaks gives it when the radial unit converts to d)")
    if "peak" not in fits.dims:
        raise ValueError("fits: needs a 'peak' dim")
    d = fits["d_spacing"]
    fwhm = fits.get("fwhm")
    fwhm0 = None
    if isinstance(reference, str):
        d0, how = _named_reference(fits, d, reference, dim)
    elif isinstance(reference, xr.Dataset):
        d0, fwhm0, how = _dataset_reference(fits, reference, dim, fwhm is not None)
    else:
        d0, how = _given_reference(fits, reference), "given d0 values"
    if fwhm is not None and fwhm0 is None and dim in fits.dims:
        fwhm0 = fwhm.isel({dim: 0}, drop=True)

    out = fits.copy()
    out["d0_reference"] = d0.assign_attrs(U.attrs(f"reference d-spacing ({how})", U.ANGSTROM))
    out["lattice_strain"] = (d / d0 - 1.0).assign_attrs(
        U.attrs("lattice strain d/d0 - 1", U.DIMENSIONLESS, reference=how)
    )
    if "d_spacing_error" in fits:
        out["lattice_strain_error"] = (fits["d_spacing_error"] / d0).assign_attrs(
            U.attrs("standard error of the lattice strain (d0 taken as exact)", U.DIMENSIONLESS)
        )
    if fwhm is not None and fwhm0 is not None:
        out["fwhm_change"] = (fwhm / fwhm0.reset_coords(drop=True) - 1.0).assign_attrs(
            U.attrs("relative change of the FWHM, fwhm/fwhm0 - 1", U.DIMENSIONLESS)
        )
    return out
