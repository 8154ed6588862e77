from qa.articles import read_paths
from qa.chunking import ChunkingConfig, chunk_articles

from .conftest import CORPUS


def test_chunks_are_exact_slices_within_the_token_limit(encoder):
    articles = read_paths([CORPUS])
    config = ChunkingConfig(max_tokens=120, overlap_sentences=1)
    chunks = chunk_articles(articles, encoder.count_tokens, config)
    texts = {a.id: a for a in articles}
    assert len(chunks) > len(articles)
    for chunk in chunks:
        article = texts[chunk.article_id]
        assert article.text[chunk.start:chunk.end] == chunk.text
        assert "Remind me later" not in chunk.text and "(Image:" not in chunk.text
    counts = encoder.count_tokens([c.text for c in chunks])
    # A single sentence longer than the limit may stand alone; windows of several never exceed it.
    assert sum(n > 120 for n in counts) <= 1


def test_neighbouring_chunks_overlap_by_a_sentence(encoder):
    articles = [a for a in read_paths([CORPUS]) if a.id.startswith("002")]
    chunks = chunk_articles(articles, encoder.count_tokens, ChunkingConfig(max_tokens=200, overlap_sentences=1))
    article = articles[0]
    for a, b in zip(chunks, chunks[1:]):
        # Windows overlap within a paragraph; they may part at a paragraph break or at excluded
        # text ("· RTE.ie", "Read the latest ...").
        assert b.start < a.end or "\n" in article.text[a.end:b.start]
