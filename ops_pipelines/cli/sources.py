"""``ops-pipelines source status|reset``: remote sources' cursors and circuit breakers."""

from __future__ import annotations

import json

import click

from ops_pipelines.cli import common


@click.group()
def source() -> None:
    """Remote sources: cursors, full passes and circuit breakers."""


@source.command("status")
@click.argument("slug", required=False)
def source_status(slug: str | None) -> None:
    """Each container's breaker state, consecutive failures, last full pass and cursor."""
    from ops_pipelines.ingest import BreakerPolicy, breaker_status
    from ops_pipelines.kb.clock import utcnow

    policy = BreakerPolicy.from_env()
    kb = common.open_kb()
    try:
        containers = [kb.get_container(slug)] if slug else kb.list_containers()
        rows = [(c, kb.source_state(c.id)) for c in containers]
    finally:
        kb.close()
    for c, state in rows:
        status = breaker_status(state, policy, utcnow())
        full = state.full_synced_at.isoformat(timespec="seconds") if state.full_synced_at else "never"
        line = f"{c.slug:<20} breaker={status:<9} failures={state.failures:<3} full_pass={full}"
        if state.opened_until and status == "open":
            line += f"  open_until={state.opened_until.isoformat(timespec='seconds')}"
        cursor = {k: v for k, v in state.state.items() if k != "validators"}
        if cursor:
            line += f"  cursor={json.dumps(cursor, sort_keys=True)}"
        click.echo(line)
        if state.last_error:
            click.echo(f"{'':<20} last error: {state.last_error}")


@source.command("reset")
@click.argument("slug")
def source_reset(slug: str) -> None:
    """Close a container's circuit breaker now (after fixing its source)."""
    kb = common.open_kb()
    try:
        container = kb.get_container(slug)
        kb.record_source_success(container.id)
    finally:
        kb.close()
    click.echo(f"{slug}: circuit breaker closed; the next sync reads the source (ops-pipelines sync {slug})")
