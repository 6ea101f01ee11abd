"""asv benchmarks of the planner's outputs: the plan, the 3D scene and its renderers, the
one-page report, and one rerun of the app's page (what an input change costs the server).

One experiment throughout: Si (1 1 1) at 17 keV on a 2 x 2 x 0.1 mm plate mounted (111) up,
the dfxrm goniometer, the ID06 objective lens at 5 m. Goals of the planner issue: an input
change updates the page in under 1 s, the report builds in under 3 s, on 2 cores.
"""

from pathlib import Path

LENS = Path(__file__).resolve().parents[1] / "tests" / "data" / "lens_id06.toml"
PLAN = dict(energy_kev=17.0, reflection="1 1 1", mount={"vertical": "(111)"},
            goniometer="dfxrm", thickness_mm=0.1, lens=LENS, lens_distance_mm=5000.0)
SIZE = (2.0, 2.0, 0.1)


def _plan(energy_kev=17.0):
    import xrdflow

    return xrdflow.plan("Si", **{**PLAN, "energy_kev": energy_kev}).compute()


class TimePlanScene:
    """An input change in numbers: the plan, its scene, and each renderer."""

    timeout = 120

    def setup(self):
        from xrdflow.scene import scene_from_plan

        self.plan = _plan()
        self.scene = scene_from_plan(self.plan, "Si", sample_size_mm=SIZE)
        self.energy = 17.0

    def time_plan(self):
        self.energy += 0.01  # a new energy each time: nothing cached
        _plan(self.energy)

    def time_scene_from_plan(self):
        from xrdflow.scene import scene_from_plan

        scene_from_plan(self.plan, "Si", sample_size_mm=SIZE)

    def time_scene_from_plan_2x2x2_polyhedra(self):
        from xrdflow.scene import scene_from_plan

        scene_from_plan(self.plan, "Si", sample_size_mm=SIZE, cells=(2, 2, 2), polyhedra=True)

    def time_to_plotly(self):
        from xrdflow.scene import to_plotly

        to_plotly(self.scene).to_json()

    def time_save_image_png(self):
        import tempfile

        from xrdflow.scene import save_image

        with tempfile.TemporaryDirectory() as tmp:
            save_image(self.scene, Path(tmp) / "scene.png")

    def time_gltf_bytes(self):
        from xrdflow.scene import gltf_bytes

        gltf_bytes(self.scene)

    def time_report_pdf(self):
        from xrdflow.report import report_pdf_bytes

        report_pdf_bytes(self.plan, phase="Si", scene=self.scene)

    def peakmem_report_pdf(self):
        from xrdflow.report import report_pdf_bytes

        report_pdf_bytes(self.plan, phase="Si", scene=self.scene)


class TimeAppRerun:
    """One rerun of the app's page after the energy changed (streamlit's AppTest: the
    server's share of an input change; the browser's drawing comes on top)."""

    timeout = 180

    def setup(self):
        try:
            from streamlit.testing.v1 import AppTest
        except ImportError:
            raise NotImplementedError("streamlit is not installed (the app extra)")
        app = Path(__file__).resolve().parents[1] / "xrdflow" / "app" / "streamlit_app.py"
        self.at = AppTest.from_file(str(app), default_timeout=120).run()
        self.energy = 17.0

    def time_energy_change(self):
        self.energy += 0.05
        self.at.number_input(key="energy_kev").set_value(self.energy).run()
