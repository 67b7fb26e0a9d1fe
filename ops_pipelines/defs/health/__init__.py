"""Capability: health checks of everything the pipelines depend on, on a schedule."""
