"""The Dagster layer: thin wiring of the plain-Python core, one folder per capability.

``ops_pipelines.definitions`` loads this folder with ``load_from_defs_folder`` (the dg project
layout): every asset, check, job, schedule and sensor at the top level of a module here is in the
code location, with no list to keep in step. A module that imports another's asset (a dependency,
a job's selection) holds the same object, which Dagster registers once. ``location.shared`` adds
the resources and the executor; ``location.load_capability`` loads one capability folder the same
way, for a command that runs only that capability's job.
"""
