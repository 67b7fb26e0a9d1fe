"""Operator commands, run as an operator would, against a temporary DAGSTER_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance

from ops_pipelines.cli import DEMO_QUERY, main

REPO_DOCS = Path(__file__).resolve().parents[2] / "docs"


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_container_add_list_sync_search(home, corpus):
    code, out = run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    assert code == 0, out
    assert "container kb1" in out
    assert DagsterInstance.get().has_dynamic_partition("containers", "kb1")

    code, out = run("sync", "kb1")
    assert code == 0, out
    assert "inserted 5, updated 0, skipped 0" in out

    code, out = run("sync", "kb1")
    assert "inserted 0, updated 0, skipped 5" in out and "0 computed" in out

    code, out = run("container", "list")
    assert "kb1" in out and "active=5" in out and "synced=never" not in out

    code, out = run("search", "kb1", "glaciers and mountain valleys", "--limit", "2")
    assert code == 0
    assert out.splitlines()[0].endswith("[gamma.md]")


def test_declared_fields_and_filtered_searches(home, corpus, tmp_path):
    import json

    path = tmp_path / "teams.jsonl"
    rows = [
        {"id": "1", "text": "Rotate the API keys every year.", "team": "infra", "lang": "en"},
        {"id": "2", "text": "Rotate the on-call every week.", "team": "ops", "lang": "en"},
        {"id": "3", "text": "Faire tourner les clés chaque année.", "team": "infra", "lang": "fr"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def keys(out: str) -> list[str]:
        return sorted(line.rsplit("[", 1)[1].rstrip("]") for line in out.splitlines() if line[:1].isdigit())

    code, out = run("container", "add", "--slug", "teams", "--source", f"jsonl:{path}", "--field", "team",
                    "--field", "lang", "--embedder", "hash-256@1")
    assert code == 0, out
    assert "fields lang, team; filter searches with: --filter NAME=VALUE" in out
    assert run("container", "list")[1].rstrip().endswith(f"jsonl:{path} fields=lang,team")
    assert run("sync", "teams")[0] == 0

    code, out = run("search", "teams", "rotate keys", "--filter", "team=infra")
    assert code == 0 and keys(out) == ["1", "3"]
    code, out = run("search", "teams", "rotate keys", "--filter", "team=infra", "--filter", "lang=fr")
    assert code == 0 and keys(out) == ["3"]
    assert run("search", "teams", "rotate keys", "--filter", "team=nobody")[1].strip() == "no hits"

    for bad, message in [
        ("team", "Error: invalid --filter 'team': write NAME=VALUE, e.g. --filter status=New"),
        ("=infra", "Error: invalid --filter '=infra': write NAME=VALUE"),
        ("owner=me", "Error: invalid --filter 'owner=me': the container's documents have no field 'owner'; they carry "
                     "lang, team"),
    ]:
        code, out = run("search", "teams", "rotate keys", "--filter", bad)
        assert code == 1 and out.startswith(message) and len(out.splitlines()) == 1, out
    code, out = run("search", "teams", "keys", "--filter", "team=infra", "--filter", "team=ops")
    assert code == 1 and "team is filtered on twice" in out
    code, out = run("search", "teams", "keys", "--filter", "extension=md")
    assert code == 1 and "no field 'extension'" in out

    code, out = run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--field", "team")
    assert code == 1 and "a folder source takes no declared fields (--field is for jsonl sources)" in out
    code, out = run("container", "add", "--slug", "kb1", "--source", f"jsonl:{path}", "--field", "fields.team")
    assert code == 1 and "invalid field name(s) 'fields.team'" in out
    assert "kb1" not in run("container", "list")[1]


def test_sync_names_what_it_did_not_read(home, corpus, tmp_path):
    (tmp_path / "prod.env").write_text("SECRET=1")
    (corpus / "prod.txt").symlink_to(tmp_path / "prod.env")
    (corpus / "big.md").write_text("# Big\n\n" + "words " * 500)
    for n in range(12):
        (corpus / f"link{n:02}.md").symlink_to(corpus / "alpha.md")
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    code, out = run("sync", "kb1", "--max-document-bytes", "1000")
    assert code == 0, out
    assert "inserted 5, updated 0, skipped 0, archived 0, unarchived 0, failed 14" in out
    lines = out.splitlines()
    assert "  not read    big.md: 3,007 bytes, over the document size limit of 1,000 bytes" in out
    assert any(line.startswith("  not read    link00.md: a symbolic link -> ") for line in lines)
    assert sum(line.startswith("  not read    ") for line in lines) == 11  # ten named, then how many more
    assert "... and 4 more" in out


def test_container_add_checks_the_wiki_module_and_warns_about_an_admin_key(home, fake_redmine, source_env):
    fake_redmine.add_project("ops")
    fake_redmine.add_project("tickets", modules=("issue_tracking",))
    code, out = run("container", "add", "--slug", "ops", "--source",
                    f"redmine:{fake_redmine.url}?projects=ops,tickets&wiki=1", "--embedder", "hash-256@1")
    assert code == 1 and "project 'tickets' has no wiki module" in out and "Modules -> Wiki" in out
    assert "no containers" in run("container", "list")[1]
    assert not DagsterInstance.get().has_dynamic_partition("containers", "ops")

    fake_redmine.admin = True
    code, out = run("container", "add", "--slug", "ops", "--source",
                    f"redmine:{fake_redmine.url}?projects=ops,tickets&wiki=0", "--embedder", "hash-256@1")
    assert code == 0, out
    assert "WARNING: the API key in OPS_REDMINE_API_KEY belongs to a Redmine administrator" in out


def test_sync_registers_a_ready_container_dagster_does_not_know(home, corpus):
    """A container the knowledge base has but Dagster has no partition of (an import killed before
    it registered it) is registered by its sync, as the sync sensor would."""
    from ops_pipelines import settings
    from ops_pipelines.kb import KnowledgeBase

    run("container", "list")  # makes the home
    kb = KnowledgeBase(settings.kb_url())
    kb.add_container("kb1", "folder", str(corpus), "hash-256@1")
    kb.close()
    assert not DagsterInstance.get().has_dynamic_partition("containers", "kb1")
    code, out = run("sync", "kb1")
    assert code == 0 and "inserted 5" in out, out
    assert DagsterInstance.get().has_dynamic_partition("containers", "kb1")


def test_bad_input_is_refused_clearly_and_changes_nothing(home, corpus, tmp_path):
    code, out = run("container", "add", "--slug", "kb1", "--source", f"folder:{tmp_path / 'nope'}")
    assert code == 1 and "does not exist" in out
    code, out = run("container", "add", "--slug", "Bad Slug", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    assert code == 1 and "invalid container slug" in out
    code, out = run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "nope@1")
    assert code == 1 and "unknown embedder version" in out
    code, out = run("container", "list")
    assert "no containers" in out

    code, out = run("sync", "ghost")
    assert code == 1 and "not registered" in out
    code, out = run("search", "ghost", "anything")
    assert code == 1 and "'ghost' does not exist" in out

    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    code, out = run("search", "kb1", "anything")
    assert code == 1 and "no live collection yet" in out
    code, out = run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    assert code == 1 and "already exists" in out


def test_sync_failure_names_the_reason(home, corpus, tmp_path):
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")
    corpus.rename(tmp_path / "elsewhere")
    code, out = run("sync", "kb1")
    assert code == 1, out
    assert "sync of kb1 failed" in out and "does not exist" in out


def test_demo_twice_second_time_everything_skipped(home, corpus):
    code, out = run("demo", "--source", f"folder:{corpus}", "--embedder", "hash-256@1", "--query", "apples orchards")
    assert code == 0, out
    assert "inserted 5" in out and "make ui" in out
    assert "[alpha.md]" in out.split("search docs")[1].splitlines()[1]
    code, out = run("demo", "--source", f"folder:{corpus}", "--embedder", "hash-256@1", "--query", "apples orchards")
    assert "inserted 0, updated 0, skipped 5" in out
    assert "0 computed" in out and "0 upserted" in out


@pytest.mark.minilm
def test_demo_on_the_shipped_docs_with_minilm_answers_the_demo_query(home):
    code, out = run("demo", "--source", f"folder:{REPO_DOCS}")
    assert code == 0, out
    assert "minilm-l6-v2@2, 384-d" in out
    first_hit = out.split(f'search docs: "{DEMO_QUERY}"')[1].splitlines()[1]
    assert "[rollback.md]" in first_hit


def test_embedders_list_and_sync(home, tmp_path, monkeypatch):
    code, out = run("embedders", "list")
    assert code == 0 and out.count("NO PARTITION") == 4
    code, out = run("embedders", "sync")
    assert out.splitlines()[-1] == "added hash-256@1, minilm-l6-v2-bm25@1, minilm-l6-v2@1, minilm-l6-v2@2"
    assert sorted(DagsterInstance.get().get_dynamic_partitions("embedder_versions")) == [
        "hash-256@1", "minilm-l6-v2-bm25@1", "minilm-l6-v2@1", "minilm-l6-v2@2"
    ]
    code, out = run("embedders", "sync")
    assert "nothing to add" in out

    bad = tmp_path / "bad.toml"
    bad.write_text('[versions."x@1"]\nprovider = "nope"\ndimension = 8\n')
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(bad))
    code, out = run("embedders", "sync")
    assert code == 1 and "provider must be one of" in out


def test_refresh_generations_rollback(home, corpus, extra_embedders):
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")

    code, out = run("refresh", "kb1", "--embedder-version", "hash-64@1", "--mode", "in_place")
    assert code == 1
    # The last line is the operator's message, not Dagster's wrapping of it.
    assert out.splitlines()[-1].startswith("Error: refresh of kb1 failed (run ")
    assert "): an in_place refresh of 'kb1' cannot" in out.splitlines()[-1]

    code, out = run("refresh", "kb1", "--embedder-version", "hash-64@1")
    assert code == 0, out
    assert "check       pass  point_count: 5 points, 5 active chunks" in out
    assert "swap        kb_kb1 -> kb_kb1__hash-64-1__g2 (was kb_kb1__hash-256-1__g1)" in out
    assert DagsterInstance.get().has_dynamic_partition("embedder_versions", "hash-64@1")

    code, out = run("generations", "kb1")
    assert out.splitlines() == [
        "g1   retired   hash-256@1             5 points  kb_kb1__hash-256-1__g1",
        "g2   live      hash-64@1              5 points  kb_kb1__hash-64-1__g2  <- kb_kb1",
    ]
    code, out = run("search", "kb1", "glaciers and mountain valleys", "--limit", "1")
    assert code == 0 and out.splitlines()[0].endswith("[gamma.md]")

    code, out = run("rollback", "kb1")
    assert code == 0, out
    assert "kb_kb1 -> kb_kb1__hash-256-1__g1 (generation 1, hash-256@1); was kb_kb1__hash-64-1__g2" in out
    code, out = run("rollback", "kb1", "--to", "7")
    assert code == 1 and "cannot roll back to generation 7" in out
    code, out = run("refresh", "nope")
    assert code == 1 and "container 'nope' does not exist" in out


def test_export_verify_import(home, corpus):
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")
    code, out = run("export", "kb1", "--format", "zip")
    assert code == 0, out
    lines = dict(line.split(None, 1) for line in out.splitlines()[1:])
    key, url = lines["archive"].split()[0], lines["url"]
    assert key.endswith(".zip") and url.startswith("file://") and "5 documents, 5 chunks, 5 vectors, 5 blobs" in out

    code, out = run("archive", "verify", url)
    assert code == 0 and out.startswith("OK zip archive, format version 3") and "kb1" in out
    assert "members     10, every size and sha256 as in the manifest, each blob's as its name" in out
    code, out = run("archive", "verify", key)  # an object key works too
    assert code == 0, out

    code, out = run("import", key, "--slug", "kb2")
    assert code == 0, out
    assert "kb2 (hash-256@1)" in out and "vectors from the archive" in out and "6/6 checks passed" in out
    code, out = run("search", "kb2", "glaciers and mountain valleys", "--limit", "1")
    assert out.splitlines()[0].endswith("[gamma.md]")

    broken = home / "broken.zip"
    broken.write_bytes(Path(url.removeprefix("file://")).read_bytes()[:-200])
    code, out = run("archive", "verify", str(broken))
    assert code == 1 and out.startswith("Error: INVALID:")


def test_backup_list_dry_run_restore(home, corpus):
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")
    code, out = run("backup", "list")
    assert code == 0 and "no backups" in out
    code, out = run("backup", "create")
    assert code == 0, out
    assert "1 containers, 5 documents, 5 chunks, 1 collections (5 points), 5 blobs" in out
    code, out = run("backup", "list")
    assert code == 0 and out.count("backups/") == 1

    code, out = run("restore", "--dry-run")
    assert code == 0, out
    assert "DRY RUN, nothing changed" in out and "replace  kb1" in out and "chunks 5 -> 5" in out
    code, out = run("restore")
    assert code == 1 and "holds 1 container(s)" in out and "force" in out
    code, out = run("restore", "--force")
    assert code == 0, out
    assert "restored from backups/" in out and "collections" in out and "seconds" in out
    code, out = run("search", "kb1", "glaciers and mountain valleys", "--limit", "1")
    assert out.splitlines()[0].endswith("[gamma.md]")


def test_maintenance_runs_maintenance_job_and_a_dry_run_changes_nothing(home, corpus, extra_embedders):
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    assert run("sync", "kb1")[0] == 0
    for version in ("hash-64@1", "hash-256@2", "hash-64@1"):  # the refreshes drop g1: hash-256@1's cache is unused
        assert run("refresh", "kb1", "--embedder-version", version)[0] == 0

    def maintenance(*args) -> tuple[str, dict[str, str]]:
        code, out = run("maintenance", *args)
        assert code == 0, out
        printed = [line for line in out.splitlines() if not line.startswith("20")]  # (the steps' log lines)
        assert printed[0].startswith("run ")
        return printed[0], {line.split()[0]: line for line in printed[1:]}

    heading, steps = maintenance("--dry-run")
    assert heading.endswith(": DRY RUN, nothing changed")
    assert set(steps) == {"orphan_repair", "generation_retention", "embedding_cache_retention", "document_retention",
                          "archive_retention", "database_maintenance"}
    assert "rows_deleted 5" in steps["embedding_cache_retention"]
    assert "rows_deleted 5" in maintenance("--dry-run")[1]["embedding_cache_retention"]  # nothing changed
    heading, steps = maintenance()
    assert "DRY RUN" not in heading and "rows_deleted 5" in steps["embedding_cache_retention"]
    assert "rows_deleted 0" in maintenance("--dry-run")[1]["embedding_cache_retention"]
