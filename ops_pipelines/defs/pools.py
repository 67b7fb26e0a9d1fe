"""Concurrency pools: Dagster counts the steps of each pool running across all runs, and a step
waits for a free slot (limits in the instance: `concurrency: pools:` in dagster.yaml, or
`dagster instance concurrency set <pool> <n>`)."""

# Steps that run an embedding model: one at a time per machine that runs them keeps a model's
# memory and CPU threads from being multiplied by concurrent runs.
EMBEDDER = "embedder"

# Steps that write Qdrant collections or aliases: a server is spared a burst of bulk upserts from
# parallel backfill runs (the container lease, not this pool, keeps two writers of one container
# apart; the embedded engine opens each collection in one process at a time).
QDRANT_WRITES = "qdrant_writes"
