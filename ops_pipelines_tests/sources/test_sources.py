from __future__ import annotations

import json

import pytest

from ops_pipelines.sources import (
    FolderSource,
    JsonlSource,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    UnreadableDocument,
    open_source,
    parse_source_spec,
)


def test_folder_reads_md_txt_html_and_ignores_the_rest(tmp_path):
    (tmp_path / "a.md").write_text("intro\n\n## Install guide ##\n\nsteps")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("plain words")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Page C</title><style>p{}</style></head>"
        "<body><script>var x=1;</script><h1>Head</h1><p>Para   one</p><p>Para two</p></body></html>"
    )
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.md").write_text("secret")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.md").write_text("no")

    records = list(FolderSource(str(tmp_path)).read())
    assert [r.key for r in records] == ["a.md", "c.html", "sub/b.txt"]
    a, c, b = (r.extract() for r in records)
    assert a.title == "Install guide"
    assert b.title == "b" and b.text == "plain words"
    assert c.title == "Page C"
    assert c.text == "Head\n\nPara one\n\nPara two"  # scripts and styles gone, one paragraph per block
    assert records[0].uri.startswith("file://")


def test_folder_undecodable_file_raises_per_document(tmp_path):
    (tmp_path / "bad.md").write_bytes(b"ok \xff\xfe")
    (record,) = FolderSource(str(tmp_path)).read()
    with pytest.raises(UnreadableDocument, match="not valid UTF-8"):
        record.extract()


def test_folder_missing_root_is_unavailable(tmp_path):
    source = FolderSource(str(tmp_path / "gone"))
    with pytest.raises(SourceUnavailable, match="does not exist"):
        source.check()
    with pytest.raises(SourceUnavailable):
        list(source.read())
    with pytest.raises(SourceUnavailable):
        source.fingerprint()
    (tmp_path / "file.md").write_text("x")
    with pytest.raises(SourceUnavailable, match="not a directory"):
        FolderSource(str(tmp_path / "file.md")).check()


def test_folder_fingerprint_changes_only_with_the_files(tmp_path):
    (tmp_path / "a.md").write_text("one")
    source = FolderSource(str(tmp_path))
    first = source.fingerprint()
    assert source.fingerprint() == first
    (tmp_path / "ignored.bin").write_bytes(b"x")
    assert source.fingerprint() == first
    (tmp_path / "a.md").write_text("one, longer")
    second = source.fingerprint()
    assert second != first
    (tmp_path / "b.md").write_text("two")
    assert source.fingerprint() != second


def test_jsonl_records_and_bad_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps({"id": 1, "title": "One", "text": "first", "url": "https://x/1", "updated_at": "2026-01-02T03:04:05Z"}),
        "",
        "{not json",
        json.dumps({"title": "no id", "text": "x"}),
        json.dumps({"id": "2", "text": 5}),
        json.dumps({"id": "3", "text": "third", "updated_at": "yesterday"}),
        json.dumps({"id": 1, "text": "duplicate"}),
        json.dumps({"id": "4", "text": "fourth"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    records = list(JsonlSource(str(path)).read())
    docs = [r for r in records if isinstance(r, SourceDocument)]
    skips = [r for r in records if isinstance(r, SourceSkip)]
    assert [d.key for d in docs] == ["1", "4"]
    one = docs[0]
    assert one.uri == "https://x/1" and one.extract().title == "One" and one.extract().text == "first"
    assert one.updated_at.year == 2026
    assert docs[1].extract().title == "4"
    assert docs[1].uri.endswith("data.jsonl#4")
    assert [(s.key, s.reason.split(":")[0]) for s in skips] == [
        (None, "line 3"),
        (None, "line 4"),
        ("2", "line 5"),
        ("3", "line 6"),
        ("1", "line 7"),
    ]


def test_jsonl_records_over_the_size_limit_are_skipped_and_named(tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_MAX_DOCUMENT_BYTES", "200")
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps({"id": "small", "text": "fits"}),
        json.dumps({"id": "big", "text": "x" * 5000}),  # its id comes first: the skip is keyed
        json.dumps({"text": "y" * 5000, "id": "late"}),  # the id is past the limit: unidentified
        json.dumps({"id": 7, "text": "after the long ones"}),
        json.dumps({"id": "edge", "text": "z" * (200 - len(json.dumps({"id": "edge", "text": ""})))}),
    ]
    assert len(lines[-1]) == 200
    path.write_text("\n".join(lines) + "\n")
    records = list(JsonlSource(str(path)).read())
    docs = [r.key for r in records if isinstance(r, SourceDocument)]
    skips = [(r.key, r.reason) for r in records if isinstance(r, SourceSkip)]
    assert docs == ["small", "7", "edge"]  # the line after a long one is read whole
    assert [key for key, _ in skips] == ["big", None]
    assert skips[0][1].startswith("line 2: over the document size limit of 200 bytes")
    assert skips[1][1].startswith("line 3: over the document size limit")


def test_jsonl_source_must_be_a_regular_file(tmp_path):
    import os
    import threading

    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    outcome: list = []

    def read() -> None:
        try:
            list(JsonlSource(str(fifo)).read())
        except SourceUnavailable as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():  # unblock the reader of the code before the fix, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not thread.is_alive() and outcome and "not a file" in outcome[0]


def test_jsonl_missing_file_is_unavailable(tmp_path):
    with pytest.raises(SourceUnavailable, match="does not exist"):
        list(JsonlSource(str(tmp_path / "none.jsonl")).read())


def test_nul_characters_are_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "1", "text": "a\u0000b"}) + "\n")
    (record,) = JsonlSource(str(path)).read()
    with pytest.raises(UnreadableDocument, match="NUL"):
        record.extract()


def test_source_specs(tmp_path):
    assert parse_source_spec(f"folder:{tmp_path}") == ("folder", str(tmp_path))
    kind, location = parse_source_spec("jsonl:rel/data.jsonl")
    assert kind == "jsonl" and location.endswith("/rel/data.jsonl") and location.startswith("/")
    for bad in ("folder", "ftp:/x", "folder:", "/just/a/path"):
        with pytest.raises(ValueError, match="invalid source"):
            parse_source_spec(bad)
    assert isinstance(open_source("folder", str(tmp_path)), FolderSource)
    with pytest.raises(ValueError, match="unknown source kind"):
        open_source("s3", "x")


def test_folder_documents_carry_their_path_and_extension(tmp_path):
    (tmp_path / "Guide").mkdir()
    (tmp_path / "Guide" / "Install.MD").write_text("# Install")
    (tmp_path / "notes.txt").write_text("notes")
    records = {r.key: r for r in FolderSource(str(tmp_path)).read()}
    assert {key: dict(r.fields) for key, r in records.items()} == {
        "Guide/Install.MD": {"extension": "md", "path": "Guide/Install.MD"},
        "notes.txt": {"extension": "txt", "path": "notes.txt"},
    }
    assert list(records["notes.txt"].fields) == ["extension", "path"]  # sorted
    assert FolderSource.payload_fields() == ("extension", "path")


def test_jsonl_documents_carry_the_declared_fields_as_strings(tmp_path):
    path = tmp_path / "data.jsonl"
    records = [
        {"id": 1, "text": "a", "team": "infra", "lang": "en", "priority": 2, "urgent": True, "score": 0.5,
         "secret": "not declared"},
        {"id": 2, "text": "b", "team": None, "lang": ["en", "fr"], "priority": "x" * 257},
        {"id": 3, "text": "c"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    source = open_source("jsonl", str(path), fields=["urgent", "team", "lang", "priority", "score", "team"])
    assert source.declared_fields == ("lang", "priority", "score", "team", "urgent")
    docs = list(source.read())
    assert dict(docs[0].fields) == {"lang": "en", "priority": "2", "score": "0.5", "team": "infra", "urgent": "true"}
    assert dict(docs[1].fields) == {}  # null, a list and an over-long value are left out
    assert dict(docs[2].fields) == {}  # declared, missing: omitted
    assert [dict(d.fields) for d in JsonlSource(str(path)).read()] == [{}, {}, {}]  # nothing declared
    assert JsonlSource.payload_fields(source.declared_fields) == source.declared_fields


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("jsonl", ["fields.team"], "invalid field name"),
        ("jsonl", ["team lead"], "invalid field name"),
        ("jsonl", ["text", "team"], "need no declaring"),
        ("jsonl", [f"f{n}" for n in range(33)], "at most 32"),
        ("folder", ["team"], "takes no declared fields"),
    ],
)
def test_bad_field_declarations_are_refused(tmp_path, kind, fields, message):
    (tmp_path / "data.jsonl").write_text("")
    location = str(tmp_path / "data.jsonl") if kind == "jsonl" else str(tmp_path)
    with pytest.raises(ValueError, match=message):
        open_source(kind, location, fields=fields)
