"""SQuAD JSON files (v1.1 and v2.0), read once for training and for `qa eval`.

The format: `{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}`. A v2.0 question marked
`is_impossible` has no answer in its paragraph, whatever its `answers` list holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator


@dataclass(frozen=True)
class SquadExample:
    """One question with its paragraph; `answers` are (text, start in `context`)."""

    id: str
    title: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # empty = unanswerable
    source: str = ""  # the file it came from
    article: int = 0  # the article's position in its file
    paragraph: int = 0  # the paragraph's position in its article

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def squad_articles(path: str | Path) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of every article of a SQuAD file, paragraphs without questions too."""
    return [(article.get("title", ""), [p["context"] for p in article["paragraphs"]]) for article in _data(path)]


def _data(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)["data"]


def read_squad(path: str | Path) -> Iterator[SquadExample]:
    """Every question of one SQuAD file, in file order."""
    path = Path(path)
    for number, article in enumerate(_data(path)):
        for paragraph_number, paragraph in enumerate(article["paragraphs"]):
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = () if qa.get("is_impossible") else tuple(
                    (a["text"], int(a["answer_start"])) for a in qa.get("answers", ())
                )
                yield SquadExample(
                    qa["id"], article.get("title", ""), qa["question"].strip(), context, answers,
                    path.name, number, paragraph_number,
                )


def load_squad(paths: Iterable[str | Path], seen: set[str] | None = None) -> list[SquadExample]:
    """Questions of SQuAD files, each question id once (the first file that has it wins)."""
    seen = set() if seen is None else seen
    examples: list[SquadExample] = []
    for path in paths:
        for example in read_squad(path):
            if example.id not in seen:
                seen.add(example.id)
                examples.append(example)
    return examples
