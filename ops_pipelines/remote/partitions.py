"""How a job or a set of assets is partitioned, read from the webserver, and the partition keys
an operator's ``--container`` / ``--embedder-version`` / ``--partitions`` name, checked against
the dynamic partitions that exist before anything is launched."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ops_pipelines.remote import queries
from ops_pipelines.remote.client import DagsterRemote, JobRef, RemoteError

CONTAINERS = "containers"
EMBEDDER_VERSIONS = "embedder_versions"

# What to do when a value has no partition yet, per dynamic partitions definition.
_ADD_HINTS = {
    CONTAINERS: "register it with `ops-pipelines container add` (source_change_sensor also adds the "
    "containers the knowledge base has)",
    EMBEDDER_VERSIONS: "declare it in the registry (OPS_EMBEDDERS_FILE), then run `ops-pipelines embedders sync` "
    "or let embedder_versions_sensor add it",
}
_LABELS = {CONTAINERS: "container", EMBEDDER_VERSIONS: "embedder version"}
_OPTIONS = {CONTAINERS: "--container", EMBEDDER_VERSIONS: "--embedder-version"}
_LISTED = 20  # keys named in a message; a deployment may have thousands of containers


def _known(keys: tuple[str, ...]) -> str:
    if not keys:
        return "none yet"
    shown = ", ".join(keys[:_LISTED])
    return shown if len(keys) <= _LISTED else f"{shown}, … ({len(keys)} in all)"


@dataclass(frozen=True)
class Dimension:
    name: str  # "default" for a one-dimensional partitions definition
    dynamic_set: str | None  # the dynamic partitions definition behind it: containers, embedder_versions
    keys: tuple[str, ...]

    @property
    def label(self) -> str:
        return _LABELS.get(self.dynamic_set or "", self.name)

    def check(self, value: str, target: str) -> None:
        if value in self.keys:
            return
        known = _known(self.keys)
        hint = _ADD_HINTS.get(self.dynamic_set or "", "")
        raise RemoteError(
            f"{self.label} {value!r} is not a partition of {target} (known: {known})" + (f": {hint}" if hint else "")
        )


@dataclass(frozen=True)
class Partitioning:
    target: str  # a job name or the asset selection, for messages
    dimensions: tuple[Dimension, ...]  # empty: not partitioned

    def dimension(self, dynamic_set: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.dynamic_set == dynamic_set), None)

    def key(self, values: Mapping[str, str | None]) -> str:
        """The partition key of the values given per dynamic partitions definition
        (``{"containers": "docs", "embedder_versions": "hash-256@2"}`` -> ``docs|hash-256@2``)."""
        parts = []
        for dim in self.dimensions:
            value = values.get(dim.dynamic_set or "")
            if not value:
                known = _known(dim.keys)
                option = _OPTIONS.get(dim.dynamic_set or "", "a partition key")
                raise RemoteError(f"{self.target} is partitioned by {dim.label}: pass {option} (known: {known})")
            dim.check(value, self.target)
            parts.append(value)
        given = {name for name, value in values.items() if value}
        unused = given - {d.dynamic_set for d in self.dimensions}
        if unused:
            raise RemoteError(
                f"{self.target} is not partitioned by {', '.join(_LABELS.get(u, u) for u in sorted(unused))}"
            )
        return "|".join(parts)

    def check(self, key: str) -> None:
        """A full partition key (``docs|hash-256@2`` for two dimensions) whose every part exists."""
        parts = key.split("|")
        if len(parts) != len(self.dimensions):
            form = "|".join(f"<{d.label}>" for d in self.dimensions)
            raise RemoteError(f"partition {key!r} does not fit {self.target}, whose keys look like {form}")
        for dim, part in zip(self.dimensions, parts, strict=True):
            dim.check(part, self.target)


def job_partitioning(remote: DagsterRemote, job: JobRef) -> Partitioning:
    nodes = remote.query(queries.JOB_PARTITIONING, {"job": job.selector})["assetNodes"]
    return partitioning_from_nodes(job.name, nodes)


def asset_partitioning(remote: DagsterRemote, assets: Sequence[str]) -> Partitioning:
    keys = [{"path": asset.split("/")} for asset in assets]
    nodes = remote.query(queries.ASSET_PARTITIONING, {"assets": keys})["assetNodes"]
    return partitioning_from_nodes(", ".join(assets), nodes)


def partitioning_from_nodes(target: str, nodes: list[dict]) -> Partitioning:
    """The one partitioning the nodes share (an asset job has one partitions definition; an op job
    has no asset nodes and no partitions here)."""
    found = {_dimensions(node) for node in nodes}
    if len(found) > 1:
        raise RemoteError(f"{target} mixes assets partitioned differently: select assets of one partitioning")
    return Partitioning(target, found.pop() if found else ())


def _dimensions(node: dict) -> tuple[Dimension, ...]:
    if not node["partitionDefinition"]:
        return ()
    keys = {d["name"]: tuple(d["partitionKeys"]) for d in node["partitionKeysByDimension"]}
    return tuple(
        Dimension(d["name"], d["dynamicPartitionsDefinitionName"], keys.get(d["name"], ()))
        for d in node["partitionDefinition"]["dimensionTypes"]
    )
