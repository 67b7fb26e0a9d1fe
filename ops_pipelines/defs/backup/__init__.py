"""Capability: back up the whole knowledge base, and restore it."""
