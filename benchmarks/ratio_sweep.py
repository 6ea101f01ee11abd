"""Sweep throughput against a point-by-point baseline, measured in the same run.

The baseline does what a one-point-at-a-time planner (DF-XRM_viz style) does for each
(energy, reflection) point: xraydb.material_mu for the sample's composition and density,
the transmission through the thickness, and Bragg's law for 2theta. Our number is
xrdflow.sweep over the same kind of points, computed (dask, chunked along energy), including
intensities and reachability (and, with --mount, goniometer angles and diffracted beams).

    python benchmarks/ratio_sweep.py [--energies 20000] [--mount]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np


def baseline_points_per_s(formula: str, density: float, d: np.ndarray, energies: np.ndarray,
                          thickness_mm: float, n_points: int) -> float:
    import xraydb

    hc = 12.398419843320026
    done = 0
    t0 = time.perf_counter()
    for e in energies:
        for dd in d:
            mu = xraydb.material_mu(formula, e * 1000.0, density=density)  # 1/cm
            trans = math.exp(-mu * thickness_mm / 10.0)
            s = hc / e / (2.0 * dd)
            tt = 2.0 * math.degrees(math.asin(s)) if s <= 1 else float("nan")
            _ = (trans, tt)
            done += 1
            if done >= n_points:
                return done / (time.perf_counter() - t0)
    return done / (time.perf_counter() - t0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--energies", type=int, default=20_000)
    parser.add_argument("--baseline-points", type=int, default=3_000)
    parser.add_argument("--mount", action="store_true", help="include orientation solutions")
    args = parser.parse_args(argv)

    from xrdflow.crystal import load_phase
    from xrdflow import sweep

    phase = "Mg"
    energies = np.linspace(20.0, 120.0, args.energies)
    mount = {"vertical": "[0001]", "beam": "[2-1-10]"} if args.mount else None
    sweep(phase, energy_kev=energies[:8], d_min=1.0).compute()  # warm imports and xraydb

    t0 = time.perf_counter()
    ds = sweep(phase, energy_kev=energies, d_min=0.6, thickness_mm=2.0, mount=mount)
    ds = ds.compute()
    ours_s = time.perf_counter() - t0
    n = ds.sizes["energy"] * ds.sizes["reflection"]
    ours = n / ours_s

    structure = load_phase(phase)
    base = baseline_points_per_s("Mg", float(structure.density), ds.d_spacing.values,
                                 energies, 2.0, args.baseline_points)
    print(f"sweep: {ds.sizes['energy']} energies x {ds.sizes['reflection']} reflections = "
          f"{n:,} points in {ours_s:.3f} s{' (with orientation)' if mount else ''}")
    print(f"xrdflow.sweep     {ours:14,.0f} points/s")
    print(f"point-by-point    {base:14,.0f} points/s  ({args.baseline_points} points timed)")
    print(f"ratio             {ours / base:14,.0f} x")


if __name__ == "__main__":
    main()
