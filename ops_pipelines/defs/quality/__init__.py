"""Capability: retrieval quality over time (the swap gate's check lives with refresh)."""
