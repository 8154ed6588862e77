"""Readers: from retrieved passages to short answers. See `base.Reader` for the interface."""

from .base import Reader, answer_in_passage, best_distinct
from .factory import make_reader

__all__ = ["Reader", "answer_in_passage", "best_distinct", "make_reader"]
