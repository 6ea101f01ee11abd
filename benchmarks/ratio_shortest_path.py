"""The shortest-path Bragg solver against a per-point scipy optimisation, in the same run.

Ours: :func:`xrdflow.sweep` with ``stage="shortest-path"`` over energy x reflection (about
1e5 points by default: Al, 8-80 keV, every reflection with d >= 0.55 A; the crystal
mounted with (111) up), computing the rotation, the dfxrm stage angles and the path
through the plate of both solutions (dask, 2 threads). Also the numpy kernel alone.

Baseline: what one writes for one point at a time: ``scipy.optimize.minimize`` (SLSQP) over
the three stage angles, the Bragg condition with the fixed scattering plane as two
equality constraints (G's direction in the lab), the mean path through the plate as the
objective, from four starts (zero, a 180-degree turn, two tilted); timed on a random subset of the
points and reported per point. The two answers are compared (path factor).

    python benchmarks/ratio_shortest_path.py [--energies 5000] [--baseline-points 200]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _ours(energy, repeat=3):
    from xrdflow import sweep

    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        ds = sweep("Al", energy_kev=energy, mount={"vertical": "(111)"}, stage="shortest-path",
                   goniometer="dfxrm", d_min=0.55)
        out = ds[["rotation", "phi", "chi", "omega", "path_factor"]].compute()
        best = min(best, time.perf_counter() - t0)
    return best, out, ds


def _kernel(energy, g0, repeat=3):
    from xrdflow._goniometer import GONIOMETERS, shortest_path_block

    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        o = shortest_path_block(energy, g0, np.array([1.0, 0.0, 0.0]), "vertical")
        GONIOMETERS["dfxrm"].angles(o[..., :9].reshape(o.shape[:-1] + (3, 3)))
        best = min(best, time.perf_counter() - t0)
    return best


def _rot(phi, chi, omega):
    """The dfxrm stage Ry(phi) Rx(chi) Rz(omega), degrees (plain numpy, one point)."""
    p, c, o = np.radians([phi, chi, omega])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    rz = np.array([[np.cos(o), -np.sin(o), 0], [np.sin(o), np.cos(o), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _baseline_point(g0, k):
    from scipy.optimize import minimize

    gn = np.linalg.norm(g0)
    g_hat = g0 / gn
    st = gn / (2 * k)
    if st >= 1:
        return np.nan
    k_out = np.array([1 - 2 * st**2, 0.0, 2 * st * np.sqrt(1 - st**2)])

    def path(a):
        n = _rot(*a)[:, 0]  # the plate normal: the sample's x axis
        c_in, c_out = n[0], n @ k_out
        if c_in * c_out <= 0:
            return 1e6
        return 0.5 * (1 / abs(c_in) + 1 / abs(c_out))

    def bragg(a):  # G along -sin(theta) x + cos(theta) z: two independent equations
        g = _rot(*a) @ g_hat
        return [g[0] + st, g[1]]

    best = np.nan
    for start in ([0.0, 0.0, 0.0], [0.0, 0.0, 180.0], [-20.0, 10.0, 90.0], [20.0, -10.0, -90.0]):
        res = minimize(path, start, method="SLSQP", constraints=[{"type": "eq", "fun": bragg}],
                       options={"maxiter": 300, "ftol": 1e-14})
        g = _rot(*res.x) @ g_hat
        ok = res.success and max(abs(g[0] + st), abs(g[1])) < 1e-9 and g[2] > 0 and res.fun < 1e5
        if ok and not (res.fun >= best):
            best = res.fun
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--energies", type=int, default=5000)
    ap.add_argument("--baseline-points", type=int, default=200)
    args = ap.parse_args()
    import dask

    dask.config.set(scheduler="threads", num_workers=2)
    energy = np.linspace(8.0, 80.0, args.energies)
    _ours(energy[:10], repeat=1)  # imports, caches
    t_ours, out, ds = _ours(energy)
    n_points = ds.sizes["energy"] * ds.sizes["reflection"]
    u = np.asarray(ds.attrs["mount_U"]).reshape(3, 3)
    from xrdflow.crystal import load_phase

    hkl = np.stack([ds[i].values for i in "hkl"], axis=1).astype(float)
    g0 = hkl @ load_phase("Al").lattice.reciprocal_lattice.matrix @ u.T
    t_kernel = _kernel(energy, g0)

    rng = np.random.default_rng(0)
    pick = rng.choice(n_points, size=min(args.baseline_points, n_points), replace=False)
    k = 2 * np.pi / (12.398419843320026 / energy)
    t0 = time.perf_counter()
    base = np.array([_baseline_point(g0[p % g0.shape[0]], k[p // g0.shape[0]]) for p in pick])
    t_base = (time.perf_counter() - t0) / len(pick)
    ours_pf = out.path_factor.values[..., 0].reshape(n_points)[pick]  # both solutions equal
    both = np.isfinite(base) & np.isfinite(ours_pf)
    agree = np.abs(base[both] - ours_pf[both]) < 1e-6 * ours_pf[both]
    shorter = base[both] < ours_pf[both] - 1e-9

    print(f"points: {n_points} (energy {ds.sizes['energy']} x reflection {ds.sizes['reflection']})"
          f", load average {os.getloadavg()[0]:.2f}")
    print(f"xrdflow.sweep shortest-path, computed: {t_ours:.3f} s, "
          f"{n_points / t_ours:,.0f} points/s")
    print(f"  kernel alone (numpy, one thread):    {t_kernel:.3f} s, "
          f"{n_points / t_kernel:,.0f} points/s")
    print(f"scipy SLSQP per point (4 starts):      {t_base * 1e3:.2f} ms a point, "
          f"{1 / t_base:,.0f} points/s (on {len(pick)} points)")
    print(f"ratio (ours / baseline): {t_base * n_points / t_ours:,.0f}x")
    print(f"agreement: {agree.sum()} of {both.sum()} points within 1e-6 in the path factor; "
          f"baseline shorter at {shorter.sum()}; baseline found none at "
          f"{int((np.isfinite(ours_pf) & ~np.isfinite(base)).sum())} of ours")


if __name__ == "__main__":
    main()
