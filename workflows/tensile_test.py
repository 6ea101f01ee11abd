"""The tensile-test reduction step by step with xrdflow's public API (what `xrdflow run` does).

    python workflows/tensile_test.py DEMO_FOLDER

DEMO_FOLDER holds the inputs that `xrdflow demo --out DEMO_FOLDER` made: input/calibrant/
(a LaB6 image) and input/tensile/ (Mg frames and their log). Every step is lazy until the
results are written; look at any intermediate object as you go.
"""

import sys
from pathlib import Path

import xrdflow
from xrdflow import sectors_around_axis
from xrdflow.crystal import select_reflections

folder = Path(sys.argv[1] if len(sys.argv) > 1 else "xrdflow-demo")
out = folder / "script-out"
out.mkdir(exist_ok=True)

# 1. frames -> raw NeXus (bit-exact, resumable)
print(xrdflow.ingest(folder / "input/tensile", out / "raw.nxs", energy_kev=87.1,
                     strain_log=folder / "input/tensile/mg_log.csv"))

# 2. geometry from the LaB6 image, starting from a rough guess
cal = xrdflow.calibrate(str(folder / "input/calibrant/LaB6_00001.tif"), "LaB6", energy_kev=87.1,
                        detector="Perkin", distance_mm=1200, poni=out / "geometry.poni")
print(cal.report().splitlines()[0], f"rms {cal.rms_px:.3f} px")

# 3. lazy frames -> lazy patterns in the axial and transverse sectors
frames = xrdflow.open_frames(out / "raw.nxs")
patterns = xrdflow.integrate(frames, cal.geometry, npt=1200, radial_range=(21, 27),
                             azimuth_sectors=sectors_around_axis(0.0, 10.0), polarization_factor=0.99)

# 4. which peaks: three Mg reflections at this energy (the selection `xrdflow run` makes from
#    [peaks] phase and reflections; xrdflow.reflections("Mg", energy_kev=87.1) lists them all)
peaks = select_reflections("Mg", ["10-10", "0002", "10-11"], energy_kev=87.1)

# 5. batch Gaussian fits over frames x sectors x peaks, then lattice strain against frame 1
fits = xrdflow.fit_peaks(patterns, peaks, half_width=0.35)
result = xrdflow.lattice_strain(fits.compute(), reference="first")
xrdflow.write_result(result, out / "result.nxs")

# 6. the notebook's comparison: frame 1 against the last frame, axial sector
axial = result.sel(peak="Mg 10-10").isel(azimuth=0)
for name in ("position", "d_spacing", "fwhm", "lattice_strain"):
    first, last = float(axial[name][0]), float(axial[name][-1])
    print(f"Mg 10-10 axial {name:<15} {first:10.5f} -> {last:10.5f} {axial[name].attrs.get('units', '')}")
