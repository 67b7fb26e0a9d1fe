"""Capability: weekly maintenance and retention."""
