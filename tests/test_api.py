"""The real FastAPI app through its in-process client, over a real index."""

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app


@pytest.fixture
def client(fresh_engine):
    with TestClient(create_app(fresh_engine)) as c:
        yield c


def article_text(client, article_id):
    return client.get(f"/articles/{article_id}").json()["text"]


def test_health(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["articles"] == 5 and body["chunks"] > 5
    assert body["rebuild_advised"] is False


def test_ask_cites_exact_offsets(client):
    response = client.post("/ask", json={"question": "How many drones did Kyiv's defences shoot down?"})
    assert response.status_code == 200
    body = response.json()
    assert body["question"].startswith("How many drones")
    best = body["answers"][0]
    assert best["text"] == "7"
    text = article_text(client, best["citation"]["article_id"])
    assert text[best["citation"]["start"]:best["citation"]["end"]] == "7"
    assert text[best["context"]["start"]:best["context"]["end"]] == best["context"]["text"]
    assert "Klitschko" in best["context"]["text"]


def test_ask_without_an_answer(client):
    assert client.post("/ask", json={"question": "Who won the 2022 FIFA World Cup?"}).json()["answers"] == []


def test_search(client):
    body = client.get("/search", params={"q": "Kyivstar cyber attack", "k": 3}).json()
    assert len(body["results"]) == 3
    for result in body["results"]:
        assert article_text(client, result["article_id"])[result["start"]:result["end"]] == result["text"]


def test_articles_add_get_delete(client):
    created = client.post("/articles", json={"id": "n1", "text": "The Zorblat bridge reopened on Monday.", "title": "Bridge"})
    assert created.status_code == 201
    assert client.get("/articles/n1").json() == {"id": "n1", "title": "Bridge", "text": "The Zorblat bridge reopened on Monday."}
    batch = client.post("/articles", json={"articles": [{"id": "n1", "text": "Replaced."}, {"id": "n2", "text": "Another one."}]})
    assert batch.json()["replaced"] == ["n1"] and batch.json()["added"] == ["n2"]
    assert client.delete("/articles/n1").status_code == 200
    assert client.get("/articles/n1").status_code == 404
    assert client.get("/health").json()["articles"] == 6


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


@pytest.mark.parametrize("body", [{}, {"question": ""}, {"question": "   "}, {"question": 5}, {"question": None},
                                  {"question": "x" * 2001}, {"question": "ok?", "top_k": 0},
                                  {"question": "ok?", "top_k": 101}, {"question": "ok?", "top_k": "3"}, [1, 2]])
def test_bad_questions_get_the_error_body(client, body):
    error_of(client.post("/ask", json=body), 400)


def test_malformed_json(client):
    for path in ("/ask", "/articles", "/cite"):
        error = error_of(client.post(path, content=b"{not json", headers={"content-type": "application/json"}), 400)
        assert error["code"] == "bad_json"


@pytest.mark.parametrize("params", [{"q": "x", "k": 0}, {"q": "x", "k": 101}, {"q": "x", "k": "many"}, {"k": 3}, {"q": ""}])
def test_bad_search_parameters(client, params):
    error_of(client.get("/search", params=params), 400)


def test_unknown_articles(client):
    assert error_of(client.get("/articles/nope"), 404)["code"] == "not_found"
    assert error_of(client.delete("/articles/nope"), 404)["code"] == "not_found"
    error_of(client.get("/no/such/route"), 404)


@pytest.mark.parametrize("body", [{"id": "x"}, {"id": "x", "text": ""}, {"text": "no id"}, {"articles": []}, "text"])
def test_articles_without_text_or_id_are_refused(client, body):
    error_of(client.post("/articles", json=body), 400)
    assert client.get("/health").json()["articles"] == 5


@pytest.mark.parametrize("body, said", [
    ({"articles": []}, "ArticleBatch.articles: List should have at least 1 item"),  # not the single form's "id"
    ({"articles": [{"text": "x"}]}, "ArticleBatch.articles.0.id: Field required"),
    ({"text": "no id"}, "ArticleIn.id: Field required"),
    ({"id": "x", "text": "  "}, "ArticleIn.text: must hold a character that is not white space"),
    ({"id": "x", "text": "t", "published": "2023-02-30"}, "ArticleIn.published: must be a day of the calendar, YYYY-MM-DD"),
])
def test_a_refused_article_hears_what_is_wrong_with_the_form_it_was_sent_in(client, body, said):
    assert error_of(client.post("/articles", json=body), 400)["message"].startswith(said)


def test_an_article_dated_a_day_that_is_not_in_the_calendar_is_refused(client):
    # The YYYY-MM-DD pattern alone passes 2023-02-30. A filter bound may say it (the end of
    # February: bounds compare as text), an article's date may not.
    error_of(client.post("/articles", json={"id": "feb", "text": "Body.", "published": "2023-02-30"}), 400)
    assert client.get("/health").json()["articles"] == 5
    assert client.post("/articles", json={"id": "leap", "text": "Body.", "published": "2024-02-29"}).status_code == 201
    assert client.post("/ask", json={"question": "drones?", "published_to": "2023-02-31"}).status_code == 200


def test_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    assert "/ask" in client.get("/openapi.json").json()["paths"]
