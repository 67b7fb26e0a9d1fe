"""``ops-pipelines eval``: golden query sets, and how well a generation answers them.

``eval SLUG [--generation N]`` evaluates (the live generation by default); ``eval set SLUG FILE``
registers a golden set, ``eval show SLUG`` shows it, ``eval compare SLUG A B`` puts two
generations side by side.
"""

from __future__ import annotations

from pathlib import Path

import click

from ops_pipelines.cli import common


class _EvalGroup(click.Group):
    """A first word that is no subcommand is a container: ``eval SLUG`` is ``eval run SLUG``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("eval", cls=_EvalGroup)
def eval_command() -> None:
    """Retrieval quality: `eval SLUG [--generation N]`, `eval set SLUG FILE`, `eval show SLUG`,
    `eval compare SLUG A B`."""


@eval_command.command("set")
@click.argument("slug")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def eval_set(slug: str, file: Path) -> None:
    """Register FILE (JSONL: {"query": ..., "relevant": [source keys]} a line) as SLUG's golden set."""
    from ops_pipelines.quality import register_golden_set

    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from None
    kb = common.open_kb()
    try:
        golden, added = register_golden_set(kb, kb.get_container(slug), text, str(file))
    finally:
        kb.close()
    state = "registered" if added else "already its golden set"
    click.echo(f"golden set of {slug}: {len(golden.queries)} queries, version {golden.content_hash[:12]} ({state})")


@eval_command.command("show")
@click.argument("slug")
def eval_show(slug: str) -> None:
    """SLUG's golden set: every version, and the queries of the latest."""
    from ops_pipelines.quality import current_golden_set

    kb = common.open_kb()
    try:
        container = kb.get_container(slug)
        versions = kb.golden_set_versions(container.id)
        golden = current_golden_set(kb, container)
    finally:
        kb.close()
    if golden is None:
        click.echo(f"{slug} has no golden set: register one with ops-pipelines eval set {slug} FILE")
        return
    for n, v in enumerate(versions):
        click.echo(f"{v.content_hash[:12]}  {v.queries:>5} queries  {v.created_at:%Y-%m-%dT%H:%M:%S}" + ("  (in use)" if n == 0 else ""))
    click.echo()
    width = max(len(q.id) for q in golden.queries)
    for q in golden.queries:
        relevant = ", ".join(k if g == 1 else f"{k} ({g})" for k, g in q.relevant.items())
        click.echo(f"{q.id:<{width}}  {q.query}  ->  {relevant}")


@eval_command.command("run")
@click.argument("slug")
@click.option("--generation", type=int, default=None, help="A generation number (default: the live one).")
@click.option("--k", default=10, show_default=True, help="Documents ranked per query (recall@k).")
def eval_run(slug: str, generation: int | None, k: int) -> None:
    """How well a generation of SLUG answers its golden set: recall@k, MRR@10, nDCG@10."""
    evaluation = _evaluate(slug, [generation], k)[0]
    click.echo(_heading(evaluation))
    click.echo("  " + "  ".join(f"{name} {value:.3f}" for name, value in evaluation.metrics.items())
               + f"  search p50 {evaluation.search_ms_p50:.1f} ms, p95 {evaluation.search_ms_p95:.1f} ms")
    click.echo()
    width = max(len(q.id) for q in evaluation.queries)
    for q in evaluation.queries:
        top = q.ranking[0] if q.ranking else "-"
        click.echo(f"{q.id:<{width}}  recall {q.recall:.2f}  rr {q.reciprocal_rank:.2f}  ndcg {q.ndcg:.2f}  top {top}  {q.query}")


@eval_command.command("compare")
@click.argument("slug")
@click.argument("first", type=int)
@click.argument("second", type=int)
@click.option("--k", default=10, show_default=True, help="Documents ranked per query (recall@k).")
def eval_compare(slug: str, first: int, second: int, k: int) -> None:
    """Generations FIRST and SECOND of SLUG on its golden set, side by side."""
    a, b = _evaluate(slug, [first, second], k)
    click.echo(f"{'':<10} {_label(a):>28} {_label(b):>28} {'delta':>8}")
    for name, value in a.metrics.items():
        click.echo(f"{name:<10} {value:>28.3f} {b.metrics[name]:>28.3f} {b.metrics[name] - value:>+8.3f}")
    changed = [(qa, qb) for qa, qb in zip(a.queries, b.queries, strict=True) if qa.recall != qb.recall]
    if changed:
        click.echo()
        width = max(len(qa.id) for qa, _ in changed)
        for qa, qb in changed:
            click.echo(f"{qa.id:<{width}}  recall {qa.recall:.2f} -> {qb.recall:.2f}  {qa.query}")


def _evaluate(slug: str, numbers: list[int | None], k: int):
    from ops_pipelines.quality import current_golden_set, evaluate_generation

    kb = common.open_kb()
    try:
        container = kb.get_container(slug)
        golden = current_golden_set(kb, container)
        if golden is None:
            raise click.ClickException(f"{slug} has no golden set: register one with ops-pipelines eval set {slug} FILE")
        generations = [_generation(kb, container, n) for n in numbers]
        with common.open_vectors() as store:
            for g in generations:
                if store.collection_dimension(g.collection) is None:
                    raise click.ClickException(f"generation {g.number} of {slug}: collection {g.collection} does not exist")
            return [evaluate_generation(store, container, g, golden, k) for g in generations]
    finally:
        kb.close()


def _generation(kb, container, number: int | None):
    from ops_pipelines.kb.generations import DROPPED

    if number is None:
        live = kb.live_generation(container.id)
        if live is None:
            raise click.ClickException(f"{container.slug} has no live generation yet: sync it first")
        return live
    known = {g.number: g for g in kb.generations(container.id) if g.state != DROPPED}
    if number not in known:
        listed = ", ".join(f"g{n}" for n in sorted(known)) or "none"
        raise click.ClickException(f"{container.slug} has no generation {number} to evaluate (kept: {listed})")
    return known[number]


def _label(evaluation) -> str:
    return f"g{evaluation.generation} {evaluation.embedder_version}"


def _heading(evaluation) -> str:
    return (f"{evaluation.container} {_label(evaluation)}: {len(evaluation.queries)} queries of golden set "
            f"{evaluation.golden_hash[:12]}")
