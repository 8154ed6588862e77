"""Scores citation lookup on labelled quotes and claims (a `cite_dev.jsonl`-style file).

Each item: `{"text": str, "kind": "exact"|"near"|"paraphrase"|"unrelated", "article": str|None,
"span": [start, end]|None}`. An item is found when the finder's first match is in the right
article and fits the source span:

- exact: span IoU >= 0.9;
- near: span IoU >= 0.6;
- paraphrase: the match covers at least half of the source span;
- unrelated: the finder returns no match at all.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .records import Match

if TYPE_CHECKING:
    from .cite import CitationFinder

__all__ = ["score_citations"]

# The kind of match each item kind should get.
EXPECTED_KIND = {"exact": "exact", "near": "near", "paraphrase": "semantic"}
MIN_IOU = {"exact": 0.9, "near": 0.6}
MIN_SOURCE_COVERAGE = 0.5


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _coverage(match: tuple[int, int], source: tuple[int, int]) -> float:
    inter = max(0, min(match[1], source[1]) - max(match[0], source[0]))
    length = source[1] - source[0]
    return inter / length if length > 0 else 0.0


def _found(item: dict, matches: list[Match]) -> bool:
    kind = item["kind"]
    if kind == "unrelated":
        return not matches
    if not matches:
        return False
    top = matches[0]
    if top.article_id != item.get("article"):
        return False
    span = (top.start, top.end)
    source = tuple(item["span"])
    if kind == "paraphrase":
        return _coverage(span, source) >= MIN_SOURCE_COVERAGE
    return _iou(span, source) >= MIN_IOU.get(kind, 0.6)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    # Nearest rank: the smallest value with at least q of the values at or below it.
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def score_citations(finder: "CitationFinder", items: list[dict]) -> dict:
    """Per item kind: how many items, the found rate, the rate whose first match has the
    expected kind, and latency p50/p95 in milliseconds; plus `offsets_exact`, the share of all
    returned matches whose text is exactly the article's text at their offsets.

    Returns `{"kinds": {kind: {...}}, "items": int, "found": float, "offsets_exact": float,
    "failures": [{"id", "kind", "text", "got"}]}`.
    """
    per_kind: dict[str, dict] = {}
    failures = []
    matches_checked = matches_true = 0
    for item in items:
        kind = item["kind"]
        started = time.perf_counter()
        matches = finder.find(item["text"], k=item.get("k", 5))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        stats = per_kind.setdefault(kind, {"items": 0, "found": 0, "kind_right": 0, "latencies": []})
        stats["items"] += 1
        stats["latencies"].append(elapsed_ms)
        found = _found(item, matches)
        stats["found"] += found
        expected = EXPECTED_KIND.get(kind)
        if (expected is None and not matches) or (matches and matches[0].kind == expected):
            stats["kind_right"] += 1
        if not found:
            top = matches[0] if matches else None
            failures.append(
                {
                    "id": item.get("id"),
                    "kind": kind,
                    "text": item["text"],
                    "got": None
                    if top is None
                    else {"article_id": top.article_id, "start": top.start, "end": top.end, "kind": top.kind, "score": top.score},
                }
            )
        for match in matches:
            matches_checked += 1
            try:
                article = finder.article(match.article_id)
            except Exception:  # a vanished article cannot confirm the offsets
                continue
            matches_true += article.text[match.start:match.end] == match.text

    kinds = {}
    for kind, stats in per_kind.items():
        latencies = stats["latencies"]
        kinds[kind] = {
            "items": stats["items"],
            "found": stats["found"] / stats["items"],
            "kind_right": stats["kind_right"] / stats["items"],
            "latency_ms_p50": round(_percentile(latencies, 0.5), 2),
            "latency_ms_p95": round(_percentile(latencies, 0.95), 2),
        }
    total = sum(s["items"] for s in per_kind.values())
    return {
        "items": total,
        "found": (sum(s["found"] for s in per_kind.values()) / total) if total else 0.0,
        "offsets_exact": matches_true / matches_checked if matches_checked else 1.0,
        "kinds": kinds,
        "failures": failures,
    }
