"""`qa tune-reader`'s choice of reader, weights, threshold and retrieval gate, on hand-made rows."""

import numpy as np

from qa.evaluate import bootstrap_interval
from qa.tuning import ANSWER_COST, Outcome, Row, answered_mask, tune


def row(name, answerable, margin, support, f1, coverage=1.0, span_margin=None, span_f1=None, unmatched=0):
    """One question with one candidate, scored alike by both readers unless told otherwise."""
    return Row(name, answerable, coverage, support, np.array([[margin, support, 1.0, 0.0, 0.0]]), np.array([f1]),
               np.array([margin if span_margin is None else span_margin]), np.array([f1 if span_f1 is None else span_f1]),
               unmatched_names=unmatched)


def scores(rows, result):
    return Outcome(rows).scores(result["f1"], answered_mask(rows, result))


def test_tune_abstains_only_where_answerable_questions_do_not_pay_for_it():
    rows = (
        # Confident right answers, and one weak right answer that a high threshold would lose.
        [row("squad", True, 8.0, 0.9, 1.0) for _ in range(9)]
        + [row("squad", True, -6.0, 0.2, 1.0)]
        # Unanswerable questions: two a little stronger than the weak right answer (refusing
        # them would refuse it too, which v2 overall alone would pay: +2 -1), one weaker.
        + [row("squad", False, -5.5, 0.25, 0.0), row("squad", False, -5.0, 0.3, 0.0), row("squad", False, -7.0, 0.1, 0.0)]
    )
    for reader, result in tune(rows).items():
        answered, overall = scores(rows, result)
        assert answered["squad"] >= 1.0 - ANSWER_COST, reader  # the weak right answer is kept
        # ...and the unanswerable question that scores below it is still refused.
        assert overall["squad"] == (10 + 1) / 13, reader


def test_the_retrieval_gate_refuses_questions_whose_rare_words_the_passages_lack():
    # Off-topic questions get confident spans (the span model alone cannot refuse them), but
    # the passages hold little of their rare words; answerable ones hold most of theirs.
    rows = ([row("news", True, 9.0, 0.8, 1.0, coverage=0.9) for _ in range(6)]
            + [row("news", True, 2.0, 0.5, 1.0, coverage=0.7)]
            + [row("news", False, 8.0, 0.6, 0.0, coverage=0.1) for _ in range(4)])
    results = tune(rows)
    for reader, result in results.items():
        answered, overall = scores(rows, result)
        assert answered["news"] == 1.0 and overall["news"] == 1.0, reader
        gate = result["weights"].min_coverage if "weights" in result else result["min_coverage"]
        assert 0.1 < gate <= 0.7, reader


def names_gate(result):
    return result["weights"].max_unmatched_names if "weights" in result else result["max_unmatched_names"]


def test_the_names_gate_is_set_only_where_it_pays():
    # Unanswerable questions name what the passages lack and look like the answerable ones in
    # every other way: only the names gate refuses them.
    rows = ([row("news", True, 9.0, 0.8, 1.0) for _ in range(6)]
            + [row("news", False, 9.0, 0.8, 0.0, unmatched=1) for _ in range(3)])
    for reader, result in tune(rows).items():
        assert names_gate(result) == 0, reader
        assert scores(rows, result)[1]["news"] == 1.0, reader
    # Answerable questions that lack a name too: refusing them costs more than the budget, so
    # the gate stays off.
    rows += [row("news", True, 9.0, 0.8, 1.0, unmatched=1) for _ in range(2)]
    for reader, result in tune(rows).items():
        assert names_gate(result) is None, reader


def test_the_default_reader_follows_the_measurement():
    # The span model's own best span is right where the blend's is wrong: neural must win.
    rows = [row("squad", True, 5.0, 0.8, 0.0, span_f1=1.0) for _ in range(5)] + [row("squad", False, -9.0, 0.1, 0.0)]
    results = tune(rows)
    assert max(results, key=lambda name: results[name]["key"]) == "neural"
    rows = [row("squad", True, 5.0, 0.8, 1.0, span_f1=0.0) for _ in range(5)] + [row("squad", False, -9.0, 0.1, 0.0)]
    results = tune(rows)
    assert max(results, key=lambda name: results[name]["key"]) == "hybrid"


def test_bootstrap_interval_is_seeded_and_holds_the_mean():
    values = [1.0] * 18 + [0.0] * 6
    low, high = bootstrap_interval(values)
    assert (low, high) == bootstrap_interval(values)
    assert low < 0.75 < high and 0.5 < low and high <= 1.0
    assert bootstrap_interval([1.0] * 10) == (1.0, 1.0)


def test_collect_reads_with_the_span_model_of_the_reader_folder_it_is_given(tmp_path):
    import json
    import shutil

    from qa.readers.factory import SHIPPED_READER
    from qa.settings import Settings
    from qa.tuning import collect
    from tests.conftest import CORPUS

    questions = tmp_path / "news.jsonl"
    questions.write_text("".join(open("data/news_dev.jsonl").readlines()[:2]))
    folder = tmp_path / "reader"
    shutil.copytree(SHIPPED_READER, folder)
    config = json.loads((folder / "reader.json").read_text())
    (folder / "reader.json").write_text(json.dumps({**config, "max_answer_tokens": 1}))  # one word piece at most
    settings = Settings.from_env(corpus_dir=CORPUS)
    shipped, capped = collect([questions], settings), collect([questions], settings, folder)
    # "Oleksiy Kuleba" is two word pieces or more: only the shipped folder's span model finds it whole.
    assert shipped[0].span_f1.max() == 1.0 and capped[0].span_f1.max() < 1.0


def test_measure_scores_the_settings_as_they_stand():
    from qa.tuning import measure

    rows = ([row("news", True, 9.0, 0.8, 1.0) for _ in range(3)]
            + [row("news", True, 1.0, 0.8, 1.0)]
            + [row("news", False, 9.0, 0.8, 0.0, unmatched=1)])
    config = {"threshold": 5.0, "min_coverage": 0.0, "max_unmatched_names": None,
              "hybrid": {"span": 1.0, "sentence": 0.0, "form": 0.0, "counted": 0.0, "echo": 0.0,
                         "min_support": 0.0, "threshold": 0.0, "max_unmatched_names": 0}}
    results = measure(rows, config)
    # neural: the weak right answer is refused by the threshold, the unanswerable one answered.
    assert list(answered_mask(rows, results["neural"])) == [True, True, True, False, True]
    assert results["neural"]["key"] == (3 / 5, 3 / 4)
    # hybrid: no threshold to speak of, but the names gate refuses the unanswerable question.
    assert list(answered_mask(rows, results["hybrid"])) == [True, True, True, True, False]
    assert results["hybrid"]["key"] == (1.0, 1.0)


def _search_by_loop(outcome, best, f1, support, coverage, unmatched, thresholds, min_supports):
    """`tuning._search` written as the plain loop over the grid it stands for."""
    import itertools

    from qa.tuning import COVERAGE_GRID, NAMES_GRID, _answered

    ceiling, _ = outcome.scores(f1, np.isfinite(best))
    found = None
    for gate, min_support, min_coverage, threshold in itertools.product(NAMES_GRID, min_supports, COVERAGE_GRID, thresholds):
        answered = _answered(best, support, coverage, unmatched, threshold, min_support, min_coverage, gate)
        answerable, overall = outcome.scores(f1, answered)
        if any(answerable[name] < ceiling[name] - ANSWER_COST for name in ceiling):
            continue
        key = (round(float(np.mean(list(overall.values()))), 12), round(float(np.mean(list(answerable.values()))), 12))
        if found is None or key > found[0]:
            found = (key, {"threshold": round(float(threshold), 3), "min_support": min_support,
                           "min_coverage": min_coverage, "max_unmatched_names": gate})
    return found


def test_the_search_judges_the_whole_grid_at_once_as_the_loop_would():
    import itertools

    from qa.tuning import GRID, _search, blends, hybrid_scores

    rng = np.random.default_rng(7)
    rows = [row(str(rng.choice(["squad", "news", "unrelated"])), bool(rng.random() < 0.6), float(rng.normal(0, 5)),
                float(rng.random()), float(rng.random()), coverage=float(rng.random()), unmatched=int(rng.integers(0, 2)))
            for _ in range(120)]
    outcome = Outcome(rows)
    support, coverage, unmatched = (np.array([getattr(r, k) for r in rows]) for k in ("best_support", "coverage", "unmatched_names"))
    for weights, thresholds in itertools.islice(blends(), 0, None, 37):
        best, f1 = hybrid_scores(rows, weights)
        args = (outcome, best, f1, support, coverage, unmatched, [-1e9, *thresholds], GRID["min_support"])
        assert _search(*args) == _search_by_loop(*args), weights
        # Gates that refuse nothing here: many settings tie, and the first of them wins.
        ties = (outcome, best, f1, np.ones(len(rows)), np.ones(len(rows)), np.zeros(len(rows), int),
                [-1e9, *thresholds], GRID["min_support"])
        found = _search(*ties)
        assert found == _search_by_loop(*ties), weights
        assert (found[1]["max_unmatched_names"], found[1]["min_support"], found[1]["min_coverage"]) == (None, 0.0, 0.0)
    # No setting within the answer budget: both find none.
    best = np.where(outcome.answerable, -1.0, 1.0)
    args = (outcome, best, np.ones(len(rows)), support, coverage, unmatched, [0.0], (0.0,))
    assert _search(*args) is None and _search_by_loop(*args) is None
    # Rows where the gates pay: unanswerable questions weakly supported, covered and named.
    gated = [row("news", a, float(rng.normal(2, 3)), float(rng.uniform(0.3, 1) if a else rng.uniform(0, 0.45)),
                 float(rng.random()), coverage=float(rng.uniform(0.25, 1) if a else rng.uniform(0, 0.3)),
                 unmatched=int(0 if a else rng.integers(0, 2)))
             for a in [True] * 40 + [False] * 40]
    outcome = Outcome(gated)
    support, coverage, unmatched = (np.array([getattr(r, k) for r in gated]) for k in ("best_support", "coverage", "unmatched_names"))
    gates = set()
    for weights, thresholds in itertools.islice(blends(), 0, None, 37):
        best, f1 = hybrid_scores(gated, weights)
        args = (outcome, best, f1, support, coverage, unmatched, [-1e9, *thresholds], GRID["min_support"])
        found = _search(*args)
        assert found == _search_by_loop(*args), weights
        gates.add((found[1]["max_unmatched_names"], found[1]["min_support"], found[1]["min_coverage"]))
    assert all(g != (None, 0.0, 0.0) for g in gates)  # every blend closed some gate here


def test_saving_keeps_a_kept_defaults_reason_only_while_the_default_stands():
    """reader.json's `default_why` tells why a default was kept against the measurement; once
    the measurement moves the default, the reason no longer holds and is dropped."""
    from qa.tuning import measure, saved

    config = {"threshold": 5.0, "min_coverage": 0.0, "max_unmatched_names": None, "default": "hybrid",
              "default_why": "kept: the news sets", "command": "python -m qa.training",
              "hybrid": {"span": 1.0, "sentence": 0.0, "form": 0.0, "counted": 0.0, "echo": 0.0,
                         "min_support": 0.0, "threshold": 0.0, "max_unmatched_names": 0}}
    # The names gate makes hybrid the better: the default stands, and so does its reason.
    rows = [row("news", True, 9.0, 0.8, 1.0) for _ in range(3)] + [row("news", False, 9.0, 0.8, 0.0, unmatched=1)]
    kept = saved(config, measure(rows, config), {"lines": {}}, "measured")
    assert kept["default"] == "hybrid" and kept["default_why"] == "kept: the news sets"
    assert kept["tuning"]["how"] == "measured" and kept["tuning"]["report"] == {"lines": {}}
    # The span model's own span right where the blend's is wrong: neural wins, the reason goes.
    rows = [row("news", True, 9.0, 0.8, 0.0, span_f1=1.0) for _ in range(3)]
    moved = saved(config, measure(rows, config), {}, "measured")
    assert moved["default"] == "neural" and "default_why" not in moved
    assert config["default_why"] == "kept: the news sets"  # the caller's dict is not changed
    assert moved["hybrid"].items() >= config["hybrid"].items() and moved["threshold"] == 5.0  # measured, not moved
