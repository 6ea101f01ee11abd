"""Plan a diffraction / dark-field X-ray microscopy experiment on a Mg crystal.

Public API only. Answers, for a whole energy range at once:
1. is the sample too thick at this energy (transmission through 0.5-10 mm of Mg);
2. which reflections fall inside the instrument's 2theta range;
3. how to rotate the crystal (c axis vertical, a axis along the beam) into the Bragg
   condition for 10-11, and what the experiment looks like (the one-page report PDF for the
   logbook, a PNG of the 3D scene, and a glTF scene for Blender).

    python workflows/geometry_sweep.py [OUTPUT_FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import xrdflow
from xrdflow import sweep_table, write_sweep
from xrdflow.plot.sweep import plot_transmission, plot_two_theta
from xrdflow.scene import save_image, scene_from_plan, write_gltf


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mount = {"vertical": "[0001]", "beam": "[2-1-10]"}

    # the reflections of Mg at one energy, with intensities
    refl = xrdflow.reflections("Mg", energy_kev=87.1, q_range=(20, 60))
    print(refl[["q", "two_theta", "multiplicity", "intensity"]].to_dataframe().round(3))

    # the sweep: lazy until computed or written
    ds = xrdflow.sweep(
        "Mg",
        energy_kev=np.linspace(30.0, 100.0, 701),
        thickness_mm=[0.5, 1.0, 2.0, 5.0, 10.0],
        two_theta_range=(2.0, 12.0),
        transmission_range=(0.1, 1.0),
        mount=mount,
    )
    print(ds)
    print(sweep_table(ds, 87.1, thickness_mm=5.0))

    write_sweep(ds, out / "mg_sweep.nxs")
    write_sweep(ds, out / "mg_sweep.nc")
    plot_two_theta(ds).savefig(out / "mg_two_theta.pdf")
    plot_transmission(ds).savefig(out / "mg_transmission.pdf")

    # one experiment: 10-11 in the Bragg condition on a 3 x 3 x 1 mm plate (omega only)
    plan = xrdflow.plan("Mg", energy_kev=87.1, reflection="10-11", mount=mount, stage="omega",
                        thickness_mm=1.0)
    print(xrdflow.plan_table(plan))
    scene = scene_from_plan(plan, "Mg", sample_size_mm=(3.0, 3.0, 1.0))
    save_image(scene, out / "mg_experiment.png")
    write_gltf(scene, out / "mg_experiment.glb")
    xrdflow.write_report(out / "mg_plan.pdf", plan, phase="Mg", scene=scene)
    print(scene.title)
    print(f"wrote {sorted(p.name for p in out.iterdir())} to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("geometry_sweep_output"))
