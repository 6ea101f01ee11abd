"""Lattice strain from fitted peaks (d/d0 - 1, the relative change of the FWHM) and the
strain tensor of every ring from its azimuthal sectors (:func:`strain_tensor`)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import xarray as xr

from . import options as O
from . import units as U

__all__ = ["lattice_strain", "strain_tensor"]


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


# --------------------------------------------------------------------------- strain tensors
_AXES = ("sample frame: axis 1 along the load (detector plane, chi = load_azimuth_deg), axis 2 "
         "across it in the detector plane (chi = load_azimuth_deg + 90), axis 3 along the beam")
_OUT_ATTRS = {
    "strain_axial": "lattice strain along the load, E11",
    "strain_transverse": "lattice strain across the load in the detector plane, E22",
    "strain_shear": "in-plane shear lattice strain, E12 (tensor component)",
    "strain_out_of_plane": "lattice strain along the beam, E33 (from the stated assumption)",
}


def _check_tensor_args(fits, model, reference, load_azimuth_deg, poisson_ratio, out_of_plane,
                       min_sectors, wavelength_a, exact_geometry, dim):
    if not isinstance(fits, xr.Dataset):
        raise ValueError(f"fits: expected an xarray.Dataset, got {type(fits).__name__}")
    for name in ("d_spacing", "d_spacing_error", "status"):
        if name not in fits:
            raise ValueError(f"fits: needs {name!r} (fit_peaks output with a wavelength)")
    if "azimuth" not in fits.dims or "peak" not in fits.dims:
        raise ValueError("fits: needs 'azimuth' and 'peak' dims (integrate with azimuth_sectors, "
                         "then fit_peaks)")
    if "azimuth" not in fits.coords:
        raise ValueError("fits: needs an 'azimuth' coord (sector centres, pyFAI chi in degrees)")
    O.choice(model, "model", O.STRAIN_TENSOR_MODELS)
    if isinstance(reference, str):
        O.choice(reference, "reference", O.TENSOR_REFERENCES)
        if reference in ("first", "unstrained") and dim not in fits.dims:
            raise ValueError(f"dim: {dim!r} is not a dim of fits (reference={reference!r})")
    load = O.number(load_azimuth_deg, "load_azimuth_deg")
    nu = O.number(poisson_ratio, "poisson_ratio")
    if not 0.0 <= nu < 0.5:
        raise ValueError(f"poisson_ratio: must be in [0, 0.5), got {poisson_ratio!r}")
    if not (isinstance(out_of_plane, str) and out_of_plane in O.OUT_OF_PLANE):
        if isinstance(out_of_plane, str):
            raise ValueError(f"out_of_plane: must be 'plane-stress' or a strain value, got {out_of_plane!r}")
        out_of_plane = O.number(out_of_plane, "out_of_plane")
    min_sectors = O.positive_int(min_sectors, "min_sectors")
    if min_sectors < 3:
        raise ValueError(f"min_sectors: must be >= 3 (three unknowns), got {min_sectors}")
    exact = O.boolean(exact_geometry, "exact_geometry")
    if wavelength_a is None:
        wavelength_a = fits.attrs.get("wavelength_a")
    if wavelength_a is not None and np.isfinite(float(wavelength_a)):
        wavelength_a = O.positive(float(wavelength_a), "wavelength_a")
    elif exact:
        raise ValueError("wavelength_a: needed for the exact geometry (theta); not in fits.attrs "
                         "(pass wavelength_a, or exact_geometry=False for theta = 0)")
    else:
        wavelength_a = None
    return load, nu, out_of_plane, min_sectors, exact, wavelength_a


def _half_widths(fits):
    """Sector half widths (radians) from the integration's coords, or None (points)."""
    if "sector_half_width" in fits.coords:
        hw = np.asarray(fits["sector_half_width"].values, dtype=float)
    elif "azimuth_min" in fits.coords and "azimuth_max" in fits.coords:
        hw = 0.5 * (np.asarray(fits["azimuth_max"].values, float) - np.asarray(fits["azimuth_min"].values, float))
    else:
        return None
    if hw.shape != (fits.sizes["azimuth"],) or not np.all(np.isfinite(hw)):
        return None
    return np.radians(hw)


def _sector_strain(fits, reference, dim, kernel):
    """(y, err, d0 variables to keep, fit_d0) of the sectors for each d0 strategy."""
    d, derr = fits["d_spacing"], fits["d_spacing_error"]
    if isinstance(reference, str) and reference == "fit":
        return d, derr, {}, True
    if isinstance(reference, str) and reference == "unstrained":
        first = kernel(fits.isel({dim: [0]}), d.isel({dim: [0]}), derr.isel({dim: [0]}), True)
        d0 = first.isel({dim: 0, "tensor_output": 8}, drop=True)
        d0e = first.isel({dim: 0, "tensor_output": 9}, drop=True)
        keep = {"d0": d0.assign_attrs(U.attrs("strain-free d-spacing (unstrained direction of the "
                                              f"first {dim}, uniaxial stress)", U.ANGSTROM)),
                "d0_error": d0e.assign_attrs(U.attrs("standard error of d0", U.ANGSTROM))}
        return d / d0 - 1.0, derr / d0, keep, False
    ls = lattice_strain(fits, reference=reference, dim=dim)
    d0 = ls["d0_reference"]
    err = ls["lattice_strain_error"]
    if isinstance(reference, str) and reference == "first":  # the reference's own noise, per sector
        d0e = derr.isel({dim: 0}, drop=True)
        err = np.sqrt(derr ** 2 + (d / d0) ** 2 * d0e ** 2) / d0
    return ls["lattice_strain"], err, {"d0_reference": d0}, False


def strain_tensor(fits: xr.Dataset, *, reference: Any = "first", load_azimuth_deg: float = 0.0,
                  model: str = "in-plane", out_of_plane: Any = "plane-stress",
                  poisson_ratio: float = 0.3, exact_geometry: bool = True,
                  wavelength_a: float | None = None, min_sectors: int = 4,
                  scale_errors: bool = True, elastic: Any = None, approximation: str = "kroner",
                  dim: str = "frame") -> xr.Dataset:
    """Strain tensor components of every ring (frame x peak) from its azimuthal sectors.

    Lazy when ``fits`` is (one vectorised least-squares solve per dask block, no loop over
    frames). Sectors whose fit is not ok (``status != 0``) or whose d-spacing or error is
    not finite are left out; a (frame, peak) with fewer than ``min_sectors`` good sectors
    gets NaN and ``status = too_few_sectors``.

    Geometry and conventions. ``azimuth`` is pyFAI's chi (degrees) of the integration
    (:func:`xrdflow.integrate` with ``azimuth_sectors``; sector centres, whatever the
    detector orientation pyFAI was given), and ``load_azimuth_deg`` is the load axis in the
    same chi. Lab frame: beam along axis 1, chi measured from lab axis 2 to lab axis 3, so
    a sector's unit scattering vector is ``q = (-sin theta, cos theta cos chi, cos theta sin
    chi)`` with ``theta = arcsin(wavelength / 2d)`` (d: the mean of the frame's good sectors).
    Sample frame: axis 1 along the load (chi = load), axis 2 across it in the detector plane
    (chi = load + 90 deg), axis 3 along the beam. A sector sees ``eps = n.E.n`` with ``n1 =
    cos theta cos(chi - load)``, ``n2 = cos theta sin(chi - load)``, ``n3 = -sin theta``;
    ``E13 = E23 = 0`` is assumed. The direction terms are averaged over each sector's width
    (``sector_half_width`` or ``azimuth_min``/``azimuth_max`` coords of :func:`xrdflow.integrate`;
    without them the sectors are taken as points). ``exact_geometry=False`` sets theta = 0 (the ring in the
    detector plane: the usual approximation, biased by ``~(E11 - E33) sin^2 theta``).

    Models. ``"in-plane"``: E11, E22, E12 fitted, E33 fixed by ``out_of_plane``:
    ``"plane-stress"`` (sigma33 = 0 in an isotropic solid: ``E33 = -nu/(1-nu) (E11 + E22)``
    with ``nu = poisson_ratio``; true of a uniaxially loaded bar) or a given strain value.
    ``"sin2psi"``: the classical regression of the strain on ``sin^2 psi``, psi the exact
    angle between q and the load (``cos psi = n1``), with the psi-splitting term ``2 n1 n2``:
    ``eps = E_a + (E_t - E_a) sin^2 psi + E12 2 n1 n2``; it assumes the strain is the same
    in every direction normal to the load (E22 = E33 = ``strain_transverse``).

    d0 strategies (``reference``). ``"first"``: d0 per sector from the first frame (strains
    relative to it; per-sector systematic errors cancel; the first frame's noise is added
    to the errors); ``"d0"``: the reflections' nominal ``d0`` coord; a sequence/mapping of
    d0 per peak or a fits Dataset of a reference measurement (as :func:`lattice_strain`);
    ``"fit"``: d0 fitted with the tensor for every frame (possible only with a constraint:
    uniaxial stress along the load, ``E22 = E33 = -nu E11``, so the d0 is the d of the
    strain-free direction ``sin^2 psi* = 1 / (1 + nu)``); ``"unstrained"``: one d0 per peak,
    the strain-free-direction d of the first frame (as ``"fit"``), then all frames with the
    chosen model and that d0. Errors of a given d0 are not propagated.

    Parameters
    ----------
    fits : xr.Dataset
        :func:`xrdflow.fit_peaks` output with dims (frame, azimuth, peak), ``d_spacing``,
        ``d_spacing_error`` and ``status``.
    reference : "first", "d0", "fit", "unstrained", sequence, mapping or xr.Dataset
        The d0 strategy (above).
    load_azimuth_deg : float
        Load axis on the detector as a pyFAI chi (degrees): 0 horizontal (+x), 90 along +y.
    model : "in-plane" or "sin2psi"
    out_of_plane : "plane-stress" or float
        The E33 assumption of the in-plane model.
    poisson_ratio : float
        Poisson ratio of the assumptions (plane stress, uniaxial stress), in [0, 0.5).
    exact_geometry : bool
        Include the ring's tilt theta (True) or take theta = 0.
    wavelength_a : float, optional
        Wavelength (Angstrom); default ``fits.attrs["wavelength_a"]``.
    min_sectors : int
        Fewest good sectors for a fit (>= 3).
    scale_errors : bool
        Multiply the covariance by the reduced chi-square when it exceeds 1 (Birge ratio:
        errors account for a scatter the sector errors miss, e.g. spotty rings).
    elastic : str, mapping or xr.Dataset, optional
        Single-crystal elastic constants (see :func:`diffraction_elastic_constants`) or a
        Dataset with ``s1`` and ``half_s2`` along ``peak``: adds ``stress_axial`` (MPa) =
        ``strain_axial / (S1 + S2/2)`` per hkl (uniaxial stress along the load), using the
        peaks' h, k, l coords.
    approximation : "reuss", "voigt" or "kroner"
        Grain-interaction model of the DECs for ``elastic``.
    dim : str
        The frame dim.

    Returns
    -------
    xr.Dataset
        Dims (frame, peak): ``strain_axial``, ``strain_transverse``, ``strain_shear``,
        ``strain_out_of_plane`` (each with ``_error``), ``residual`` (reduced chi-square),
        ``n_sectors``, ``status`` (int8 flags) and, where the strategy determines it, ``d0``
        (``d0_error``) or the ``d0_reference`` used; the frame and peak coords of ``fits``;
        the model and its assumptions in the attrs.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> chi = np.arange(-175.0, 180.0, 10.0)
    >>> eps = 1e-3 * np.cos(np.radians(chi)) ** 2 - 3e-4 * np.sin(np.radians(chi)) ** 2
    >>> d = 2.0 * (1 + np.stack([0 * eps, eps]))[..., None]
    >>> fits = xr.Dataset({"d_spacing": (("frame", "azimuth", "peak"), d),
    ...                    "d_spacing_error": (("frame", "azimuth", "peak"), 1e-5 + 0 * d),
    ...                    "status": (("frame", "azimuth", "peak"), np.zeros(d.shape, np.int8))},
    ...                   coords={"azimuth": chi, "peak": ["a"]})
    >>> t = strain_tensor(fits, exact_geometry=False, out_of_plane=0.0)
    >>> [round(float(t[v][1, 0]), 7) for v in ("strain_axial", "strain_transverse")]
    [0.001, -0.0003]
    """
    load, nu, oop, min_sectors, exact, wavelength_a = _check_tensor_args(
        fits, model, reference, load_azimuth_deg, poisson_ratio, out_of_plane, min_sectors,
        wavelength_a, exact_geometry, dim)
    scale_errors = O.boolean(scale_errors, "scale_errors")
    dec = None
    if elastic is not None:
        from ._elastic import elastic_for_peaks

        dec = elastic_for_peaks(elastic, fits, approximation=approximation)
    chi = np.radians(np.asarray(fits["azimuth"].values, dtype=float) - load)
    opts = dict(half_width_rad=_half_widths(fits), wavelength_a=wavelength_a, model=model, nu=nu, out_of_plane=oop, exact=exact,
                min_sectors=min_sectors, scale_errors=scale_errors)

    def kernel(ds, y, err, fit_d0):
        from ._tensor import N_OUT, solve_tensor

        ok = ds["status"] == 0
        return xr.apply_ufunc(
            solve_tensor, y, err, ok, ds["d_spacing"], input_core_dims=[["azimuth"]] * 4,
            output_core_dims=[["tensor_output"]], kwargs=dict(opts, chi_rad=chi, fit_d0=fit_d0),
            dask="parallelized", output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {"tensor_output": N_OUT}, "allow_rechunk": True})

    y, err, keep, fit_d0 = _sector_strain(fits, reference, dim, kernel)
    out = kernel(fits, y, err, fit_d0)
    return _tensor_dataset(out, keep, fit_d0, dec, fits, reference, model, oop, nu, load, exact,
                           wavelength_a, scale_errors, min_sectors)


def _tensor_dataset(out, keep, fit_d0, dec, fits, reference, model, oop, nu, load, exact,
                    wavelength_a, scale_errors, min_sectors):
    """Name, type and describe the kernel's output; the model and assumptions in attrs."""
    from ._tensor import OUT_NAMES, TENSOR_STATUS

    def part(name):
        return out.isel(tensor_output=OUT_NAMES.index(name), drop=True)

    ds = xr.Dataset()
    for name, long_name in _OUT_ATTRS.items():
        ds[name] = part(name).assign_attrs(U.attrs(long_name, U.DIMENSIONLESS))
        ds[name + "_error"] = part(name + "_error").assign_attrs(
            U.attrs("standard error of the " + name.replace("_", " "), U.DIMENSIONLESS))
    if fit_d0:
        ds["d0"] = part("d0").assign_attrs(U.attrs("strain-free d-spacing fitted with the tensor "
                                                   "(uniaxial stress)", U.ANGSTROM))
        ds["d0_error"] = part("d0_error").assign_attrs(U.attrs("standard error of d0", U.ANGSTROM))
    for name, value in keep.items():
        ds[name] = value
    ds["residual"] = part("residual").assign_attrs(
        U.attrs("reduced chi-square of the tensor fit over the sectors", U.DIMENSIONLESS))
    ds["n_sectors"] = part("n_sectors").astype(np.int16).assign_attrs(
        U.attrs("number of sectors used", U.DIMENSIONLESS))
    ds["status"] = part("status").astype(np.int8).assign_attrs(
        U.attrs("tensor fit status", U.DIMENSIONLESS,
                flag_values=np.array(sorted(TENSOR_STATUS.values()), dtype=np.int8),
                flag_meanings=" ".join(sorted(TENSOR_STATUS, key=TENSOR_STATUS.get))))
    if dec is not None:
        s = (dec["s1"] + dec["half_s2"]).reset_coords(drop=True)  # 1/TPa
        ds["stress_axial"] = (ds["strain_axial"] / s * 1e6).assign_attrs(
            U.attrs("uniaxial stress along the load from strain_axial / (S1 + S2/2)", "MPa",
                    approximation=dec.attrs.get("approximation", "")))
        ds["stress_axial_error"] = (ds["strain_axial_error"] / s * 1e6).assign_attrs(
            U.attrs("standard error of stress_axial (DECs taken as exact)", "MPa"))
        ds["s1"], ds["half_s2"] = dec["s1"], dec["half_s2"]
    ref = reference if isinstance(reference, str) else (
        "reference Dataset" if isinstance(reference, xr.Dataset) else "given d0 values")
    assumption = {"in-plane": ("E33 from plane stress: E33 = -nu/(1-nu) (E11 + E22)"
                               if oop == "plane-stress" else f"E33 given: {oop}"),
                  "sin2psi": "E22 = E33 (axisymmetric about the load)"}[model]
    if fit_d0 or ref == "unstrained":
        assumption += "; d0 from uniaxial stress E22 = E33 = -nu E11"
    ds.attrs = {
        "title": "strain tensor of each ring from its azimuthal sectors",
        "program": "xrdflow",
        "version": _version(),
        "strain_model": model,
        "reference": ref,
        "out_of_plane": str(oop),
        "assumption": assumption + "; E13 = E23 = 0",
        "poisson_ratio": nu,
        "load_azimuth_deg": load,
        "azimuth_convention": "pyFAI chi (deg) of the integration; load axis at load_azimuth_deg",
        "axes": _AXES,
        "scattering_vector": "q = (-sin theta, cos theta cos chi, cos theta sin chi), beam along lab axis 1",
        "exact_geometry": int(exact),
        "wavelength_a": wavelength_a if wavelength_a is not None else np.nan,
        "scale_errors": int(scale_errors),
        "min_sectors": min_sectors,
    }
    for key in ("geometry", "integration"):  # the provenance of the fits, when they carry it
        if key in fits.attrs:
            ds.attrs[key] = fits.attrs[key]
    return ds


def _version() -> str:
    from . import __version__

    return __version__
