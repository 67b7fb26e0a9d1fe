"""The Redmine connector against a real local Redmine-API-compatible server, alone and under
``sync_documents`` (incremental and full passes, on SQLite and PostgreSQL)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from ops_pipelines.ingest import sync_documents
from ops_pipelines.kb import schema
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.sources import (
    RedmineSource,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    SourceUnchanged,
    parse_source_spec,
)
from ops_pipelines.sources.redmine import parse_location


def make_source(server, projects="ops", wiki=True, **params) -> RedmineSource:
    query = "&".join([f"projects={projects}", f"wiki={int(wiki)}", *(f"{k}={v}" for k, v in params.items())])
    return RedmineSource(RedmineSource.normalize_location(f"{server.url}?{query}"))


def document_text(kb, container_id: str, key: str) -> str:
    d = schema.documents.c
    with kb.engine.connect() as conn:
        return conn.execute(select(d.text).where(d.container_id == container_id, d.source_key == key)).scalar_one()


def issue_fetches(server) -> list[str]:
    return sorted(r.path for r in server.requests if r.path.startswith("/issues/"))


def test_specs_are_parsed_and_normalized():
    kind, location = parse_source_spec("redmine:https://Redmine.Example.com/tracker/?projects=ops, infra&wiki=1")
    assert (kind, location) == ("redmine", "https://redmine.example.com/tracker?projects=ops,infra&wiki=1")
    assert parse_location(location) == ("https://redmine.example.com/tracker", ("ops", "infra"), True, "OPS_REDMINE_API_KEY")
    custom = RedmineSource.normalize_location("https://r.example.com?projects=ops&key_env=REDMINE_OPS_KEY")
    assert custom == "https://r.example.com?projects=ops&wiki=0&key_env=REDMINE_OPS_KEY"
    for bad, message in [
        ("https://r.example.com", "name the projects"),
        ("https://r.example.com?projects=Ops!", "project identifier"),
        ("https://r.example.com?projects=ops&wiki=yes", "wiki must be 0 or 1"),
        ("https://r.example.com?projects=ops&key=abc", "unknown parameter"),
        ("https://r.example.com?projects=ops&key_env=lower-case", "key_env"),
        ("r.example.com?projects=ops", "expected a URL"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_source_spec(f"redmine:{bad}")


def test_full_read_has_issues_with_notes_and_wiki_pages(redmine, redmine_key):
    source = make_source(redmine)
    source.check()
    records = list(source.read_changes({}, {}, full=True))
    assert [r.key for r in records] == ["issues/101", "issues/102", "issues/103", "wiki/ops/Runbook_Restore"]
    first = records[0].extract()
    assert first.title == "#101 Backups fail at night"
    assert "The 02:00 backup job exits 1." in first.text and "Note by Ada Ops" in first.text and "Disk full." in first.text
    assert records[0].uri == f"{redmine.url}/issues/101"
    wiki = records[3].extract()
    assert wiki.title == "Runbook Restore" and "ops-pipelines restore" in wiki.text
    assert source.next_state == {"issues_updated_on": {"ops": "2026-03-01T08:04:00Z"}}  # the newest issue
    assert all(r.headers["x-redmine-api-key"] == redmine_key for r in redmine.requests)
    assert not any(redmine_key in r.path or redmine_key in str(r.query) for r in redmine.requests)  # never in a URL


def test_issues_and_wiki_pages_carry_what_redmine_says_of_them(redmine):
    redmine.change_issue(102, assigned_to={"id": 9, "name": "Bob Infra"}, priority={"id": 4, "name": "Urgent"})
    del redmine.issues[103]["author"]  # what the JSON lacks is left out
    source = make_source(redmine)
    source.check()
    issue, assigned, anonymous, page = source.read_changes({}, {}, full=True)
    common = {"project": "Ops", "tracker": "Bug", "status": "New"}
    assert issue.fields == {**common, "priority": "Normal", "author": "Ada Ops", "updated_on": "2026-03-01T08:02:00Z"}
    assert assigned.fields == {
        **common, "priority": "Urgent", "author": "Ada Ops", "assignee": "Bob Infra",
        "updated_on": "2026-03-01T08:06:00Z",
    }
    assert "author" not in anonymous.fields and anonymous.fields["priority"] == "Normal"
    assert page.fields == {"project": "Ops", "author": "Ada Ops", "updated_on": "2026-03-01T08:05:00Z"}
    assert list(issue.fields) == sorted(issue.fields)
    assert set(issue.fields) | set(assigned.fields) <= set(RedmineSource.payload_fields())
    with pytest.raises(ValueError, match="takes no declared fields"):
        make_source(redmine).declare_fields(["team"])


def test_listing_is_paged_by_offset_and_limit(fake_redmine, source_env):
    fake_redmine.add_project("big")
    for n in range(230):
        fake_redmine.add_issue("big", f"issue {n}")
    source = make_source(fake_redmine, projects="big", wiki=False)
    keys = [r.key for r in source.read_changes({}, {}, full=True)]
    assert len(keys) == 230 == len(set(keys))
    listing = fake_redmine.requests_to("/issues.json")
    assert [(r.query["offset"], r.query["limit"], r.query["sort"]) for r in listing] == [
        ("0", "100", "id"), ("100", "100", "id"), ("200", "100", "id")
    ]


def test_fingerprint_moves_with_the_newest_change(redmine):
    source = make_source(redmine)
    first = source.fingerprint()
    assert first == "2026-03-01T08:05:00Z|3 issues|1 wiki pages"  # the wiki page is the newest
    assert source.fingerprint() == first
    redmine.add_note(102, "Done for this year.")
    assert source.fingerprint() == "2026-03-01T08:06:00Z|3 issues|1 wiki pages"
    redmine.delete_issue(103)
    assert source.fingerprint().endswith("|2 issues|1 wiki pages")


def test_a_wrong_or_missing_key_is_a_clear_error_without_the_key(redmine, monkeypatch, caplog):
    monkeypatch.setenv("OPS_REDMINE_API_KEY", "not-the-key-123")
    with pytest.raises(SourceUnavailable, match="rejected the API key in OPS_REDMINE_API_KEY") as rejected:
        make_source(redmine).check()
    assert "not-the-key-123" not in str(rejected.value) and "not-the-key-123" not in caplog.text
    monkeypatch.delenv("OPS_REDMINE_API_KEY")
    with pytest.raises(SourceUnavailable, match="set the environment variable OPS_REDMINE_API_KEY"):
        make_source(redmine).check()
    monkeypatch.setenv("REDMINE_OPS_KEY", redmine.api_key)
    make_source(redmine, key_env="REDMINE_OPS_KEY").check()


def test_a_missing_project_or_wiki_is_unavailable(redmine):
    with pytest.raises(SourceUnavailable, match="project 'infra' not found or not visible"):
        make_source(redmine, projects="ops,infra").check()


def test_a_disabled_rest_api_is_named_on_its_403(redmine):
    redmine.rest_api = False  # Redmine 5.0.4: a bare 403, not a 401, to every API request
    with pytest.raises(SourceUnavailable) as refused:
        make_source(redmine).check()
    message = str(refused.value)
    assert "HTTP 403" in message and "REST API is most likely disabled" in message
    assert "Administration -> Settings -> API -> Enable REST web service" in message
    assert "proxy" in message  # the other reading of that 403
    assert "not found" not in message


def test_a_project_the_key_may_not_see_says_what_to_do(redmine):
    redmine.add_project("secret")
    redmine.hidden_projects.add("secret")
    with pytest.raises(SourceUnavailable, match="project 'secret' not found or not visible") as refused:
        make_source(redmine, projects="ops,secret").check()
    assert "(HTTP 403)" in str(refused.value) and "make that user a member" in str(refused.value)


@pytest.mark.parametrize("lists_modules", [True, False])
def test_wiki_1_needs_the_wiki_module_of_every_project(redmine, lists_modules):
    redmine.lists_modules = lists_modules  # an older Redmine: the wiki itself answers 403
    redmine.add_project("tickets", modules=("issue_tracking",))
    with pytest.raises(SourceUnavailable, match="wiki") as refused:
        make_source(redmine, projects="ops,tickets", wiki=True).check()
    if lists_modules:
        assert "project 'tickets' has no wiki module" in str(refused.value)
        assert "Modules -> Wiki" in str(refused.value) and "leave wiki=1 out" in str(refused.value)
    make_source(redmine, projects="ops,tickets", wiki=False).check()
    make_source(redmine, projects="ops", wiki=True).check()


def test_an_admin_key_is_warned_about(redmine, caplog):
    source = make_source(redmine)
    source.check()
    assert source.admin_key is False
    redmine.admin = True
    with caplog.at_level(logging.WARNING):
        source.check()
    assert source.admin_key is True
    assert "belongs to a Redmine administrator" in caplog.text and "never archived" in caplog.text


def test_issues_and_wiki_pages_over_the_size_limit_are_skipped_and_named(redmine, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_MAX_DOCUMENT_BYTES", "2000")
    big = redmine.add_issue("ops", "A pasted log", "log line\n" * 500)
    redmine.put_wiki("ops", "Huge_Page", "words " * 1000)
    records = list(make_source(redmine).read_changes({}, {}, full=True))
    docs = [r.key for r in records if isinstance(r, SourceDocument)]
    skips = {r.key: r.reason for r in records if isinstance(r, SourceSkip)}
    assert docs == ["issues/101", "issues/102", "issues/103", "wiki/ops/Runbook_Restore"]
    assert set(skips) == {f"issues/{big}", "wiki/ops/Huge_Page"}
    assert all("over the document size limit of 2,000 bytes" in reason for reason in skips.values())


def test_plain_http_and_unlisted_hosts_are_refused(redmine, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_ALLOWED_HOSTS", "redmine.example.com")
    with pytest.raises(SourceUnavailable, match="'127.0.0.1' is not allowed"):
        make_source(redmine).check()
    source = RedmineSource("http://redmine.example.com?projects=ops")
    with pytest.raises(SourceUnavailable, match="plain HTTP is refused"):
        source.check()
    assert redmine.requests == []


@pytest.fixture
def synced(redmine, kb, tmp_path):
    """A container fully synced from the fake Redmine: (kb, objects, container, source factory)."""
    container = kb.add_container("ops", "redmine", make_source(redmine).location, "hash-256@1")
    objects = FolderObjectStore(str(tmp_path / "objects"))

    def sync(mode: str, **kwargs):
        return sync_documents(kb, objects, container, make_source(redmine), mode=mode, **kwargs)

    report = sync("auto")  # no full pass yet: auto means full
    assert report.mode == "full" and report.counts()["inserted"] == 4
    return kb, container, sync


def test_incremental_sync_fetches_exactly_the_changed_issues(synced, redmine):
    kb, container, sync = synced
    redmine.add_note(101, "Freed 20 GB; the backup ran.")
    redmine.change_issue(103, subject="Qdrant 1.13 upgrade")
    redmine.add_issue("ops", "New: alert on failed syncs")
    redmine.reset_log()

    report = sync("auto")  # a full pass was just made: auto means incremental
    assert report.mode == "incremental"
    assert report.counts() == {"inserted": 1, "updated": 2, "skipped": 1, "archived": 0, "unarchived": 0, "failed": 0}
    assert issue_fetches(redmine) == ["/issues/101.json", "/issues/103.json", "/issues/104.json"]
    (listing,) = redmine.requests_to("/issues.json")
    assert listing.query["updated_on"] == ">=2026-03-01T08:04:00Z" and listing.query["sort"] == "updated_on:desc"
    assert kb.source_state(container.id).state == {"issues_updated_on": {"ops": "2026-03-01T08:08:00Z"}}
    assert "Freed 20 GB" in document_text(kb, container.id, "issues/101")
    assert document_text(kb, container.id, "issues/103").startswith("Qdrant 1.13 upgrade")

    redmine.reset_log()
    quiet = sync("incremental")
    assert quiet.counts()["inserted"] + quiet.counts()["updated"] == 0 and issue_fetches(redmine) == []


def test_deleted_and_private_issues_are_archived_only_by_a_full_pass(synced, redmine):
    kb, container, sync = synced
    redmine.delete_issue(102)
    redmine.make_private(103)
    assert sync("incremental").counts()["archived"] == 0
    assert kb.count_documents(container.id) == {"active": 4, "archived": 0}

    redmine.reset_log()
    full = sync("full")
    assert full.counts() == {"inserted": 0, "updated": 0, "skipped": 2, "archived": 2, "unarchived": 0, "failed": 0}
    assert issue_fetches(redmine) == []  # the listing said the rest was unchanged: nothing fetched
    states = kb.document_states(container.id)
    assert states["issues/102"].status == states["issues/103"].status == "archived"
    assert states["issues/101"].status == "active"


def test_a_run_that_dies_is_redone_not_skipped(synced, redmine):
    kb, container, sync = synced
    before = kb.source_state(container.id).state
    redmine.change_issue(101, description="Changed once.")
    redmine.change_issue(102, description="Changed too.")
    redmine.fail("status", times=4, status=500, path="/issues/102.json")  # every attempt for #102
    with pytest.raises(SourceUnavailable, match="HTTP 500"):
        sync("incremental")
    assert kb.source_state(container.id).state == before  # cursor not moved

    report = sync("incremental")
    assert report.counts()["updated"] == 2  # 101 again (its write was not flushed) and 102
    assert kb.source_state(container.id).state != before


def test_a_listing_that_moves_while_paged_withholds_archiving(fake_redmine, source_env, kb, tmp_path):
    fake_redmine.add_project("big")
    ids = [fake_redmine.add_issue("big", f"issue {n}") for n in range(150)]
    location = make_source(fake_redmine, projects="big", wiki=False).location
    container = kb.add_container("big", "redmine", location, "hash-256@1")
    objects = FolderObjectStore(str(tmp_path / "objects"))
    sync_documents(kb, objects, container, RedmineSource(location), mode="full")
    fake_redmine.delete_issue(ids[-1])

    def delete_while_paging(request):
        if request.path == "/issues.json" and request.query.get("offset") == "100":
            fake_redmine.delete_issue(ids[0])

    fake_redmine.on_request = delete_while_paging
    report = sync_documents(kb, objects, container, RedmineSource(location), mode="full")
    assert report.archived == 0 and "could not be identified" in report.archive_withheld
    assert any("changed while it was paged (total_count 149 -> 148)" in reason for _, reason in report.failures)

    fake_redmine.on_request = None
    assert sync_documents(kb, objects, container, RedmineSource(location), mode="full").archived == 2


def test_a_project_that_disappears_archives_nothing(synced, redmine):
    kb, container, sync = synced
    del redmine.projects["ops"]
    with pytest.raises(SourceUnavailable, match="not found or not visible"):
        sync("full")
    assert kb.count_documents(container.id) == {"active": 4, "archived": 0}


def test_the_key_appears_in_no_log_record(synced, redmine, redmine_key, caplog):
    _, _, sync = synced
    redmine.fail("status", status=429, retry_after="0")
    redmine.fail("drop")
    with caplog.at_level(logging.DEBUG):
        sync("full")
    assert "HTTP 429" in caplog.text and "connection failed" in caplog.text
    assert redmine_key not in caplog.text


def test_records_are_documents_or_unchanged(redmine):
    source = make_source(redmine)
    first = list(source.read_changes({}, {}, full=True))
    known = {r.key: r.updated_at for r in first}
    again = list(make_source(redmine).read_changes({}, known, full=True))
    assert all(isinstance(r, SourceUnchanged) for r in again)
    assert not any(isinstance(r, SourceSkip) for r in first) and all(isinstance(r, SourceDocument) for r in first)


def test_auto_mode_makes_a_full_pass_when_one_is_due(synced, redmine):
    from datetime import timedelta

    _, _, sync = synced
    assert sync("auto").mode == "incremental"
    assert sync("auto", full_every=timedelta(0)).mode == "full"
    with pytest.raises(ValueError, match="unknown sync mode"):
        sync("sometimes")
