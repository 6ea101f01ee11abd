"""Make the small files of tests/data/legacy-0.1/ with xrdflow 0.1 (commit 7d393e5), so that
tests/test_nexus.py checks that files written by that release still open.

    git worktree add /tmp/xrdflow-0.1 7d393e5
    cd /tmp && PYTHONPATH=/tmp/xrdflow-0.1 python /path/to/tests/data/make_legacy.py OUT_DIR
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr


def main(out: Path) -> None:
    import fabio

    import xrdflow

    out.mkdir(parents=True, exist_ok=True)
    assert xrdflow.__version__, xrdflow.__file__

    # raw: 3 small frames
    rng = np.random.default_rng(7)
    frames = rng.integers(10, 4000, size=(3, 24, 20), dtype=np.uint16)
    src = Path(tempfile.mkdtemp())

    for i, f in enumerate(frames, start=1):
        fabio.tifimage.TifImage(data=f).write(str(src / f"f_{i}.tif"))
    (src / "log.csv").write_text("frame,applied_strain,load_N\n1,0.0,10\n2,0.01,20\n3,0.02,30\n")
    xrdflow.ingest(src, out / "raw.nxs", energy_kev=87.1, strain_log=src / "log.csv")
    np.save(out / "raw_frames.npy", frames)

    # patterns, 1-D and with sectors
    q = np.linspace(20.0, 28.0, 40)
    t = np.array(["2026-12-01T10:00:00", "2026-12-01T10:00:05", "2026-12-01T10:00:10"], dtype="datetime64[ns]")
    attrs = {"radial_unit": "q_nm^-1", "wavelength_a": 0.14235, "energy_kev": 87.1, "units": "arbitrary units",
             "long_name": "intensity", "npt": 40}
    p1 = xr.DataArray(rng.random((3, 40)).astype(np.float32), dims=("frame", "q"), name="intensity",
                      coords={"q": ("q", q, {"units": "1/nm", "long_name": "scattering vector q"}),
                              "frame": np.arange(3), "applied_strain": ("frame", [0.0, 0.01, 0.02], {"units": "1"}),
                              "time": ("frame", t)},
                      attrs=attrs)
    xrdflow.write_patterns(p1, out / "patterns_1d.nxs")
    p2 = xr.DataArray(rng.random((3, 2, 40)).astype(np.float32), dims=("frame", "azimuth", "q"), name="intensity",
                      coords={"q": ("q", q, {"units": "1/nm"}), "frame": np.arange(3),
                              "azimuth": ("azimuth", [0.0, 90.0], {"units": "deg"}),
                              "sector": ("azimuth", np.array(["axial", "transverse"], dtype=object))},
                      attrs=attrs)
    xrdflow.write_patterns(p2, out / "patterns_2d.nxs")
    p1.to_netcdf(out / "patterns_1d.nc")
    p2.to_netcdf(out / "patterns_2d.nc")

    # a result
    ds = xr.Dataset(
        {"position": (("frame", "peak"), rng.random((3, 2)) + 22, {"units": "1/nm", "long_name": "peak centre"}),
         "status": (("frame", "peak"), np.zeros((3, 2), np.int8), {"flag_values": [0, 1], "flag_meanings": "ok bad"}),
         "time": ("frame", t)},
        coords={"peak": ["Mg 10-10", "Mg 0002"], "frame": np.arange(3), "d0": ("peak", [2.78, 2.60], {"units": "angstrom"})},
        attrs={"title": "legacy", "reference": {"Mg 10-10": 2.78}, "note": None})
    xrdflow.write_result(ds, out / "result.nxs")
    ds.drop_attrs(deep=False).to_netcdf(out / "result.nc")  # netCDF holds no dict/None attrs
    print("written to", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
