"""Citation lookup through the real app and engine, on the seed articles."""

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app


@pytest.fixture(scope="module")
def client(seed_engine):
    with TestClient(create_app(seed_engine)) as c:
        yield c


def cite(client, text, **extra):
    response = client.post("/cite", json={"text": text, **extra})
    assert response.status_code == 200, response.text
    return response.json()["matches"]


def check(client, match):
    text = client.get(f"/articles/{match['article_id']}").json()["text"]
    assert text[match["start"]:match["end"]] == match["text"]
    return text


def test_an_exact_quote_with_other_typography_and_line_breaks(client):
    [best, *_] = cite(client, '"One person was killed \nand three others were injured as a result,"')
    assert best["kind"] == "exact" and best["article_id"] == "002_3806188b7ba67ac3"
    check(client, best)
    assert best["text"] == '"One person was killed and three others were injured as a result,"'


def test_a_quote_across_a_sentence_and_chunk_boundary(client, seed_engine):
    article = seed_engine.article("002_3806188b7ba67ac3")
    start = article.text.index("He added on the Telegram")
    end = article.text.index("according to Mr Raikovych.") + len("according to Mr Raikovych.")
    [best, *_] = cite(client, " ".join(article.text[start:end].split()))
    assert (best["kind"], best["start"], best["end"]) == ("exact", start, end)


def test_a_near_quote_with_a_misspelt_word(client):
    [best, *_] = cite(client, "head of the Security Service of Ukraine's (SBU) cybersecurit department, disclosed")
    assert best["kind"] in ("near", "exact") and best["article_id"] == "002_3806188b7ba67ac3"
    assert "cybersecurity department" in check(client, best)[best["start"]:best["end"]]


def test_a_paraphrase_finds_the_sentence(client):
    [best, *_] = cite(client, "According to the air force, Russia launched 29 cruise missiles from strategic bombers.")
    assert best["kind"] == "semantic" and best["article_id"] == "001_9bf8dedd913fbc69"
    assert "29" in best["text"]
    check(client, best)


def test_an_unsupported_claim_gets_no_match(client):
    assert cite(client, "Germany delivered its first Leopard 2 tanks to Ukraine in March.") == []


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "  "}, {"text": 3}, {"text": "x" * 2001},
                                  {"text": "drones", "k": 0}, {"text": "drones", "k": 101}])
def test_bad_citation_requests(client, body):
    response = client.post("/cite", json=body)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message"}


def test_a_text_of_2000_characters_works(client, seed_engine):
    text = seed_engine.article("002_3806188b7ba67ac3").text[:2000].rsplit(" ", 1)[0]  # whole words
    [best, *_] = cite(client, text)
    assert best["kind"] == "exact" and best["start"] == 0
