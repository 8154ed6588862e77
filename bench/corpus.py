"""Generated news-like articles for scale benchmarks.

Sentences come from the seed articles and the SQuAD training part in ../shared (CC BY-SA 4.0),
shuffled into new articles; each article also gets a made-up place name so that no two chunks are
the same text (identical chunks would flatter both the keyword and the vector index).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from qa.articles import read_paths
from qa.text import split_sentences

ROOT = Path(__file__).resolve().parent.parent
SQUAD = ROOT.parent / "shared" / "data" / "squad" / "train-v1.1-part.json"
SYLLABLES = "ka lo mi ren tas vor bel dun sha pri gol tem nis ark zul ost hav lin".split()


def sentence_pool() -> list[str]:
    texts = [a.text for a in read_paths([ROOT / "corpus"])]
    if SQUAD.exists():
        for entry in json.loads(SQUAD.read_text(encoding="utf-8"))["data"]:
            texts.extend(p["context"] for p in entry["paragraphs"])
    pool = [t[s:e] for t in texts for s, e in split_sentences(t)]
    return [s for s in pool if 40 <= len(s) <= 400]


def generate_articles(count: int, seed: int = 7, sentences_per_article: int = 24) -> list[dict]:
    """`count` articles of about five 200-token chunks each."""
    rng = random.Random(seed)
    pool = sentence_pool()
    articles = []
    for number in range(count):
        place = "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()
        body = []
        for _ in range(sentences_per_article):
            sentence = rng.choice(pool)
            if rng.random() < 0.3:
                sentence = f"In {place}, {sentence[0].lower()}{sentence[1:]}"
            body.append(sentence)
        paragraphs = [" ".join(body[i:i + 4]) for i in range(0, len(body), 4)]
        articles.append({"id": f"gen-{number:06d}", "title": f"News from {place}", "text": "\n\n".join(paragraphs)})
    return articles
