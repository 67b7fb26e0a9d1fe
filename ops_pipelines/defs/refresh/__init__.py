"""Capability: refresh and model rotation over (container, embedder version) partitions."""
