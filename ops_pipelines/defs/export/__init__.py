"""Capability: export a container as an archive, and import one."""
