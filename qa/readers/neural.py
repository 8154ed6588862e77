"""Neural extractive readers: a span model scores every token as an answer start and end.

Both readers share one code path (windowing, span selection, offsets, no-answer decision);
they differ only in how the model is run on token ids:

* `NeuralReader`: the shipped ONNX artifact (`qa/models/reader`), ONNX Runtime on CPU.
* `HFReader`: any Hugging Face extractive-QA checkpoint folder, run with torch.

Each passage is tokenized with the question in windows of `max_length` tokens (the passage
split with `stride` overlapping tokens); all windows of all passages go through the model in
one batch. In a window, a span (i, j) of passage tokens scores start[i] + end[j]; the window's
"no answer" score is start[CLS] + end[CLS] (SQuAD v2). A span's margin is its score minus the
null score of its window, so margins compare across windows and passages. A span is an answer
when its margin (plus a bonus or malus from how well retrieval supports the passage) is above
`threshold`; `Answer.score` is the logistic of (adjusted margin - threshold) / SCORE_SCALE, so
scores compare across passages and questions, and every returned answer scores above 0.5.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tokenizers import Tokenizer

from .. import int8
from ..checksums import verify_model_files
from ..errors import BadInput
from ..records import Answer, Passage
from .base import answer_in_passage, best_distinct

log = logging.getLogger(__name__)

DEFAULT_READER_PATH = Path(__file__).resolve().parent.parent / "models" / "reader"
MAX_QUESTION_TOKENS = 64
# Answer.score = logistic((adjusted margin - threshold) / SCORE_SCALE): 0.5 at the threshold,
# ~0.88 eight logits above it (a typical confident answer).
SCORE_SCALE = 4.0
DEFAULTS: dict[str, Any] = {
    "max_length": 256,
    "stride": 96,
    "max_answer_tokens": 30,
    "threshold": 0.0,
    "n_best": 20,
    "support_weight": 1.0,
    "min_coverage": 0.0,
    "max_unmatched_names": None,
    "batch_size": 64,
}

# Characters trimmed from the edges of an answer span.
_EDGE_PUNCT = ",.;:!?…"
_QUOTES = "\"'“”‘’«»„"
_PAIRS = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class Span:
    """A candidate answer: `passages[passage].text[start:end]`, before any threshold."""

    passage: int
    start: int
    end: int
    margin: float  # span score minus the null score of its window
    logit: float  # start + end logit


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink [start, end) past white space, edge punctuation and unmatched quotes/brackets.

    A final full stop stays when it closes an abbreviation such as "U.S." or "p.m.".
    """
    for _ in range(4):
        s0, e0 = start, end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        while start < end and text[start] in _EDGE_PUNCT:
            start += 1
        while end > start and text[end - 1] in _EDGE_PUNCT:
            if text[end - 1] == "." and _is_abbreviation(text, start, end):
                break
            end -= 1
        span = text[start:end]
        quotes = sum(span.count(q) for q in _QUOTES)
        if len(span) > 2 and span[0] in _QUOTES and span[-1] in _QUOTES and quotes == 2:
            start, end = start + 1, end - 1
        elif span and span[0] in _QUOTES and quotes == 1:
            start += 1
        elif span and span[-1] in _QUOTES and quotes == 1:
            end -= 1
        span = text[start:end]
        if len(span) > 2 and span[0] in _PAIRS and span[-1] == _PAIRS[span[0]] and span.count(span[0]) == 1:
            start, end = start + 1, end - 1
        elif span and span[0] in _PAIRS and _PAIRS[span[0]] not in span:
            start += 1
        span = text[start:end]
        if span and span[-1] in _PAIRS.values():
            opener = next(k for k, v in _PAIRS.items() if v == span[-1])
            if opener not in span:
                end -= 1
        if (start, end) == (s0, e0):
            break
    return start, end


def _is_abbreviation(text: str, start: int, end: int) -> bool:
    """Whether the "." at end-1 closes a dotted abbreviation ("U.S.", "a.m.") in text[start:end]."""
    word_start = end - 1
    while word_start > start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start : end - 1]
    return "." in word and all(0 < len(part) <= 2 and part.isalpha() for part in word.split("."))


class SpanReader:
    """Windowing and span selection shared by the neural readers; subclasses run the model."""

    name = "span"

    def __init__(
        self,
        tokenizer,
        *,
        pad_id: int = 0,
        truncation_side: str = "right",
        max_length: int = DEFAULTS["max_length"],
        stride: int = DEFAULTS["stride"],
        max_answer_tokens: int = DEFAULTS["max_answer_tokens"],
        threshold: float = DEFAULTS["threshold"],
        n_best: int = DEFAULTS["n_best"],
        support_weight: float = DEFAULTS["support_weight"],
        min_coverage: float = DEFAULTS["min_coverage"],
        max_unmatched_names: int | None = DEFAULTS["max_unmatched_names"],
        batch_size: int = DEFAULTS["batch_size"],
    ):
        """`tokenizer`: a `tokenizers.Tokenizer` (the fast tokenizer's own core: the windows are
        those `transformers` cuts with `truncation="only_second"` and `return_overflowing_tokens`,
        without importing it); `pad_id` fills the rows of a batch past their window;
        `truncation_side` is the tokenizer's: the end of a passage the windows start from.

        `threshold`: minimum adjusted margin (span score - null score) for an answer.

        `support_weight`: how much retrieval support moves that margin: the adjusted margin is
        margin + support_weight * support(passage), where support is in [-1, 1] (see
        `retrieval_support`; 0 for a passage without retrieval ranks or scores, as in the gold
        paragraph evaluation the threshold is tuned on). 0 reads passages on their text alone.

        `min_coverage`: the engine answers only when the passages hold at least this share of
        the question's rare words (`Retriever.coverage`); the reader itself does not use it.
        `max_unmatched_names`: nor when more of the question's names than this are in no passage
        (`Retriever.unmatched_names`; None: no such gate).

        `batch_size`: windows per model run. An int8 model quantizes its activations with one
        scale per run, so a window's scores depend on the windows run beside it (and on their
        padding); 1 makes each window's scores its own.
        """
        self.max_length = int(max_length)
        self.stride = int(stride)
        # Two copies of the tokenizer, each set once: questions untruncated, passages cut into
        # windows. A `tokenizers.Tokenizer` keeps its truncation setting in itself: changed per
        # call, two threads of the API at once could fail ("Already borrowed").
        self._questions = Tokenizer.from_str(tokenizer.to_str())
        self._questions.no_truncation()
        self._questions.no_padding()
        self._windows = Tokenizer.from_str(tokenizer.to_str())
        self._windows.enable_truncation(self.max_length, stride=self.stride, strategy="only_second",
                                        direction=truncation_side)
        self._windows.no_padding()
        self.pad_id = int(pad_id)
        # Kept although nothing changes the copies now: a reader subclass or a future setting
        # that did would fail only under concurrent requests, and tokenizing is a few ms an ask.
        self._tokenizing = threading.Lock()
        self.max_answer_tokens = int(max_answer_tokens)
        self.threshold = float(threshold)
        self.n_best = int(n_best)
        self.support_weight = float(support_weight)
        self.min_coverage = float(min_coverage)
        self.max_unmatched_names = None if max_unmatched_names is None else int(max_unmatched_names)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise BadInput("bad_reader", f"batch_size must be at least 1, not {batch_size!r}")

    # -- the one model-specific part ---------------------------------------------------------

    def run_model(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(start_logits, end_logits), each [batch, length], for int64 [batch, length] inputs."""
        raise NotImplementedError

    # -- shared code path --------------------------------------------------------------------

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Each text's word pieces, without special tokens and uncut."""
        with self._tokenizing:
            return [len(e.ids) for e in self._questions.encode_batch(list(texts), add_special_tokens=False)]

    def _question(self, question: str) -> str:
        question = " ".join(question.split())
        with self._tokenizing:
            offsets = self._questions.encode(question, add_special_tokens=False).offsets
        if len(offsets) <= MAX_QUESTION_TOKENS:
            return question
        return question[: offsets[MAX_QUESTION_TOKENS - 1][1]]

    def spans(self, question: str, passages: Sequence[Passage]) -> list[Span]:
        """Candidate spans of all passages, best margin first, with no threshold applied.

        `Span.passage` indexes `passages`; passages without text are skipped.
        """
        keep = [i for i, p in enumerate(passages) if p.text.strip()]
        if not keep or not question.strip():
            return []
        q = self._question(question)
        with self._tokenizing:
            encoded = self._windows.encode_batch([(q, passages[i].text) for i in keep])
        # Each passage's first window, then the windows its overflow was cut into. A window of no
        # tokens (a tokenizer that adds none) is never run: see qa/int8.py.
        windows = [(i, window) for i, e in zip(keep, encoded) for window in (e, *e.overflowing) if window.ids]
        if not windows:
            return []
        n = len(windows)
        order = sorted(range(n), key=lambda k: len(windows[k][1].ids))
        results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for b in range(0, n, self.batch_size):
            idx = order[b : b + self.batch_size]
            longest = max(len(windows[k][1].ids) for k in idx)
            ids = np.full((len(idx), longest), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.int64)
            types = np.zeros((len(idx), longest), dtype=np.int64)
            for row, k in enumerate(idx):
                window = windows[k][1]
                ids[row, : len(window.ids)] = window.ids
                mask[row, : len(window.ids)] = 1
                types[row, : len(window.ids)] = window.type_ids
            s, e = self.run_model(ids, mask, types)
            for row, k in enumerate(idx):
                results[k] = (np.asarray(s[row], dtype=np.float32), np.asarray(e[row], dtype=np.float32))
        found: list[Span] = []
        for k in range(n):
            start_logits, end_logits = results[k]
            p_index, window = windows[k]
            found.extend(self._window_spans(passages[p_index], p_index, window.sequence_ids,
                                            window.offsets, start_logits, end_logits))
        found.sort(key=lambda sp: -sp.margin)
        return found

    def _window_spans(self, passage, p_index, seq_ids, offsets, start_logits, end_logits) -> list[Span]:
        ctx = np.array([i for i, s in enumerate(seq_ids) if s == 1], dtype=np.int64)
        if ctx.size == 0:
            return []
        null = float(start_logits[0] + end_logits[0])
        sl = start_logits[ctx]
        el = end_logits[ctx]
        m = ctx.size
        scores = sl[:, None] + el[None, :]
        i_idx, j_idx = np.indices((m, m))
        valid = (j_idx >= i_idx) & (j_idx - i_idx < self.max_answer_tokens)
        scores = np.where(valid, scores, -np.inf)
        flat = scores.ravel()
        k = min(self.n_best, int(valid.sum()))
        best = np.argpartition(-flat, k - 1)[:k]
        out: list[Span] = []
        text = passage.text
        for f in best[np.argsort(-flat[best])]:
            i, j = divmod(int(f), m)
            c_start = offsets[int(ctx[i])][0]
            c_end = offsets[int(ctx[j])][1]
            c_start, c_end = trim_span(text, c_start, c_end)
            if c_end <= c_start:
                continue
            out.append(Span(p_index, c_start, c_end, float(flat[f]) - null, float(flat[f])))
        return out

    def retrieval_support(self, passage: Passage) -> float:
        """How well retrieval backs a passage, in [-1, 1]; 0 when nothing is known.

        Averages what the passage has: the dense cosine (0.2 -> -1, 0.6 -> +1), and the best rank
        in either retriever (rank 0 -> +1, rank 10 or unranked by both -> -1).
        """
        parts = []
        if passage.dense_score is not None:
            parts.append(float(np.clip((passage.dense_score - 0.4) / 0.2, -1.0, 1.0)))
        ranks = [r for r in (passage.dense_rank, passage.keyword_rank) if r is not None]
        if ranks:
            parts.append(float(np.clip(1.0 - min(ranks) / 5.0, -1.0, 1.0)))
        return sum(parts) / len(parts) if parts else 0.0

    def read(self, question: str, passages: Sequence[Passage], top_k: int) -> list[Answer]:
        if top_k <= 0:
            return []
        answers: list[Answer] = []
        support = [self.support_weight * self.retrieval_support(p) if self.support_weight else 0.0 for p in passages]
        for sp in self.spans(question, passages):
            margin = sp.margin + support[sp.passage]
            if margin <= self.threshold:
                continue
            score = 1.0 / (1.0 + math.exp(-(margin - self.threshold) / SCORE_SCALE))
            answers.append(answer_in_passage(passages[sp.passage], sp.start, sp.end, score))
        return best_distinct(answers, top_k)


def _reader_config(path: Path) -> dict[str, Any]:
    config = dict(DEFAULTS)
    file = path / "reader.json"
    if file.is_file():
        with open(file, encoding="utf-8") as f:
            config.update(json.load(f))
    return config


def _load_tokenizer(path: Path) -> tuple[Tokenizer, int, str]:
    """The reader folder's tokenizer (`tokenizer.json`, read as it is: it must be the one the model
    was trained with, as qa.training writes it), its padding id and truncation side, read with
    `tokenizers` alone: `transformers` (and the torch it imports) would add seconds to every start."""
    file = path / "tokenizer.json"
    if not file.is_file():
        raise BadInput("bad_reader", f"{path}: the reader needs a fast tokenizer (tokenizer.json)")
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises its own Exception type on a bad file
        raise BadInput("bad_reader", f"{file}: not a tokenizer ({exc})") from exc
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the second wins, as in transformers
        if (path / name).is_file():
            config.update(json.loads((path / name).read_text(encoding="utf-8")))
    pad = config.get("pad_token", "[PAD]")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    return tokenizer, tokenizer.token_to_id(pad) or 0, config.get("truncation_side", "right")


def _hf_tokenizer(path: Path) -> tuple[Tokenizer, int, str]:
    """A Hugging Face checkpoint's fast tokenizer, as `transformers` builds it (the folder may
    hold only a vocabulary), its padding id and truncation side."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    if not tokenizer.is_fast:
        raise BadInput("bad_reader", f"{path}: the reader needs a fast tokenizer (tokenizer.json)")
    return tokenizer.backend_tokenizer, tokenizer.pad_token_id or 0, tokenizer.truncation_side


def _settings(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    keys = ("max_length", "stride", "max_answer_tokens", "threshold", "n_best", "support_weight", "min_coverage",
            "max_unmatched_names", "batch_size")
    settings = {k: config[k] for k in keys if k in config}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


class NeuralReader(SpanReader):
    """The shipped ONNX span model (`model.onnx` + tokenizer + `reader.json`) on ONNX Runtime."""

    name = "neural"

    def __init__(self, path: str | Path = DEFAULT_READER_PATH, *, threads: int = 2, **overrides: Any):
        """`overrides` (threshold, support_weight, max_length, ...) win over reader.json."""
        import onnxruntime as ort

        self.path = Path(path)
        model_file = self.path / "model.onnx"
        if not model_file.is_file():
            raise BadInput("bad_reader", f"{self.path}: no model.onnx in the reader folder")
        # A damaged model file may load and answer nonsense: refuse it (SHA256SUMS, see qa/checksums.py).
        verify_model_files(self.path, "reader model")
        self.config = _reader_config(self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # The CPU is shared with retrieval and the web server: do not spin idle threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = int8.session(model_file, options)
        self._inputs = {i.name for i in self.session.get_inputs()}
        tokenizer, pad_id, side = _load_tokenizer(self.path)
        super().__init__(tokenizer, pad_id=pad_id, truncation_side=side, **_settings(self.config, overrides))

    def run_model(self, input_ids, attention_mask, token_type_ids):
        feed = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        start, end = self.session.run(["start_logits", "end_logits"], {k: v for k, v in feed.items() if k in self._inputs})
        return start, end


class HFReader(SpanReader):
    """Any Hugging Face extractive-QA checkpoint folder, run with torch on CPU."""

    name = "hf"

    def __init__(self, path: str | Path, *, threads: int | None = None, **overrides: Any):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForQuestionAnswering

        self.path = Path(path)
        if threads:
            torch.set_num_threads(threads)
        self.config = _reader_config(self.path)
        self.model = AutoModelForQuestionAnswering.from_pretrained(str(self.path))
        self.model.eval()
        self._torch = torch
        self._uses_types = self.model.config.type_vocab_size > 1 if hasattr(self.model.config, "type_vocab_size") else False
        tokenizer, pad_id, side = _hf_tokenizer(self.path)
        super().__init__(tokenizer, pad_id=pad_id, truncation_side=side, **_settings(self.config, overrides))

    def run_model(self, input_ids, attention_mask, token_type_ids):
        torch = self._torch
        kwargs = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        if self._uses_types:
            kwargs["token_type_ids"] = torch.from_numpy(token_type_ids)
        with torch.no_grad():
            out = self.model(**kwargs)
        return out.start_logits.float().numpy(), out.end_logits.float().numpy()


def load_neural_reader(path: str | Path = DEFAULT_READER_PATH, **overrides: Any) -> SpanReader:
    """NeuralReader for a folder with model.onnx, HFReader for a Hugging Face QA checkpoint."""
    folder = Path(path)
    if not folder.is_dir():
        raise BadInput("bad_reader", f"reader folder not found: {folder}")
    if (folder / "model.onnx").is_file():
        return NeuralReader(folder, **overrides)
    config_file = folder / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput("bad_reader", f"{config_file}: unreadable ({exc})") from exc
        architectures = config.get("architectures") or []
        if any("QuestionAnswering" in a for a in architectures):
            return HFReader(folder, **overrides)
        raise BadInput(
            "bad_reader",
            f"{folder}: config.json is not an extractive-QA model (architectures: {architectures or 'none'})",
        )
    raise BadInput("bad_reader", f"{folder}: neither model.onnx nor a Hugging Face QA checkpoint (config.json)")
