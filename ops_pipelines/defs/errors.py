"""Errors an operator can act on, shown as the run's failure message: no traceback hunt.

Every such error subclasses ``ops_pipelines.errors.OperatorError``, so this module imports no
package of ours to list them (a job loads only what its steps use)."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import DagsterEvent, Failure

from ops_pipelines.errors import OperatorError


@contextmanager
def operator_errors() -> Iterator[None]:
    """An ``OperatorError`` becomes the step's ``Failure``, its message the failure's description:
    the first thing the UI's run page, the alerts and the CLI show (the original exception stays
    its cause, with its traceback, for ``--debug`` and the UI's full view)."""
    try:
        yield
    except OperatorError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc


def step_error(event: DagsterEvent) -> str:
    """A failed step's error in the operator's words: a ``Failure``'s description, else the user
    code's exception rather than Dagster's wrapping of it."""
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    if error is None:
        return "the step failed without an error message"
    if error.cls_name == "DagsterExecutionStepExecutionError" and error.cause is not None:
        error = error.cause
    return error.message
