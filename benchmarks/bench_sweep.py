"""asv benchmarks of xrdflow.crystal and xrdflow.sweep (run briefly: ``asv run --quick``)."""

import numpy as np

from xrdflow.crystal import reflections
from xrdflow import sweep


class TimeReflections:
    params = [["Mg", "CeO2", "Ti-hcp"], [1.0, 0.5]]
    param_names = ["phase", "d_min"]

    def setup(self, phase, d_min):
        reflections(phase, energy_kev=80.0, d_min=2.0)  # warm imports and caches

    def time_reflections(self, phase, d_min):
        reflections(phase, energy_kev=80.0, d_min=d_min)


class TimeSweep:
    params = [[1_000, 10_000], [False, True]]
    param_names = ["n_energy", "mount"]

    def setup(self, n_energy, mount):
        self.energy = np.linspace(20.0, 120.0, n_energy)
        self.mount = {"vertical": "[0001]", "beam": "[2-1-10]"} if mount else None
        sweep("Mg", energy_kev=self.energy[:4], d_min=1.0)  # warm imports

    def time_build_graph(self, n_energy, mount):
        sweep("Mg", energy_kev=self.energy, d_min=0.6, thickness_mm=[0.5, 2.0], mount=self.mount)

    def time_compute(self, n_energy, mount):
        sweep("Mg", energy_kev=self.energy, d_min=0.6, thickness_mm=[0.5, 2.0],
              mount=self.mount).compute()

    def peakmem_compute(self, n_energy, mount):
        sweep("Mg", energy_kev=self.energy, d_min=0.6, thickness_mm=[0.5, 2.0],
              mount=self.mount).compute()


class TimeShortestPath:
    """The shortest-path solver over about 1e5 energy x reflection points (Al, 22 reflections)."""

    params = [[500, 5_000]]
    param_names = ["n_energy"]

    def setup(self, n_energy):
        self.energy = np.linspace(8.0, 80.0, n_energy)
        self.kw = dict(mount={"vertical": "(111)"}, stage="shortest-path", goniometer="dfxrm",
                       d_min=0.55)
        sweep("Al", energy_kev=self.energy[:4], **self.kw).compute()  # warm imports

    def time_compute(self, n_energy):
        sweep("Al", energy_kev=self.energy, **self.kw)[
            ["rotation", "phi", "chi", "omega", "path_factor"]].compute()

    def peakmem_compute(self, n_energy):
        sweep("Al", energy_kev=self.energy, **self.kw)[
            ["rotation", "phi", "chi", "omega", "path_factor"]].compute()
