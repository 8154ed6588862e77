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


def _article(paragraphs):
    from qa.records import Article

    return Article("a", "\n".join(paragraphs), "A")


def test_one_sentence_paragraphs_keep_the_overlap(encoder):
    # News runs one sentence to a paragraph; the next sentence often leaves its subject in the
    # one before ("The hack ..."), so windows keep sharing a sentence across such breaks.
    article = _article([f"Sentence number {i} says something about the attack on the network." for i in range(30)])
    chunks = chunk_articles([article], encoder.count_tokens, ChunkingConfig(max_tokens=200, overlap_sentences=1))
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end, (a, b)
        shared = article.text[b.start:a.end]
        assert shared.startswith("Sentence number") and shared.endswith(".") and "\n" not in shared


def test_paragraphs_of_several_sentences_part_at_the_break(encoder):
    paragraph = " ".join(f"This is sentence {i} of a long paragraph about the history of Normandy." for i in range(4))
    article = _article([paragraph, paragraph.replace("Normandy", "the Sky network")])
    chunks = chunk_articles([article], encoder.count_tokens, ChunkingConfig(max_tokens=200, overlap_sentences=1))
    assert [article.text[c.start:c.end] for c in chunks] == article.text.split("\n")
