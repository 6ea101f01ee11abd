"""Strain tensors of the rings: weighted least squares over the azimuthal sectors.

Numbers only (the labels and laziness are in :mod:`xrdflow._strain`). Every function is
vectorised over any leading dims (frames x peaks); the sectors are the last axis.

Geometry. Lab frame with the beam along axis 1 and pyFAI's chi measured in the detector
plane from lab axis 2 towards lab axis 3: the unit scattering vector of a ring at Bragg angle
theta and azimuth chi is ``q_hat = (-sin theta, cos theta cos chi, cos theta sin chi)``. The
sample frame has axis 1 along the load (in the detector plane, at chi = ``load_azimuth``),
axis 2 across it in the detector plane (chi = load + 90 deg) and axis 3 along the beam, so
the direction cosines of ``q_hat`` there are::

    n1 = cos(theta) cos(chi - load),  n2 = cos(theta) sin(chi - load),  n3 = -sin(theta)

and the strain seen by a sector is ``eps = n . E . n``. ``E13 = E23 = 0`` is assumed (their
terms, odd in chi, are indistinguishable from a beam-centre error).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TENSOR_STATUS", "N_OUT", "OUT_NAMES", "solve_tensor", "direction_cosines"]

#: status codes of a (frame, peak) tensor fit
TENSOR_STATUS = {"ok": 0, "too_few_sectors": 1, "singular": 2, "no_wavelength": 3}

#: the kernel's output, in this order along its last axis
OUT_NAMES = ("strain_axial", "strain_transverse", "strain_shear",
             "strain_axial_error", "strain_transverse_error", "strain_shear_error",
             "strain_out_of_plane", "strain_out_of_plane_error", "d0", "d0_error",
             "residual", "n_sectors", "status")
N_OUT = len(OUT_NAMES)


def direction_cosines(chi_rad, theta_rad, half_width_rad=None):
    """``(n1^2, n2^2, 2 n1 n2, n3^2)`` in the sample frame, broadcast (..., sector).

    With ``half_width_rad`` (the sectors' half widths) each is averaged uniformly over its
    sector: the 2 chi terms shrink by ``sin(2 h) / (2 h)`` (0.995 for 10-degree sectors,
    a bias of 0.5 % of the deviatoric strain otherwise).

    >>> a = direction_cosines(np.radians([0.0, 90.0]), np.zeros(1))
    >>> [np.round(v, 12).tolist() for v in a]
    [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    """
    c2t = np.cos(theta_rad) ** 2
    s2t = np.sin(theta_rad) ** 2
    f = 1.0
    if half_width_rad is not None:
        h2 = 2.0 * np.asarray(half_width_rad, dtype=np.float64)
        f = np.where(h2 > 0, np.sin(h2) / np.where(h2 > 0, h2, 1.0), 1.0)
    c2 = f * np.cos(2.0 * chi_rad)
    return (c2t * 0.5 * (1.0 + c2), c2t * 0.5 * (1.0 - c2),
            c2t * f * np.sin(2.0 * chi_rad), s2t + 0.0 * chi_rad)


def _design(n11, n22, n12, n33, *, model, fit_d0, nu, out_of_plane):
    """(X, offset) with ``y - offset = X b``: the regressors (..., sector, 3)."""
    if fit_d0:  # d = d0 + d0 E11 (n1^2 - nu (1 - n1^2)) + d0 E12 (2 n1 n2): uniaxial stress
        return np.stack([np.ones_like(n11), n11 - nu * (1.0 - n11), n12], axis=-1), 0.0
    if model == "sin2psi":  # eps = E_a cos^2 psi + E_t sin^2 psi + E12 (2 n1 n2), cos psi = n1
        return np.stack([n11, 1.0 - n11, n12], axis=-1), 0.0
    if out_of_plane == "plane-stress":  # E33 = -k (E11 + E22), k = nu / (1 - nu)
        k = nu / (1.0 - nu)
        return np.stack([n11 - k * n33, n22 - k * n33, n12], axis=-1), 0.0
    return np.stack([n11, n22, n12], axis=-1), float(out_of_plane) * n33


def _weighted_lstsq(y, w, X, n_par):
    """b, cov (unscaled), chi2, n, singular for the sector axis -2 of X (..., sector, par)."""
    Xw = X * w[..., None]
    N = np.einsum("...ai,...aj->...ij", Xw, X)
    r = np.einsum("...ai,...a->...i", Xw, y)
    d = np.sqrt(np.abs(np.einsum("...ii->...i", N)))
    scale = np.where(d > 0, d, 1.0)
    corr = N / (scale[..., :, None] * scale[..., None, :])
    singular = ~(np.abs(np.linalg.det(corr)) > 1e-9)
    corr = np.where(singular[..., None, None], np.eye(n_par), corr)
    cinv = np.linalg.inv(corr)
    cov = cinv / (scale[..., :, None] * scale[..., None, :])
    b = np.einsum("...ij,...j->...i", cov, r)
    res = y - np.einsum("...ai,...i->...a", X, b)
    chi2 = np.sum(w * res * res, axis=-1)
    return b, cov, chi2, singular


def solve_tensor(y, err, ok, d, chi_rad, *, half_width_rad=None, wavelength_a=None, model="in-plane", fit_d0=False,
                 nu=0.3, out_of_plane="plane-stress", exact=True, min_sectors=4,
                 scale_errors=True):
    """Fit the strain tensor of every (frame, peak) from its sectors.

    Parameters
    ----------
    y, err : array (..., sector)
        Lattice strain and its error per sector, or (``fit_d0``) the d-spacing and its error.
    ok : bool array (..., sector)
        Sectors to use (fit ok, finite, positive error).
    d : array (..., sector)
        d-spacings (Angstrom), for theta = arcsin(wavelength / 2 d) (mean of the good sectors).
    chi_rad : array (sector,)
        Sector azimuths relative to the load axis (radians).
    half_width_rad : array (sector,), optional
        Sector half widths (radians): the direction terms are averaged over each sector.
    model, fit_d0, nu, out_of_plane, exact, min_sectors, scale_errors
        See :func:`xrdflow.strain_tensor`.

    Returns
    -------
    array (..., N_OUT)
        The values named by :data:`OUT_NAMES` (``status`` and ``n_sectors`` as floats).

    Examples
    --------
    >>> chi = np.radians(np.arange(0, 360, 30.0))
    >>> eps = 1e-3 * np.cos(chi) ** 2 - 3e-4 * np.sin(chi) ** 2
    >>> out = solve_tensor(eps[None], np.full((1, 12), 1e-5), np.ones((1, 12), bool),
    ...                    np.full((1, 12), 2.0), chi, exact=False, out_of_plane=0.0)
    >>> (np.round(out[0, :3], 9) + 0.0).tolist(), int(out[0, -1])
    ([0.001, -0.0003, 0.0], 0)
    """
    y = np.asarray(y, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    ok = np.asarray(ok, dtype=bool) & np.isfinite(y) & np.isfinite(err) & (err > 0) & np.isfinite(d)
    w = np.where(ok, 1.0 / np.where(ok, err, 1.0) ** 2, 0.0)
    y0 = np.where(ok, y, 0.0)
    n = ok.sum(axis=-1)
    if exact:
        dm = np.sum(np.where(ok, d, 0.0), axis=-1) / np.maximum(n, 1)
        if wavelength_a is None or not np.isfinite(wavelength_a):
            theta = np.full(dm.shape, np.nan)
        else:
            theta = np.arcsin(np.clip(wavelength_a / (2.0 * np.where(dm > 0, dm, np.inf)), 0.0, 1.0))
    else:
        theta = np.zeros(n.shape)
    n11, n22, n12, n33 = direction_cosines(chi_rad, np.where(np.isfinite(theta), theta, 0.0)[..., None],
                                         half_width_rad)
    X, offset = _design(n11, n22, n12, n33, model=model, fit_d0=fit_d0, nu=nu, out_of_plane=out_of_plane)
    b, cov, chi2, singular = _weighted_lstsq(y0 - np.where(ok, offset, 0.0), w, X, 3)
    dof = np.maximum(n - 3, 1)
    red = chi2 / dof
    if scale_errors:
        cov = cov * np.maximum(red, 1.0)[..., None, None]
    out = _components(b, cov, model=model, fit_d0=fit_d0, nu=nu, out_of_plane=out_of_plane)
    status = np.zeros(n.shape)
    status = np.where(singular, TENSOR_STATUS["singular"], status)
    status = np.where(n < min_sectors, TENSOR_STATUS["too_few_sectors"], status)
    status = np.where(~np.isfinite(theta), TENSOR_STATUS["no_wavelength"], status)
    bad = status != 0
    out[..., :10] = np.where(bad[..., None], np.nan, out[..., :10])
    out[..., 10] = np.where(bad | (n <= 3), np.nan, red)
    out[..., 11] = n
    out[..., 12] = status
    return out


def _components(b, cov, *, model, fit_d0, nu, out_of_plane):
    """The sample-frame components, their errors, E33 and d0 from the solution ``b``."""
    out = np.full(b.shape[:-1] + (N_OUT,), np.nan)
    var = np.einsum("...ii->...i", cov)
    if fit_d0:
        d0, a, g = b[..., 0], b[..., 1], b[..., 2]
        e11, e12 = a / d0, g / d0
        # delta method: E = b_i / b_0
        v11 = (var[..., 1] + e11 ** 2 * var[..., 0] - 2 * e11 * cov[..., 0, 1]) / d0 ** 2
        v12 = (var[..., 2] + e12 ** 2 * var[..., 0] - 2 * e12 * cov[..., 0, 2]) / d0 ** 2
        comps = (e11, -nu * e11, e12, -nu * e11)
        errs = (np.sqrt(v11), nu * np.sqrt(v11), np.sqrt(v12), nu * np.sqrt(v11))
        out[..., 8], out[..., 9] = d0, np.sqrt(var[..., 0])
    elif model == "sin2psi":
        comps = (b[..., 0], b[..., 1], b[..., 2], b[..., 1])
        errs = tuple(np.sqrt(var[..., i]) for i in (0, 1, 2, 1))
    else:
        if out_of_plane == "plane-stress":
            k = nu / (1.0 - nu)
            e33 = -k * (b[..., 0] + b[..., 1])
            e33_err = k * np.sqrt(np.maximum(var[..., 0] + var[..., 1] + 2 * cov[..., 0, 1], 0.0))
        else:
            e33 = np.full(b.shape[:-1], float(out_of_plane))
            e33_err = np.zeros(b.shape[:-1])
        comps = (b[..., 0], b[..., 1], b[..., 2], e33)
        errs = (np.sqrt(var[..., 0]), np.sqrt(var[..., 1]), np.sqrt(var[..., 2]), e33_err)
    for i, (c, e) in enumerate(zip(comps[:3], errs[:3])):
        out[..., i], out[..., 3 + i] = c, e
    out[..., 6], out[..., 7] = comps[3], errs[3]
    return out
