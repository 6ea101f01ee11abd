"""Figures (matplotlib, imported lazily by each module here; the Agg backend is used headless).

One module per subject: ``calibration`` (detector image with rings), ``sweep`` (planning) and
``run`` (patterns, fits, strain curves).
"""
