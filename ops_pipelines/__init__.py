"""ops-pipelines: the day-2 operations of retrieval (RAG) knowledge bases, as a Dagster code location."""
