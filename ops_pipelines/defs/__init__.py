"""The Dagster layer: thin wiring of the plain-Python core, one folder per capability."""
