"""Aliases on a Qdrant server: every container's alias on its recorded live generation, and no
alias of ours (``kb_<slug>``) left for a container that no longer exists.

A restore killed between its DB commit and its alias update leaves the aliases on the replaced
knowledge base's collections (a sync moves its own container's alias; this moves them all, in one
atomic alias update). A container whose live collection is missing keeps its alias as it is (a
sync writes the collection again). The embedded engine has no aliases: the live-generation record
is the alias, so there is nothing to repair.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.maintenance.common import frame
from ops_pipelines.vectors import VectorStore, alias_name

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MovedAlias:
    alias: str
    was: str | None  # the collection it served, None if there was no alias
    to: str | None  # the collection it serves now, None if removed
    action: str  # moved / created / removed, or "would ..." on a dry run


@dataclass(frozen=True)
class AliasRepairReport:
    aliases: tuple[MovedAlias, ...]
    dry_run: bool

    @property
    def table(self) -> pd.DataFrame:
        return frame(MovedAlias, self.aliases)


def repair_aliases(
    kb: KnowledgeBase, store: VectorStore, dry_run: bool = False, log: logging.Logger = _log
) -> AliasRepairReport:
    if not store.keeps_aliases:
        return AliasRepairReport((), dry_run)
    prefix = alias_name("")
    current = {alias: name for alias, name in store.aliases().items() if alias.startswith(prefix)}
    wanted = {}
    for container in kb.list_containers():
        alias, live = alias_name(container.slug), kb.live_generation(container.id)
        if live is not None and store.collection_dimension(live.collection) is not None:
            wanted[alias] = live.collection
        elif alias in current:
            wanted[alias] = current[alias]
    moved = []
    for alias in sorted(set(current) | set(wanted)):
        was, to = current.get(alias), wanted.get(alias)
        if was != to:
            action = "moved" if was and to else "created" if to else "removed"
            moved.append(MovedAlias(alias, was, to, f"would be {action}" if dry_run else action))
            log.info("alias %s: %s -> %s (%s)", alias, was, to, moved[-1].action)
    if moved and not dry_run:
        store.replace_aliases(wanted, prefix=prefix)
    return AliasRepairReport(tuple(moved), dry_run)
