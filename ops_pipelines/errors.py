"""Errors shared by the core packages, below every one of them (no imports of ours)."""


class OperatorError(Exception):
    """Something an operator can act on: the message says what happened and what to do, and is
    all the CLI prints (no traceback) and what a failed run shows first."""


class VectorStoreBusy(OperatorError, RuntimeError):
    """Another operation holds what this one must write or open (a container's lease, an
    embedded shard's files) for longer than it would wait; the message names the holder."""
