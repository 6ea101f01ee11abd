"""Figures (matplotlib, imported lazily by each module here; the Agg backend is used headless).

One module per subject: ``calibration`` (detector image with rings), ``sweep`` and
``geometry3d`` (experiment planning), ``run`` (patterns, fits, strain curves).
"""
