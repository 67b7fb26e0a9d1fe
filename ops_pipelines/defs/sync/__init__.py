"""Capability: incremental sync from sources into the live collection."""
