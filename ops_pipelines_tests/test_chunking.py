from ops_pipelines.chunking import MAX_CHARS, PARAGRAPH_CHUNKER, chunk_hash, chunk_text


def test_short_paragraphs_are_packed_together():
    assert chunk_text("one\n\ntwo\n\n\n  three  ") == ["one\n\ntwo\n\nthree"]


def test_chunks_never_exceed_the_limit_and_keep_every_word():
    words = [f"word{i}" for i in range(600)]
    text = " ".join(words[:300]) + "\n\n" + " ".join(words[300:])
    chunks = chunk_text(text)
    assert len(chunks) > 2
    assert all(0 < len(c) <= MAX_CHARS for c in chunks)
    assert " ".join(chunks).split() == words


def test_a_word_longer_than_the_limit_is_cut():
    chunks = chunk_text("x" * 2000, limit=800)
    assert [len(c) for c in chunks] == [800, 800, 400]


def test_empty_text_has_no_chunks():
    assert chunk_text("  \n\n \n") == []


def test_chunk_hash_depends_on_text_and_chunker_version():
    assert chunk_hash("a") == chunk_hash("a") != chunk_hash("b")
    assert chunk_hash("a") == chunk_hash("a", PARAGRAPH_CHUNKER) != chunk_hash("a", "minilm-tokens-254@1")
