"""Figures are made and contain what they claim: axis labels, titles, one line per peak
(and sector), legend entries; they render to PNG and PDF headless (Agg)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import xarray as xr

import xrdflow
from xrdflow import units
from xrdflow.plot import run as plots

from conftest import ring_frames, ring_geometry

CENTERS = {"A": 22.6, "B": 24.1, "C": 25.6}


def synthetic_patterns(n_frames=4, sectors=False):
    """Gaussian peaks that move to lower q and broaden with the applied strain."""
    q = np.linspace(21.0, 27.0, 400)
    strain = np.linspace(0.0, 0.006, n_frames)
    az = np.array([0.0, 90.0]) if sectors else np.array([0.0])
    shift = np.where(az == 0.0, 1.0, -0.4)  # axial tension, transverse contraction
    values = np.empty((n_frames, az.size, q.size), np.float32)
    for i, e in enumerate(strain):
        for s in range(az.size):
            y = 20.0 + 0 * q
            for c in CENTERS.values():
                y = y + 1000 * np.exp(-0.5 * ((q - c / (1 + shift[s] * e)) / (0.05 * (1 + 20 * e))) ** 2)
            values[i, s] = y
    dims = ("frame", "azimuth", "q")
    coords = {"frame": np.arange(1, n_frames + 1), "applied_strain": ("frame", strain),
              "q": ("q", q, {"units": units.INV_NM, "long_name": "q"}), "azimuth": az}
    if sectors:
        coords["sector"] = ("azimuth", ["axial", "transverse"])
    pat = xr.DataArray(values, dims=dims, coords=coords, name="intensity",
                       attrs={"radial_unit": "q_nm^-1", "units": units.INTENSITY})
    return pat if sectors else pat.isel(azimuth=0, drop=True)


@pytest.fixture(scope="module", params=[False, True], ids=["rings", "sectors"])
def run_data(request):
    patterns = synthetic_patterns(sectors=request.param)
    fits = xrdflow.fit_peaks(patterns, CENTERS, half_width=0.4)
    result = xrdflow.lattice_strain(fits.compute(), reference="first")
    assert (result["status"] == 0).all()
    return patterns, result


def texts(legend):
    return [t.get_text() for t in legend.get_texts()]


def test_patterns_map(run_data):
    patterns, _ = run_data
    fig = plots.patterns_map(patterns)
    ax, cbar = fig.axes
    assert ax.get_title() == "integrated patterns"
    assert ax.get_xlabel() == f"q ({units.INV_NM})"
    assert ax.get_ylabel() == "applied strain (%)"
    assert cbar.get_ylabel() == f"intensity ({units.INTENSITY})"
    mesh = ax.collections[0]
    assert mesh.get_array().shape == (patterns.sizes["frame"], patterns.sizes["q"])


def test_fit_overlay_one_panel_per_peak_data_and_model(run_data):
    patterns, result = run_data
    fig = plots.fit_overlay(patterns, result)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == list(CENTERS)
    for ax in axes:
        assert ax.get_xlabel() == f"q ({units.INV_NM})"
        # first and last frame: measured points and the fitted model for each
        markers = [line for line in ax.lines if line.get_linestyle() == "None"]
        models = [line for line in ax.lines if line.get_linestyle() == "-"]
        assert len(markers) == 2 and len(models) == 2
        lo, hi = ax.lines[1].get_xdata()[[0, -1]]
        assert lo >= 21.0 and hi <= 27.0
    assert axes[0].get_ylabel() == f"intensity ({units.INTENSITY})"
    assert texts(axes[0].get_legend()) == ["frame 1 (0.0%)", "frame 4 (0.6%)"]


def test_fit_overlay_model_follows_the_fit(run_data):
    patterns, result = run_data
    fig = plots.fit_overlay(patterns, result, frames=[0])
    one = result.isel(frame=0, **({"azimuth": 0} if "azimuth" in result.dims else {}))
    for ax, label in zip(fig.axes, CENTERS):
        model = ax.lines[1]
        x, y = model.get_xdata(), model.get_ydata()
        assert x[np.argmax(y)] == pytest.approx(float(one["position"].sel(peak=label)), abs=0.01)


def test_strain_curves_one_line_per_peak_and_sector(run_data):
    patterns, result = run_data
    fig = plots.strain_curves(result)
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == [f"d-spacing ({units.ANGSTROM})", "lattice strain (%)",
                                                  f"FWHM ({units.INV_NM})"]
    n_sectors = result.sizes.get("azimuth", 1)
    for ax in axes:
        assert ax.get_xlabel() == "applied strain (%)"
        assert len(ax.lines) == len(CENTERS) * n_sectors
        np.testing.assert_allclose(ax.lines[0].get_xdata(), result["applied_strain"].values * 100)
    labels = texts(axes[0].get_legend())
    if n_sectors == 1:
        assert labels == list(CENTERS)
    else:
        assert labels == [f"{p} {s}" for p in CENTERS for s in ("axial", "transverse")]
        # axial tension, transverse contraction: the lattice strain curves say so
        strain = {line.get_label(): line.get_ydata() for line in axes[1].lines}
        assert strain["A axial"][-1] > 0 > strain["A transverse"][-1]
    # lattice strain in percent: the first frame is the reference
    for line in axes[1].lines:
        assert line.get_ydata()[0] == pytest.approx(0.0, abs=1e-9)


def test_save_writes_png_and_pdf(run_data, tmp_path):
    _, result = run_data
    made = plots.save(plots.strain_curves(result), tmp_path / "strain")
    assert made == [tmp_path / "strain.png", tmp_path / "strain.pdf"]
    assert made[0].read_bytes().startswith(b"\x89PNG") and made[1].read_bytes().startswith(b"%PDF")
    assert not list(tmp_path.glob("*.partial"))


def fake_calibration():
    """A calibration result as calibrate() returns it (the fields the figure reads), on the
    shared synthetic ring geometry."""
    from pyFAI.calibrant import get_calibrant

    geometry = ring_geometry(wavelength=0.2e-10)  # several LaB6 rings on the small panel
    image = ring_frames(geometry, 1, negative=False)[0]
    ttha = np.degrees(geometry.to_pyfai().center_array(image.shape, unit="2th_rad"))
    two_theta = np.degrees(get_calibrant("LaB6", wavelength=geometry.wavelength).get_2th())
    rings = [(i, 0.0, float(tt), 0) for i, tt in enumerate(two_theta[:3]) if tt < ttha.max()]
    points = np.concatenate([np.c_[np.argwhere(np.abs(ttha - tt) < 0.01)[::5], ] for _, _, tt, _ in rings])
    result = types.SimpleNamespace(geometry=geometry, rings=tuple(rings), control_points=points,
                                   calibrant="LaB6", rms_px=0.123, n_rings=len(rings), n_points=len(points))
    return image, result


def test_calibration_figure(tmp_path):
    from xrdflow.plot.calibration import calibration_figure

    image, result = fake_calibration()
    fig = calibration_figure(image, result)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x (pixel)" and ax.get_ylabel() == "y (pixel)"
    assert ax.get_title() == f"LaB6: {result.geometry.dist * 1e3:.3f} mm, rms 0.123 px, {result.n_rings} rings"
    assert texts(ax.get_legend()) == [f"{len(result.control_points)} control points", "beam centre"]
    assert fig.axes[1].get_ylabel() == "counts"  # the colour bar
    assert ax.get_images()[0].get_array().shape == image.shape
    assert len(ax.collections) >= 1  # the rings (contour lines at the calibrant's 2theta)
    fig.savefig(tmp_path / "calibration.png", dpi=80)
    assert (tmp_path / "calibration.png").read_bytes().startswith(b"\x89PNG")
