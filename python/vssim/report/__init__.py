"""Capacity-planning reports (``vssim plan``): which backup strategy fits the window, at what
concurrency, on which node, with how much shadow storage.

:mod:`.strategies` (what runs, the ``[plan]`` table), :mod:`.analysis` (the figures, polars),
:mod:`.advice` (the recommendation in words), :mod:`.charts` (matplotlib), :mod:`.html` (HTML and
Markdown), :mod:`.capacity_plan` (orchestration: :func:`vssim.report.capacity_plan.build`).
"""

from __future__ import annotations
