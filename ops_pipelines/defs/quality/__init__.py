"""Capability: retrieval quality over time (the swap gate's check lives with refresh)."""

from dagster import Definitions

from ops_pipelines.defs.quality.assets import retrieval_eval
from ops_pipelines.defs.quality.jobs import retrieval_eval_job, retrieval_eval_schedule, retrieval_eval_sensor

defs = Definitions(
    assets=[retrieval_eval],
    jobs=[retrieval_eval_job],
    sensors=[retrieval_eval_sensor],
    schedules=[retrieval_eval_schedule],
)
