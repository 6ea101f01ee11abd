"""A whole tensile-test run from one config file: ingest -> calibrate -> integrate -> fit ->
strain -> write, with figures and a one-screen summary.

The expensive part (integration, then the peak fits on the patterns it produces) runs as
one dask graph that streams: a batch of frames at a time is integrated and fitted in one
``dask.compute`` (integration computed once, shared by both outputs), its patterns go to
the NXazint file and its fits are kept (they are small). Memory therefore stays flat as
the number of frames grows.

Every stage records a fingerprint of its inputs in ``<output>/xrdflow-run.json``; a
re-run reuses each stage whose inputs are unchanged and whose output is complete (ingest
also resumes frame by frame).

Modules: :mod:`.config` (the schema, from :mod:`xrdflow.options`, and
:func:`load_config`), :mod:`.stages` (one function per stage), :mod:`.manifest`
(fingerprints and resume), :mod:`.run` (:func:`run_workflow`, :func:`summarize`) and
:mod:`.demo` (``xrdflow demo``).
"""

from __future__ import annotations

from .config import SCHEMA, ConfigError, RunConfig, load_config
from .run import RunResult, run_workflow, summarize

__all__ = ["RunConfig", "RunResult", "load_config", "run_workflow", "ConfigError", "summarize", "SCHEMA"]
