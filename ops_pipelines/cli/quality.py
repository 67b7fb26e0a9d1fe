"""``ops-pipelines eval``: golden query sets, and how well a generation answers them.

``eval SLUG [--generation N]`` evaluates (the live generation by default); ``eval set SLUG FILE``
registers a golden set, ``eval show SLUG`` shows it, ``eval compare SLUG A B`` puts two
generations side by side, ``eval gate SLUG`` shows or sets the container's own bounds for the
swap gate's retrieval_quality check.
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
    `eval compare SLUG A B`, `eval gate SLUG [--tolerance X] [--floor Y]`."""


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


@eval_command.command("gate")
@click.argument("slug")
@click.option("--tolerance", type=click.FloatRange(0, 1), default=None,
              help="How much lower (absolute) a shadow's recall@10, MRR@10 or nDCG@10 may be than live's.")
@click.option("--floor", type=click.FloatRange(0, 1), default=None,
              help="The recall@10 a generation built with nothing live must reach.")
@click.option("--default", "reset", is_flag=True, help="Back to OPS_QUALITY_TOLERANCE and OPS_QUALITY_FLOOR.")
def eval_gate(slug: str, tolerance: float | None, floor: float | None, reset: bool) -> None:
    """SLUG's bounds for the retrieval_quality check of the swap gate: shown, or set."""
    from ops_pipelines import settings
    from ops_pipelines.kb.golden_sets import QualityBounds

    kb = common.open_kb()
    try:
        container = kb.get_container(slug)
        bounds = kb.quality_bounds(container.id)
        if reset or tolerance is not None or floor is not None:
            bounds = QualityBounds() if reset else QualityBounds(
                bounds.tolerance if tolerance is None else tolerance, bounds.floor if floor is None else floor
            )
            kb.set_quality_bounds(container.id, bounds)
    finally:
        kb.close()
    for name, own, default, variable in (
        ("tolerance", bounds.tolerance, settings.quality_tolerance(), "OPS_QUALITY_TOLERANCE"),
        ("floor", bounds.floor, settings.quality_floor(), "OPS_QUALITY_FLOOR"),
    ):
        click.echo(f"{name:<9} {own if own is not None else default:.3f}"
                   + ("  (its own)" if own is not None else f"  (the default, {variable})"))


@eval_command.command("run")
@click.argument("slug")
@click.option("--generation", type=int, default=None, help="A generation number (default: the live one).")
@click.option("--k", default=10, show_default=True, help="Documents ranked per query (recall@k).")
@click.option("--filter", "filters", multiple=True, metavar="NAME=VALUE",
              help="One slice: searches keep the points whose source field NAME is VALUE, and the queries are "
                   "those whose relevant documents are all in it (repeatable: all must hold).")
def eval_run(slug: str, generation: int | None, k: int, filters: tuple[str, ...]) -> None:
    """How well a generation of SLUG answers its golden set: recall@k, MRR@10, nDCG@10."""
    from ops_pipelines.cli.inspect import container_fields, parse_filters
    from ops_pipelines.quality.calibrate import NO_MATCH_PROBES

    where = parse_filters(filters, container_fields(slug)) if filters else None
    ((evaluation, least),) = _evaluate(slug, [generation], k, judge=True, where=where)
    click.echo(_heading(evaluation))
    click.echo("  " + "  ".join(f"{name} {value:.3f}" for name, value in evaluation.metrics.items())
               + f"  search p50 {evaluation.search_ms_p50:.1f} ms, p95 {evaluation.search_ms_p95:.1f} ms")
    if least is None:
        click.echo("  least score: none yet (every hit is returned; the swap gate and retrieval_eval calibrate it)")
    else:
        click.echo(f"  least score {least.min_score:.3f}: {least.golden_answered:.0%} of the queries answered above it, "
                   f"{least.probes_refused:.0%} of {len(NO_MATCH_PROBES)} made-up queries get no match")
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
    (a, _), (b, _) = _evaluate(slug, [first, second], k)
    click.echo(f"{'':<10} {_label(a):>28} {_label(b):>28} {'delta':>8}")
    for name, value in a.metrics.items():
        click.echo(f"{name:<10} {value:>28.3f} {b.metrics[name]:>28.3f} {b.metrics[name] - value:>+8.3f}")
    changed = [(qa, qb) for qa, qb in zip(a.queries, b.queries, strict=True) if qa.recall != qb.recall]
    if changed:
        click.echo()
        width = max(len(qa.id) for qa, _ in changed)
        for qa, qb in changed:
            click.echo(f"{qa.id:<{width}}  recall {qa.recall:.2f} -> {qb.recall:.2f}  {qa.query}")


def _evaluate(slug: str, numbers: list[int | None], k: int, judge: bool = False, where: dict[str, str] | None = None):
    """Each generation's evaluation (on the slice ``where`` if given), and (``judge``) how its
    least score splits the golden answers from made-up queries (None when it has none)."""
    from ops_pipelines.quality import current_golden_set, evaluate_generation
    from ops_pipelines.quality.calibrate import judged, probe_scores
    from ops_pipelines.quality.sets import slice_membership
    from ops_pipelines.search import min_score_of

    kb = common.open_kb()
    try:
        container = kb.get_container(slug)
        golden = current_golden_set(kb, container)
        if golden is None:
            raise click.ClickException(f"{slug} has no golden set: register one with ops-pipelines eval set {slug} FILE")
        generations = [_generation(kb, container, n) for n in numbers]
        in_slice = slice_membership(kb, container, golden, where) if where else None
        with common.open_vectors() as store:
            for g in generations:
                if store.collection_dimension(g.collection) is None:
                    raise click.ClickException(f"generation {g.number} of {slug}: collection {g.collection} does not exist")
            evaluated = []
            for g in generations:
                evaluation = evaluate_generation(store, container, g, golden, k, where=where, in_slice=in_slice)
                least = min_score_of(g) if judge else None
                evaluated.append((evaluation, None if least is None else judged(evaluation, probe_scores(store, g), least)))
            return evaluated
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
    shown = ", ".join(f"{key.removeprefix('fields.')}={value}" for key, value in (evaluation.where or {}).items())
    return (f"{evaluation.container} {_label(evaluation)}: {len(evaluation.queries)} queries of golden set "
            f"{evaluation.golden_hash[:12]}" + (f", slice {shown}" if shown else ""))
