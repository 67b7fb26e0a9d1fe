"""export_job and import_job under real Dagster execution: export -> download through the URL
in the metadata -> verify -> import -> the same searches give the same top hits."""

from __future__ import annotations

import tempfile
import urllib.request
import uuid
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from ops_pipelines.archives import fetch_archive, read_archive
from ops_pipelines.defs.resources import ObjectStoreResource
from ops_pipelines.freshness import sync_freshness
from ops_pipelines_tests.conftest import step_failure_message
from ops_pipelines_tests.defs.test_sync_assets import top_keys

QUERIES = ("glaciers and ice", "apples in autumn", "rivers and the sea")


def export(harness, slug: str, raise_on_error: bool = True, **config):
    return harness.job("export_job").execute_in_process(
        instance=harness.instance,
        partition_key=slug,
        run_config={"ops": {"container_export": {"config": config}}} if config else None,
        raise_on_error=raise_on_error,
    )


def import_(harness, raise_on_error: bool = True, **config):
    return harness.job("import_job").execute_in_process(
        instance=harness.instance,
        run_config={"ops": {"import_container": {"config": config}}},
        raise_on_error=raise_on_error,
    )


@pytest.mark.parametrize("backend, fmt", [("folder", "tar"), ("folder", "zip"), ("s3", "tar"), ("s3", "zip")])
def test_export_download_verify_import(sqlite_harness, corpus, request, backend, fmt):
    harness = sqlite_harness
    if backend == "s3":  # a real S3 server: blobs, the archive, and a presigned URL on it
        server = request.getfixturevalue("s3_server")
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        harness.objects = ObjectStoreResource(
            s3_endpoint=server.endpoint, s3_bucket=bucket, s3_access_key=server.access_key,
            s3_secret_key=server.secret_key, s3_secure=False,
        )
    container = harness.add_container("docs", corpus)
    harness.sync("docs")
    result = export(harness, "docs", format=fmt)
    md = harness.metadata(result, "container_export")
    assert md["object_key"] == f"exports/{container.id}/{result.run_id}.{fmt}"
    assert (md["documents"], md["chunks"], md["vectors"], md["blobs"]) == (5, 5, 5, 5)
    assert md["url"].startswith("http://" if backend == "s3" else "file://")
    assert harness.resources()["objects"].open().size(md["object_key"]) == md["size_bytes"]
    if backend == "s3":
        assert server.secret_key not in repr(md) and server.secret_key not in repr(result.all_events)

    with tempfile.TemporaryDirectory() as tmp:
        downloaded = Path(tmp) / "download"
        with urllib.request.urlopen(md["url"]) as response:
            downloaded.write_bytes(response.read())
        assert downloaded.stat().st_size == md["size_bytes"]
        assert read_archive(downloaded).manifest["run_id"] == result.run_id

    imported = import_(harness, archive=md["url"], slug="copy")
    assert imported.success
    (event,) = imported.asset_materializations_for_node("import_container")
    assert event.partition == "copy" and event.metadata["checks_passed"].value == 6
    assert harness.instance.has_dynamic_partition("containers", "copy")
    for query in QUERIES:
        assert top_keys(harness, "copy", query) == top_keys(harness, "docs", query)


def test_import_by_object_key_and_refusals(sqlite_harness, corpus):
    harness = sqlite_harness
    harness.add_container("docs", corpus)
    harness.sync("docs")
    key = harness.metadata(export(harness, "docs"), "container_export")["object_key"]

    refused = import_(harness, archive=key, raise_on_error=False)
    assert not refused.success
    assert "'docs' already exists" in step_failure_message(refused)
    assert import_(harness, archive=key, force=True).success
    assert top_keys(harness, "docs", "glaciers and ice")[0] == "gamma.md"

    missing = import_(harness, archive="exports/nope.tar", raise_on_error=False)
    assert "neither a file, an http(s)/file URL nor an object" in step_failure_message(missing)


def test_export_of_an_unknown_container_fails_clearly(sqlite_harness):
    sqlite_harness.instance.add_dynamic_partitions("containers", ["ghost"])
    result = export(sqlite_harness, "ghost", raise_on_error=False)
    assert "container 'ghost' does not exist" in step_failure_message(result)


def test_fetch_refuses_an_altered_presigned_style_url_without_echoing_it(tmp_path):
    from ops_pipelines.archives import ArchiveError

    with pytest.raises(ArchiveError) as caught:
        fetch_archive("http://127.0.0.1:9/x.tar?X-Amz-Signature=secret", None, tmp_path)
    assert "secret" not in str(caught.value)


def test_an_unreachable_object_store_fails_the_export_clearly(sqlite_harness, corpus):
    import socket

    harness = sqlite_harness
    harness.add_container("docs", corpus)
    harness.sync("docs")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    harness.objects = ObjectStoreResource(
        s3_endpoint=f"127.0.0.1:{port}", s3_access_key="k", s3_secret_key="never-shown", s3_secure=False
    )
    result = export(harness, "docs", raise_on_error=False)
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert failure.user_failure_data is not None  # an operator error, not a crash
    assert f"object store s3://ops-pipelines at 127.0.0.1:{port} is unavailable" in failure.user_failure_data.description
    assert "never-shown" not in repr(result.all_events)


def test_an_import_records_when_its_content_was_synced(sqlite_harness, corpus):
    """The imported container is as fresh as the one exported, not "never synced"."""
    harness = sqlite_harness
    harness.add_container("docs", corpus)
    harness.sync("docs")
    key = harness.metadata(export(harness, "docs"), "container_export")["object_key"]
    assert import_(harness, archive=key, slug="copy").success
    with closing(harness.kb()) as kb:
        synced = kb.get_container("docs").last_synced_at
        assert kb.get_container("copy").last_synced_at == synced
        report = sync_freshness(kb.list_containers(), timedelta(hours=24))
    assert report.summary() == "all 2 containers synced within 24 h"
    with tempfile.TemporaryDirectory() as tmp:
        manifest = read_archive(fetch_archive(key, harness.resources()["objects"].open(), Path(tmp))).manifest
    assert manifest["container"]["last_synced_at"] == synced.isoformat()
