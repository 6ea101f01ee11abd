"""``xrdflow demo``; kept for ``from xrdflow.demo import ...``: the code is
:mod:`xrdflow.workflow.demo`."""

from .workflow.demo import answer, demo_config_text, run_demo

__all__ = ["run_demo", "demo_config_text", "answer"]
