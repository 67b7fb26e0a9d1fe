"""Errors shared by the core packages, below every one of them (no imports of ours)."""


class VectorStoreBusy(RuntimeError):
    """Another operation holds what this one must write or open (a container's lease, an
    embedded shard's files) for longer than it would wait; the message names the holder."""
