"""Param-Mix: score data mixtures by merging per-domain experts in parameter space.

A plain library: no Prefect here. `tasks/` and `flows/` wrap it for orchestration.
"""

__version__ = "0.1.0"
