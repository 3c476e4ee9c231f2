"""Geometry: the camera convention, normalisation, mesh ops, losses and metrics (pure functions)."""
