"""The HTTP pages connector against a real local web site: sitemaps, conditional GETs, 304s,
removed pages, and what a full and an incremental pass do with them (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from ops_pipelines.ingest import sync_documents
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.sources import PagesSource, SourceDocument, SourceUnavailable, parse_source_spec


@pytest.fixture
def site(fake_site, source_env):
    fake_site.put_page("/guide/install.html", "Install", "Install the package, then run make demo.")
    fake_site.put_page("/guide/backup.html", "Backups", "Backups run nightly at two.")
    fake_site.put_page("/guide/restore.html", "Restore", "Restore with ops-pipelines restore.")
    return fake_site


@pytest.fixture
def pages(site, kb, tmp_path):
    """A container on the site's sitemap, fully synced once: (kb, container, sync)."""
    location = PagesSource.normalize_location(f"{site.url}/sitemap.xml")
    container = kb.add_container("web", "http", location, "hash-256@1")
    objects = FolderObjectStore(str(tmp_path / "objects"))

    def sync(mode: str, spec: str = location):
        return sync_documents(kb, objects, container, PagesSource(spec), mode=mode)

    first = sync("full")
    assert first.counts()["inserted"] == 3
    site.reset_log()
    return kb, container, sync


def page_requests(site) -> list[tuple[str, int | None, bool]]:
    """(path, status, conditional) of every page request (the sitemap left out)."""
    return [
        (r.path, r.status, "if-none-match" in r.headers)
        for r in site.requests
        if r.path != "/sitemap.xml"
    ]


def test_specs():
    kind, location = parse_source_spec("http:https://a.example.com/sitemap.xml   https://b.example.com/faq")
    assert (kind, location) == ("http", "https://a.example.com/sitemap.xml https://b.example.com/faq")
    with pytest.raises(ValueError, match="expected http"):
        parse_source_spec("http:/local/path")


def test_pages_are_read_from_the_sitemap_as_text(site):
    source = PagesSource(f"{site.url}/sitemap.xml")
    source.check()
    records = list(source.read_changes({}, {}, full=True))
    assert all(isinstance(r, SourceDocument) for r in records)
    assert [r.key for r in records] == [f"{site.url}/guide/{p}.html" for p in ("install", "backup", "restore")]
    extracted = records[1].extract()
    assert extracted.title == "Backups" and extracted.text == "Backups run nightly at two."
    assert records[0].updated_at.isoformat() == "2026-03-01T08:01:00+00:00"  # the sitemap's lastmod
    assert set(source.next_state["validators"]) == {r.key for r in records}
    assert [dict(r.fields) for r in records] == [{"host": "127.0.0.1"}] * 3
    assert source.next_state["lastmod"] == "2026-03-01T08:03:00+00:00"


def test_an_unchanged_page_costs_one_conditional_request(pages, site):
    _, _, sync = pages
    report = sync("full")
    assert report.counts() == {"inserted": 0, "updated": 0, "skipped": 3, "archived": 0, "unarchived": 0, "failed": 0}
    assert page_requests(site) == [
        ("/guide/install.html", 304, True), ("/guide/backup.html", 304, True), ("/guide/restore.html", 304, True)
    ]
    assert len(site.requests_to("/sitemap.xml")) == 1  # read once, by check(), for the whole run


def test_a_changed_page_is_fetched_and_updated(pages, site):
    _, _, sync = pages
    site.put_page("/guide/backup.html", "Backups", "Backups run nightly at three now.")
    report = sync("full")
    assert report.counts()["updated"] == 1 and report.counts()["skipped"] == 2
    assert ("/guide/backup.html", 200, True) in page_requests(site)


def test_incremental_requests_only_what_the_sitemap_says_changed(pages, site):
    _, _, sync = pages
    site.put_page("/guide/restore.html", "Restore", "Restore with --dry-run first.")
    site.put_page("/guide/new.html", "New", "A new page.")
    report = sync("incremental")
    assert report.mode == "incremental"
    assert report.counts()["inserted"] == 1 and report.counts()["updated"] == 1
    assert sorted(p for p, _, _ in page_requests(site)) == ["/guide/new.html", "/guide/restore.html"]


def test_a_removed_page_is_archived_by_a_full_pass_only(pages, site):
    kb, container, sync = pages
    site.remove_page("/guide/install.html")  # gone from the sitemap and 404
    assert sync("incremental").counts()["archived"] == 0
    assert sync("full").counts()["archived"] == 1
    assert kb.count_documents(container.id) == {"active": 2, "archived": 1}


def test_a_page_list_without_sitemap_uses_conditional_gets_and_archives_404s(site, kb, tmp_path):
    urls = f"{site.url}/guide/install.html {site.url}/guide/backup.html"
    container = kb.add_container("list", "http", urls, "hash-256@1")
    objects = FolderObjectStore(str(tmp_path / "objects"))
    assert sync_documents(kb, objects, container, PagesSource(urls), mode="full").inserted == 2
    site.reset_log()
    site.remove_page("/guide/backup.html")
    report = sync_documents(kb, objects, container, PagesSource(urls), mode="full")
    assert report.skipped == 1 and report.archived == 1
    assert [(r.path, r.status) for r in site.requests] == [("/guide/install.html", 304), ("/guide/backup.html", 404)]


def test_non_text_content_is_skipped_and_kept(pages, site):
    kb, container, sync = pages
    site.put_page("/guide/backup.html", "Backups", "%PDF", content_type="application/pdf")
    report = sync("full")
    assert report.failed == 1 and report.archived == 0
    assert "application/pdf is not text or HTML" in report.failures[0][1]
    assert kb.document_states(container.id)[f"{site.url}/guide/backup.html"].status == "active"


def test_a_page_over_the_size_limit_is_skipped_and_kept_not_the_sync_failed(pages, site, monkeypatch):
    kb, container, sync = pages
    monkeypatch.setenv("OPS_SOURCE_MAX_DOCUMENT_BYTES", "2000")
    site.put_page("/guide/backup.html", "Backups", "Backups run nightly at two. " * 200)
    site.put_page("/guide/restore.html", "Restore", "Restore with ops-pipelines restore, now in two steps.")
    report = sync("full")
    assert (report.updated, report.failed, report.archived) == (1, 1, 0)
    key, reason = report.failures[0]
    assert key == f"{site.url}/guide/backup.html"
    assert "over the document size limit of 2,000 bytes: not read" in reason
    assert kb.document_states(container.id)[key].status == "active"  # the last version it could read


def test_a_failing_sitemap_archives_nothing(pages, site):
    kb, container, sync = pages
    site.fail("status", times=4, status=503, path="/sitemap.xml")
    with pytest.raises(SourceUnavailable, match="HTTP 503"):
        sync("full")
    site.fail("status", status=404, path="/sitemap.xml")
    with pytest.raises(SourceUnavailable, match="sitemap .* answered HTTP 404: nothing was archived"):
        sync("full")
    assert kb.count_documents(container.id) == {"active": 3, "archived": 0}


def test_a_sitemap_that_lists_nothing_is_refused_as_an_empty_source(pages, site):
    kb, container, sync = pages
    site.unlisted.update(site.pages)
    from ops_pipelines.ingest import ArchiveRefused

    with pytest.raises(ArchiveRefused, match="returned no documents"):
        sync("full")
    assert kb.count_documents(container.id) == {"active": 3, "archived": 0}


def test_fingerprint_follows_sitemap_lastmod(site):
    source = PagesSource(f"{site.url}/sitemap.xml")
    first = source.fingerprint()
    assert first.startswith("2026-03-01T08:03:00+00:00|3 pages|")
    assert source.fingerprint() == first
    site.put_page("/guide/install.html", "Install", "Changed.")
    assert source.fingerprint().startswith("2026-03-01T08:04:00+00:00|3 pages|")


def test_fingerprint_of_plain_pages_is_a_head_each(site):
    source = PagesSource(f"{site.url}/guide/install.html")
    first = source.fingerprint()
    assert [r.method for r in site.requests] == ["HEAD"]
    assert source.fingerprint() == first
    site.put_page("/guide/install.html", "Install", "Changed.")
    assert source.fingerprint() != first


def test_a_disallowed_host_in_a_sitemap_is_skipped_not_fetched(site, monkeypatch):
    site.redirect("/guide/away.html", "https://elsewhere.example.org/")
    site.pages["/guide/away.html"] = site.pages["/guide/install.html"]
    records = list(PagesSource(f"{site.url}/sitemap.xml").read_changes({}, {}, full=True))
    skipped = [r for r in records if not isinstance(r, SourceDocument)]
    assert [(r.key, "elsewhere.example.org" in r.reason) for r in skipped] == [(f"{site.url}/guide/away.html", True)]
