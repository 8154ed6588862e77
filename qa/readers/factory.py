"""Choosing the reader named by the `reader` setting."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import BadInput
from .base import Reader

log = logging.getLogger(__name__)

SHIPPED_READER = Path(__file__).resolve().parent.parent / "models" / "reader"


def make_reader(setting: str, encoder) -> Reader:
    """`rules`, `neural` (the reader trained here and shipped in `qa/models/reader`), `hybrid`
    (its spans judged with the rules' sentence ranking), `auto` (of those two, the one that
    measured best on the dev sets, as `qa tune-reader` recorded in reader.json; the rules where
    no trained reader is present), or a folder holding an ONNX reader or any Hugging Face
    extractive-QA checkpoint."""
    from .rules import RuleReader

    if setting == "rules":
        return RuleReader(encoder)
    if setting in ("auto", "neural", "hybrid"):
        if not (SHIPPED_READER / "model.onnx").exists():
            if setting != "auto":
                raise BadInput("bad_reader", f"no trained reader in {SHIPPED_READER}; run `qa train-reader`")
            log.info("no trained reader shipped; using the rule reader")
            return RuleReader(encoder)
        if setting == "neural":
            return _neural(SHIPPED_READER, encoder)
        # auto: the reader that measured best on the dev sets (`qa tune-reader` writes it).
        if setting == "auto" and _config(SHIPPED_READER).get("default", "hybrid") == "neural":
            return _neural(SHIPPED_READER, encoder)
        return hybrid(_neural(SHIPPED_READER, encoder), RuleReader(encoder), SHIPPED_READER)
    path = Path(setting)
    if not path.is_dir():
        raise BadInput("bad_reader", f"QA_READER={setting!r} is not rules, neural, auto or a model folder")
    return _neural(path, encoder)


def _config(folder: Path) -> dict:
    import json

    return json.loads((folder / "reader.json").read_text()) if (folder / "reader.json").exists() else {}


def hybrid(spans, rules, folder: Path) -> Reader:
    """The span model judged with the rule reader's sentence ranking, weights from reader.json."""
    from .hybrid import HybridReader, HybridWeights

    return HybridReader(spans, rules, HybridWeights(**_config(folder).get("hybrid", {})))


def _neural(path: Path, encoder) -> Reader:
    from .neural import load_neural_reader

    reader = load_neural_reader(path)
    log.info("reader: %s from %s", reader.name, path)
    return reader
