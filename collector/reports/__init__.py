"""Headteacher and governors' reports: figures from the store, SVG charts, HTML/PDF/e-mail rendering.

Every figure is a count or a median that can be recomputed from `wardwatch-collector alerts list --json`
(see collector.reports.figures for the exact definitions).
"""
