"""Prefect tasks: one module per pipeline stage, each a thin wrapper over `parammix_core.stages`.

A task takes the experiment config and upstream refs, calls the stage, publishes what a person
wants to see in the UI (progress, tables, markdown) and returns a small `ArtifactRef`.
"""
