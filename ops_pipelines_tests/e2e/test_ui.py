"""What an operator sees, read through the webserver as the UI reads it: on the production-shaped
deployment, two containers synced, one swapped onto another embedder version by refresh_job and
rolled back by rollback_job, and one failed run. At each stage the serving facts are asserted over
the webserver's GraphQL (live_alias's materialized partitions: exactly one per container, its live
version; live_collection's latest materialization: the collection the alias serves), and the pages
an operator opens are screenshotted with Chromium (Playwright): the asset graph, live_alias's
partitions (the refresh matrix) after each stage, a check result and the failed run. The PNGs go to
the test's folder; with UPDATE_SCREENSHOTS=1 also to docs/img/, which docs/ui.md shows."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from ops_pipelines.refresh import SWAP_CHECKS
from ops_pipelines.remote import DagsterRemote
from ops_pipelines_tests.conftest import system_program
from ops_pipelines_tests.deployment import Deployment, deployment_running
from ops_pipelines_tests.e2e.test_operator_path import corpus, run_id_of, stop_sensor

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(1500)]

OLD, NEW = "hash-256@1", "hash-256@2"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
VIEWPORT = {"width": 1400, "height": 900}
PAGE_DEADLINE_MS = 60_000

LIVE_ALIAS_PARTITIONS = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename ... on AssetNode {
  partitionStats { numMaterialized numPartitions numFailed }
  partitionKeysByDimension { name partitionKeys }
  assetPartitionStatuses {
    __typename
    ... on DefaultPartitionStatuses { materializedPartitions }
    ... on MultiPartitionStatuses { primaryDimensionName ranges {
      primaryDimStartKey primaryDimEndKey
      secondaryDim { ... on DefaultPartitionStatuses { materializedPartitions } }
    } }
  }
} } }
"""

LATEST_MATERIALIZATION = """
query($key: AssetKeyInput!, $partitions: [String!]) { assetNodeOrError(assetKey: $key) { __typename
  ... on AssetNode { latestMaterializationByPartition(partitions: $partitions) {
    partition runId timestamp description
    metadataEntries { label
      ... on TextMetadataEntry { text }
      ... on IntMetadataEntry { intValue }
      ... on BoolMetadataEntry { boolValue }
      ... on TimestampMetadataEntry { timestamp }
    }
  } }
} }
"""


def materialized_partitions(remote: DagsterRemote, asset: str) -> set[str]:
    """The materialized partitions of a partitioned asset, as the UI's partitions view reads them
    (``assetPartitionStatuses``); a (container, embedder version) one as ``container|version``.
    Checked against ``partitionStats``, the counts the asset's page shows."""
    node = remote.query(LIVE_ALIAS_PARTITIONS, {"key": {"path": [asset]}})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    statuses = node["assetPartitionStatuses"]
    if statuses["__typename"] == "DefaultPartitionStatuses":
        found = set(statuses["materializedPartitions"])
    else:
        assert statuses["__typename"] == "MultiPartitionStatuses", statuses
        dimensions = {d["name"]: d["partitionKeys"] for d in node["partitionKeysByDimension"]}
        primary_name = statuses["primaryDimensionName"]
        primary = dimensions[primary_name]
        found = set()
        for span in statuses["ranges"]:
            start, end = primary.index(span["primaryDimStartKey"]), primary.index(span["primaryDimEndKey"])
            for first in primary[start : end + 1]:
                for second in span["secondaryDim"]["materializedPartitions"]:
                    # A multi-partition key names its dimensions in alphabetical order.
                    by_name = {primary_name: first, **{n: second for n in dimensions if n != primary_name}}
                    found.add("|".join(by_name[n] for n in sorted(by_name)))
    stats = node["partitionStats"]
    assert stats["numMaterialized"] == len(found) and stats["numFailed"] == 0, (stats, found)
    return found


def latest_materialization(remote: DagsterRemote, asset: str, partition: str) -> dict:
    """Description and metadata (label: value) of the latest materialization of one partition."""
    node = remote.query(LATEST_MATERIALIZATION, {"key": {"path": [asset]}, "partitions": [partition]})[
        "assetNodeOrError"
    ]
    assert node["__typename"] == "AssetNode", node
    (event,) = node["latestMaterializationByPartition"]
    assert event is not None, f"no materialization of {asset} {partition}"
    values = {}
    for entry in event["metadataEntries"]:
        values[entry["label"]] = next(
            (entry[k] for k in ("text", "intValue", "boolValue", "timestamp") if k in entry), None
        )
    return {"description": event["description"], "run_id": event["runId"], "metadata": values}


def serving_facts(remote: DagsterRemote, slug: str) -> dict:
    """What live_collection's latest materialization of ``slug`` says serves it."""
    md = latest_materialization(remote, "live_collection", slug)["metadata"]
    assert md["live_since"] and md["live_since"] > 0, md  # a timestamp
    return {k: md[k] for k in ("alias", "collection", "embedder_version", "generation")}


def facts(slug: str, version: str, generation: int) -> dict:
    return {
        "alias": f"kb_{slug}",
        "collection": f"kb_{slug}__{version.replace('@', '-')}__g{generation}",
        "embedder_version": version,
        "generation": generation,
    }


class Screens:
    """Chromium on the deployment's webserver. Each screenshot goes into ``folder``, and into
    docs/img/ with UPDATE_SCREENSHOTS=1; every wait is Playwright's, with its deadline."""

    def __init__(self, page, url: str, folder: Path):
        self.page, self.url, self.folder = page, url, folder
        folder.mkdir(parents=True, exist_ok=True)

    def open(self, path: str, *texts: str) -> None:
        """Open ``path`` and wait until each of ``texts`` shows."""
        self.page.goto(self.url + path, wait_until="domcontentloaded")
        self.shows(*texts)

    def shows(self, *texts: str) -> None:
        for text in texts:
            self.page.get_by_text(text, exact=False).first.wait_for(state="visible")

    def click(self, text: str) -> None:
        self.page.get_by_text(text, exact=True).first.click()

    def take(self, name: str, *texts: str) -> str:
        """The screenshot ``name``.png once the page is quiet; the page's text, which must
        contain each of ``texts``."""
        self.page.wait_for_load_state("networkidle")
        body = self.page.inner_text("body")
        for text in texts:
            assert text in body, f"{name}: {text!r} not on the page:\n{body[:3000]}"
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        assert path.stat().st_size < 300_000, f"{path}: {path.stat().st_size} bytes"
        if os.environ.get("UPDATE_SCREENSHOTS") == "1":
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS_IMG / path.name)
        return body


@contextmanager
def chromium(executable: str, url: str, folder: Path) -> Iterator[Screens]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(PAGE_DEADLINE_MS)
            yield Screens(context.new_page(), url, folder)
        finally:
            browser.close()


def refresh_matrix(screens: Screens, name: str, live: set[str], slug: str, facts_of_slug: dict) -> None:
    """live_alias's Partitions tab: one green (materialized) version per container; ``slug``
    clicked, then its live version, whose latest materialization names the collection it serves."""
    version = facts_of_slug["embedder_version"]
    screens.open("/assets/live_alias?view=partitions", f"Materialized ({len(live)})")
    screens.click(slug)
    screens.click(version)
    screens.shows(f"{slug}|{version}", facts_of_slug["collection"])
    body = screens.take(name, "live_alias", f"Materialized ({len(live)})", f"{slug}|{version}", facts_of_slug["collection"])
    for key in live:
        assert key.split("|")[0] in body


@pytest.fixture
def browser() -> str:
    """Debian's Chromium (Playwright's own browsers are never downloaded): skipped without it,
    failed under CI. Resolved before minutes of starting Dagster."""
    return system_program("chromium", "chromium")


@pytest.fixture
def deployment(browser, tmp_path, monkeypatch) -> Iterator[Deployment]:
    with deployment_running(
        tmp_path, monkeypatch, embedders_toml=f'[versions."{NEW}"]\nprovider = "hashing"\ndimension = 256\n'
    ) as running_deployment:
        yield running_deployment


def test_what_an_operator_sees(deployment: Deployment, browser: str, tmp_path):
    d = deployment
    stop_sensor(d.remote, "source_change_sensor")  # this test launches every sync itself
    d.remote.query("mutation { setNuxSeen }")  # the UI's first-visit newsletter dialog, as Skip does
    code, out = d.cli("embedders", "sync")
    assert code == 0, out
    for slug in ("alpha", "beta"):
        code, out = d.cli("container", "add", "--slug", slug, "--source", f"folder:{corpus(tmp_path / slug, 6)}",
                          "--embedder", OLD)
        assert code == 0, out

    def served(live: set[str], expected: dict[str, dict]) -> None:
        """What the webserver says serves each container, and that it is what does."""
        assert materialized_partitions(d.remote, "live_alias") == live
        for slug, want in expected.items():
            assert serving_facts(d.remote, slug) == want, slug
            alias_md = latest_materialization(d.remote, "live_alias", f"{slug}|{want['embedder_version']}")["metadata"]
            assert {k: alias_md[k] for k in want} == want, slug
            assert d.serving(slug) == want["collection"]  # the alias in Qdrant, not only the records

    with chromium(browser, d.url, tmp_path / "screenshots") as screens:
        # 1. Both containers synced: each served by its first generation under hash-256@1.
        for slug in ("alpha", "beta"):
            code, out = d.cli("trigger", "sync_job", "--container", slug, "--wait", "--timeout", "300")
            assert code == 0, out + d.diagnostics()
        synced = {"alpha|hash-256@1", "beta|hash-256@1"}
        served(synced, {"alpha": facts("alpha", OLD, 1), "beta": facts("beta", OLD, 1)})
        refresh_matrix(screens, "refresh-matrix-sync", synced, "alpha", facts("alpha", OLD, 1))

        # 2. alpha swapped onto hash-256@2 by refresh_job: its one green cell moves.
        code, out = d.cli("trigger", "refresh_job", "--container", "alpha", "--embedder-version", NEW,
                          "--wait", "--timeout", "300")
        assert code == 0, out + d.diagnostics()
        swapped = {"alpha|hash-256@2", "beta|hash-256@1"}
        served(swapped, {"alpha": facts("alpha", NEW, 2), "beta": facts("beta", OLD, 1)})
        refresh_matrix(screens, "refresh-matrix-swap", swapped, "alpha", facts("alpha", NEW, 2))

        # The swap gate's checks on the generation it built, each with its description and result.
        description = SWAP_CHECKS["point_count"]
        screens.open("/assets/shadow_collection?view=checks", "point_count")
        screens.click("point_count")
        screens.shows("Latest execution", "alpha hash-256@2 (g2):")
        screens.take("check-result", "shadow_collection", "point_count", description, "alpha hash-256@2 (g2):",
                     "Passed", "kb_alpha__hash-256-2__g2")

        # 3. rollback_job puts generation 1 back behind the alias: the green cell moves back.
        rollback = json.dumps({"ops": {"rollback_alias": {"config": {"container": "alpha"}}}})
        code, out = d.cli("trigger", "rollback_job", "--container", "alpha", "--config-json", rollback,
                          "--wait", "--timeout", "300")
        assert code == 0, out + d.diagnostics()
        served(synced, {"alpha": facts("alpha", OLD, 1), "beta": facts("beta", OLD, 1)})
        assert latest_materialization(d.remote, "live_alias", "alpha|hash-256@1")["metadata"]["rollback"] is True
        refresh_matrix(screens, "refresh-matrix-rollback", synced, "alpha", facts("alpha", OLD, 1))

        # The asset graph: the sync, refresh and quality groups, expanded.
        groups = ("sync", "refresh", "quality")
        selection = quote(" or ".join(f'group:"{g}"' for g in groups), safe="")
        expanded = quote(",".join(f"global@global:{g}" for g in groups), safe="")
        screens.open(f"/asset-groups~{selection}/?expanded={expanded}", "Global asset lineage", "live_alias")
        screens.take("asset-graph", "Global asset lineage", "source_documents", "live_collection",
                     "shadow_collection", "live_alias")

        # 4. A failed run: the source folder of a third container is gone before its sync.
        gone = corpus(tmp_path / "gone", 2)
        code, out = d.cli("container", "add", "--slug", "gone", "--source", f"folder:{gone}", "--embedder", OLD)
        assert code == 0, out
        shutil.rmtree(gone)
        code, out = d.cli("trigger", "sync_job", "--container", "gone", "--wait", "--timeout", "300")
        assert code == 1 and "step source_documents: folder source" in out, out
        failed = run_id_of(out)
        # live_alias still has one cell per serving container: gone never served.
        served(synced, {"alpha": facts("alpha", OLD, 1), "beta": facts("beta", OLD, 1)})
        screens.open(f"/runs/{failed}", "does not exist (unmounted or moved?)")
        screens.shows("Errored (1)")
        screens.take("failed-run", failed[:8], "Failure", "sync_job", "partition: gone", "source_documents",
                     "does not exist (unmounted or moved?)")
