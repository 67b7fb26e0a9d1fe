from pathlib import Path

from ops_pipelines.chunking import MAX_CHARS, PARAGRAPH_CHUNKER, TokenChunker, chunk_hash, chunk_text, count_tokens
from ops_pipelines.embedders import DEFAULT_VERSION, chunker_of, get_version
from ops_pipelines.embedders.sentence_transformer import bundled_minilm_path


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


# ---- token chunkers ---------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def minilm_chunker(max_tokens: int, overlap: int = 0) -> TokenChunker:
    return TokenChunker("t@1", str(bundled_minilm_path()), max_tokens, overlap)


def tokens(chunker: TokenChunker, texts: list[str]) -> list[int]:
    return count_tokens(chunker.tokenizer, texts)


def test_token_chunks_fit_their_budget_and_keep_every_word():
    words = [f"word{i}" for i in range(900)]
    text = " ".join(words[:300]) + ".\n\n" + " ".join(words[300:])
    chunker = minilm_chunker(60)
    chunks = chunker.cut(text)
    assert len(chunks) > 10 and max(tokens(chunker, chunks)) <= 60
    assert " ".join(chunks).replace(".", "").split() == words


def test_short_paragraphs_are_packed_and_a_heading_stays_with_its_paragraph():
    chunker = minilm_chunker(40)
    text = "One short line.\n\nAnother one.\n\n# Restore\n\n" + "Restore the backup into an empty store. " * 4
    chunks = chunker.cut(text)
    assert chunks[0] == "One short line.\n\nAnother one."
    assert chunks[1].startswith("# Restore\n\nRestore the backup")


def test_a_long_paragraph_is_cut_at_sentence_ends_with_overlap():
    sentences = [f"Sentence number {i} says something about backups." for i in range(40)]
    chunker = minilm_chunker(50, overlap=8)
    chunks = chunker.cut(" ".join(sentences))
    assert max(tokens(chunker, chunks)) <= 50
    assert all(chunk.endswith(".") for chunk in chunks[:-1])  # each cut at a sentence end
    for before, after in zip(chunks, chunks[1:]):
        assert before.split()[-1] in after.split()[:10]  # the next piece starts a few words back


def test_a_word_longer_than_the_budget_is_cut_and_nothing_is_empty():
    chunker = minilm_chunker(20)
    assert chunker.cut("  \n\n ") == []
    chunks = chunker.cut("x" * 3000)
    assert max(tokens(chunker, chunks)) <= 20 and "".join(chunks) == "x" * 3000


def corpus_texts() -> dict[str, str]:
    """The project's docs, README and the test corpora, as sync extracts them."""
    from ops_pipelines.sources.extract import EXTRACTORS

    corpus = REPO / "ops_pipelines_tests" / "fixtures" / "legacy" / "corpus"
    paths = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md", *sorted(corpus.rglob("*.*"))]
    return {str(p.relative_to(REPO)): EXTRACTORS[p.suffix](p.name)(p.read_bytes()).text for p in paths}


def test_no_chunk_of_the_default_version_exceeds_its_models_window():
    """Counted with the model's own tokenizer, special tokens included, as the model reads them."""
    version = get_version(DEFAULT_VERSION)
    chunker = chunker_of(DEFAULT_VERSION)
    texts = corpus_texts()
    assert len(texts) > 10
    chunks = [chunk for text in texts.values() for chunk in chunker.cut(text)]
    counts = count_tokens(chunker.tokenizer, chunks, special=True)
    assert max(counts) <= version.window == 256
    # ...where the paragraph chunker of minilm-l6-v2@1 cuts many past it
    old = [chunk for text in texts.values() for chunk in chunk_text(text)]
    assert sum(n > 256 for n in count_tokens(chunker.tokenizer, old, special=True)) > 5
