"""Semantic search, question answering and citation lookup over news articles, with exact offsets."""

import os

# Weights never come from a hub at run time; set before any Hugging Face library is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from .engine import Engine
from .errors import BadInput, IndexMismatch, NotFound, QAError
from .records import (Answer, Article, ArticleListing, ArticleSummary, Chunk, Citation, Context, Filters, Match,
                      Passage, Sentence, SourceCount)
from .settings import Settings

__all__ = [
    "Answer", "Article", "ArticleListing", "ArticleSummary", "BadInput", "Chunk", "Citation", "Context", "Engine",
    "Filters", "IndexMismatch", "Match", "NotFound", "Passage", "QAError", "Sentence", "Settings", "SourceCount",
]
