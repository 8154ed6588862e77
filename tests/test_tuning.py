"""`qa tune-reader`'s choice of weights and threshold, on hand-made candidate rows."""

import numpy as np

from qa.tuning import ANSWER_COST, objective, tune


def row(name, answers, margin, support, text):
    return {"set": name, "answers": answers, "best_support": support,
            "features": np.array([[margin, support, 1.0, 0.0, 0.0]]), "texts": [text]}


def test_tune_abstains_only_where_answerable_questions_do_not_pay_for_it():
    rows = (
        # Confident right answers, and one weak right answer that a high threshold would lose.
        [row("squad", ("Rollo",), 8.0, 0.9, "Rollo") for _ in range(9)]
        + [row("squad", ("911",), -6.0, 0.2, "911")]
        # Unanswerable questions: two a little stronger than the weak right answer (refusing
        # them would refuse it too, which v2 overall alone would pay: +2 -1), one weaker.
        + [row("squad", (), -5.5, 0.25, "Paris"), row("squad", (), -5.0, 0.3, "Rouen"), row("squad", (), -7.0, 0.1, "1066")]
    )
    weights, means = tune(rows)
    answered, overall = objective(rows, weights)
    assert answered["squad"] >= 1.0 - ANSWER_COST  # the weak right answer is kept
    # ...and the unanswerable question that scores below it is still refused.
    assert overall["squad"] == (10 + 1) / 13
    assert means["squad answerable F1"] == answered["squad"]
