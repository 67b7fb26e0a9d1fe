"""Whether each container's searches reach what the metadata DB says they should: its alias on its
recorded live generation, that collection holding one point per active chunk, and no writer of it
killed half way.

What it catches: a sync killed mid-upsert (points missing, or old ones not deleted yet), a restore
killed between its DB commit and its alias update (a Qdrant server's aliases still on the replaced
collections), a live collection that is gone, an alias left for a container that no longer exists.
It costs counts, never a scroll: a point count per live collection (on the embedded engine that
opens the collection's shard) and an active-chunk count per container. Equal counts with other
points (as many missing as stale) are not seen; a killed writer is, by the lease it left behind.
A container whose lease a running writer holds is not checked (its counts are moving).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ops_pipelines.embedders import get_version
from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import Container, KnowledgeBase, LeaseInfo
from ops_pipelines.kb.lease_rows import CONTAINER_PREFIX, KB_KEY
from ops_pipelines.vectors import VectorStore, alias_name
from ops_pipelines.vectors.serving import serving_collection


class ServingBroken(OperatorError):
    """A container's searches reach another collection than its live generation, or one that does
    not hold its active chunks, or its last writer was killed while writing."""


@dataclass(frozen=True)
class ServingProblem:
    container: str  # slug ("" for an alias of no container)
    problem: str
    remedy: str

    def describe(self) -> str:
        return f"{self.container + ': ' if self.container else ''}{self.problem}: {self.remedy}"


@dataclass(frozen=True)
class ServingReport:
    served: int  # containers with a live generation checked and in step
    problems: list[ServingProblem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # being written: "<slug> (run X)"

    def describe(self) -> str:
        if self.problems:
            broken = sorted({p.container for p in self.problems if p.container})
            head = f"{len(broken)} container(s) not served as recorded" if broken else "serving is not as recorded"
            return f"{head}: " + "; ".join(p.describe() for p in self.problems)
        line = f"{self.served} containers served: each alias on its live generation, one point per active chunk"
        if self.skipped:
            line += f"; being written, not checked: {', '.join(self.skipped)}"
        return line


def serving_report(kb: KnowledgeBase, store: VectorStore) -> ServingReport:
    leases = {lease.key: lease for lease in kb.leases()}
    whole = leases.get(KB_KEY)
    if whole is not None and not whole.abandoned:
        return ServingReport(0, skipped=[f"every container (the whole knowledge base is held by {_who(whole)})"])
    problems, skipped, served = [], [], 0
    if whole is not None:
        problems.append(
            ServingProblem(
                "",
                f"{_who(whole)} stopped while it held the whole knowledge base (a restore or maintenance; its "
                f"lease is left since {whole.acquired_at:%Y-%m-%d %H:%M:%S} UTC)",
                "run it again, or run maintenance_job, which repairs what a killed restore leaves",
            )
        )
    containers = kb.list_containers()
    for container in containers:
        lease = leases.get(CONTAINER_PREFIX + container.id)
        if lease is not None and not lease.abandoned:
            skipped.append(f"{container.slug} ({_who(lease)})")
            continue
        found = _container_problems(kb, store, container)
        if lease is not None:
            found.insert(
                0,
                ServingProblem(
                    container.slug,
                    f"{_who(lease)} stopped while writing it (its lease is left since "
                    f"{lease.acquired_at:%Y-%m-%d %H:%M:%S} UTC), what it wrote may be half done",
                    f"run that operation again (`ops-pipelines sync {container.slug}` brings the live collection in step)",
                ),
            )
        problems += found
        if not found and kb.live_generation(container.id) is not None:
            served += 1
    problems += _stray_aliases(store, {c.slug for c in containers})
    return ServingReport(served, problems, skipped)


def _container_problems(kb: KnowledgeBase, store: VectorStore, container: Container) -> list[ServingProblem]:
    live = kb.live_generation(container.id)
    if live is None:
        return []  # never synced: nothing serves it yet (sync freshness says so)
    slug, alias = container.slug, alias_name(container.slug)
    serving = serving_collection(kb, store, container)
    if serving is None:
        if store.keeps_aliases and store.collection_dimension(live.collection) is not None:
            return [ServingProblem(slug, f"no alias {alias}", f"{_sync(slug)} (or maintenance_job) puts it on {live.collection}")]
        return [ServingProblem(slug, f"its live collection {live.collection} does not exist",
                               f"{_sync(slug)}: it is written again from the embedding cache")]
    if serving != live.collection:
        return [
            ServingProblem(
                slug,
                f"alias {alias} serves {serving}, but the live generation is g{live.number} ({live.collection})",
                f"{_sync(slug)} (or maintenance_job, for every container) moves the alias",
            )
        ]
    points, chunks = store.count(serving), kb.count_active_chunks(container.id, get_version(live.embedder_version).chunker)
    if points != chunks:
        return [
            ServingProblem(
                slug,
                f"{serving} holds {points} points for {chunks} active chunks (a write stopped half way?)",
                f"{_sync(slug)} (or maintenance_job, if its source cannot be read)",
            )
        ]
    return []


def _stray_aliases(store: VectorStore, slugs: set[str]) -> list[ServingProblem]:
    """On a server, aliases named like ours for containers that do not exist (a restore that died
    before it removed them): they keep the collections they serve from maintenance."""
    if not store.keeps_aliases:
        return []
    prefix = alias_name("")
    stray = sorted(a for a in store.aliases() if a.startswith(prefix) and a[len(prefix) :] not in slugs)
    return [ServingProblem("", f"alias {a} is left for a container that does not exist", "run maintenance_job")
            for a in stray]


def _sync(slug: str) -> str:
    return f"run `ops-pipelines sync {slug}`"


def _who(lease: LeaseInfo) -> str:
    where = f"pid {lease.pid} on {lease.host}"
    return where if lease.holder == f"pid {lease.pid}" else f"run {lease.holder} ({where})"
