"""The API as tools build on it, through the real app: filters, listing, ids of any shape, the API
key, the body cap, 405 with Allow, and the reference page that is generated from the schema."""

import dataclasses
import shutil
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

import qa
from qa import Engine, Settings
from qa.api import create_app
from qa.apidoc import render
from qa.errors import BadInput
from qa.settings import check_exposure

from .conftest import ROOT, make_settings


@pytest.fixture
def client(fresh_engine):
    with TestClient(create_app(fresh_engine)) as c:
        yield c


def engine_with(tmp_path, seed_index, encoder, **settings) -> Engine:
    directory = tmp_path / "index"
    shutil.copytree(seed_index, directory)
    return Engine(make_settings(directory, **settings), encoder=encoder)


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


def path_of(article_id):
    return "/articles/" + quote(article_id, safe="")


# -- ids ----------------------------------------------------------------------------------

@pytest.mark.parametrize("article_id", ["Victoria_(Australia)", "politics/2024/élection Köln 東京", "100% sure?#frag", "x" * 512])
def test_ids_of_any_shape_round_trip(client, article_id):
    created = client.post("/articles", json={"id": article_id, "text": "The Zorblat bridge reopened on Monday."})
    assert created.status_code == 201 and created.json()["added"] == [article_id]
    assert client.get(path_of(article_id)).json()["id"] == article_id
    if "/" not in article_id and "?" not in article_id and "#" not in article_id and "%" not in article_id:
        assert client.get(f"/articles/{article_id}").json()["id"] == article_id  # unencoded, as typed
    [hit] = client.get("/search", params={"q": "Zorblat bridge", "k": 1, "article_ids": [article_id]}).json()["results"]
    assert hit["article_id"] == article_id
    assert client.delete(path_of(article_id)).json() == {"deleted": article_id}
    assert error_of(client.get(path_of(article_id)), 404)["code"] == "not_found"


@pytest.mark.parametrize("article_id", ["tab\there", "new\nline", "nul\x00", "del\x7f", "c1\x85", "x" * 513])
def test_ids_with_control_characters_or_too_long_are_refused(client, article_id):
    error_of(client.post("/articles", json={"id": article_id, "text": "Some text."}), 400)
    error_of(client.get(path_of(article_id)), 400)
    error_of(client.delete(path_of(article_id)), 400)
    error_of(client.get("/search", params={"q": "bridge", "article_ids": [article_id]}), 400)
    error_of(client.post("/ask", json={"question": "Which bridge?", "article_ids": [article_id]}), 400)
    assert client.get("/health").json()["articles"] == 5


# -- filters, listing, citation fields -------------------------------------------------------

def test_ask_and_cite_take_filters_and_citations_carry_the_articles_fields(client):
    client.post("/articles", json={"articles": [
        {"id": "bridge-a", "text": "Engineer Maria Petrenko reopened the Zorblat bridge on Monday.",
         "published": "2024-03-04", "source": "Gazette", "url": "https://gazette.example/a"},
        {"id": "bridge-b", "text": "Engineer Ivan Sokol reopened the Zorblat bridge on Tuesday."},
    ]})
    question = "Who reopened the Zorblat bridge?"
    [a] = client.post("/ask", json={"question": question, "top_k": 1, "source": "Gazette"}).json()["answers"]
    assert a["text"] == "Maria Petrenko"
    assert a["citation"] == {"article_id": "bridge-a", "title": a["citation"]["title"], "start": 9, "end": 23,
                             "published": "2024-03-04", "source": "Gazette", "url": "https://gazette.example/a"}
    [b] = client.post("/ask", json={"question": question, "top_k": 1, "article_ids": ["bridge-b"]}).json()["answers"]
    assert b["text"] == "Ivan Sokol"
    assert set(b["citation"]) == {"article_id", "title", "start", "end"}, "no nulls for fields the article lacks"
    assert client.post("/ask", json={"question": question, "published_from": "2025-01-01"}).json()["answers"] == []

    claim = "Engineer Maria Petrenko reopened the Zorblat bridge on Monday."
    [m] = client.post("/cite", json={"text": claim, "k": 1, "published_to": "2024-03-04"}).json()["matches"]
    assert (m["kind"], m["article_id"], m["source"], m["published"]) == ("exact", "bridge-a", "Gazette", "2024-03-04")
    assert client.post("/cite", json={"text": claim, "source": "Elsewhere"}).json()["matches"] == []
    found = client.get("/search", params={"q": "Zorblat bridge", "published_from": "2024-03-04", "published_to": "2024-03-04"})
    assert [r["article_id"] for r in found.json()["results"]] == ["bridge-a"]


def test_articles_are_listed_paged_and_filtered(client):
    client.post("/articles", json={"articles": [
        {"id": f"n{i}", "text": f"Story number {i}.", "published": f"2024-05-0{i}", "source": "Wire" if i % 2 else "Post"}
        for i in range(1, 6)
    ]})
    page = client.get("/articles", params={"limit": 2}).json()
    assert (page["total"], page["offset"], page["limit"]) == (10, 0, 2)
    assert page["articles"] == [
        {"id": "n5", "title": "Story number 5.", "published": "2024-05-05", "source": "Wire", "chunks": 1},
        {"id": "n4", "title": "Story number 4.", "published": "2024-05-04", "source": "Post", "chunks": 1},
    ]
    wire = client.get("/articles", params={"source": "Wire", "published_to": "2024-05-03", "offset": 1}).json()
    assert wire["total"] == 2 and [a["id"] for a in wire["articles"]] == ["n1"]
    everything = client.get("/articles", params={"limit": 100}).json()["articles"]
    assert [a["id"] for a in everything][:6] == ["n5", "n4", "n3", "n2", "n1", "003_bd9df7c1096ea33d"]
    assert all(a["chunks"] >= 1 for a in everything) and "text" not in everything[0]
    assert client.get("/sources").json() == {"sources": [
        {"source": "Post", "articles": 2}, {"source": "RTE.ie", "articles": 1}, {"source": "Wire", "articles": 3}]}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "ten"},
                                    {"published_from": "2024-5-1"}, {"published_to": "yesterday"}, {"source": ""}])
def test_bad_listing_parameters(client, params):
    error_of(client.get("/articles", params=params), 400)


@pytest.mark.parametrize("body", [{"question": "Who?", "published_from": "2024-02-30x"}, {"question": "Who?", "source": ""},
                                  {"question": "Who?", "article_ids": "one"}, {"question": "Who?", "article_ids": [1]},
                                  {"question": "Who?", "colour": "red"}, {"question": "Who?", "top_k": 1.5}])
def test_bad_filters_in_a_body(client, body):
    error_of(client.post("/ask", json=body), 400)


# -- 405 and the body cap -----------------------------------------------------------------------

@pytest.mark.parametrize("method, path, allow", [
    ("PUT", "/ask", "POST"), ("GET", "/cite", "POST"), ("POST", "/health", "GET"),
    ("PATCH", "/articles/some-id", "DELETE, GET"), ("PUT", "/articles", "GET, POST"),
])
def test_a_wrong_method_gets_405_with_allow(client, method, path, allow):
    response = client.request(method, path)
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert response.headers["allow"] == allow


def test_bodies_over_the_cap_get_413(tmp_path, seed_index, encoder):
    engine = engine_with(tmp_path, seed_index, encoder, max_body_bytes=2000)
    with TestClient(create_app(engine)) as c:
        small = {"id": "s", "text": "A short article about the Zorblat bridge."}
        assert c.post("/articles", json=small).status_code == 201
        big = {"id": "b", "text": "word " * 500}
        assert error_of(c.post("/articles", json=big), 413)["code"] == "too_large"

        def chunks():  # no Content-Length: the body streams in, and is counted as it does
            yield b'{"id": "b", "text": "'
            for _ in range(100):
                yield b"word " * 10
            yield b'"}'

        streamed = c.post("/articles", content=chunks(), headers={"content-type": "application/json"})
        assert error_of(streamed, 413)["code"] == "too_large"
        assert c.get("/health").json()["articles"] == 6
    engine.close()


# -- the API key --------------------------------------------------------------------------------

def test_a_key_guards_every_call_but_health_and_the_page(tmp_path, seed_index, encoder):
    engine = engine_with(tmp_path, seed_index, encoder, api_key="s3cret")
    with TestClient(create_app(engine)) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        calls = [("GET", "/search?q=drones"), ("POST", "/ask"), ("POST", "/cite"), ("GET", "/articles"),
                 ("GET", "/sources"), ("GET", "/articles/002_3806188b7ba67ac3"), ("DELETE", "/articles/002_3806188b7ba67ac3"),
                 ("POST", "/articles"), ("GET", "/openapi.json"), ("GET", "/no/such/route")]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}):
            for method, path in calls:
                response = c.request(method, path, headers=headers, json={"question": "Who?"})
                assert error_of(response, 401)["code"] == "unauthorized", (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        assert c.get("/health").json()["articles"] == 5, "nothing was deleted"
        good = {"Authorization": "Bearer s3cret"}
        assert c.get("/search", params={"q": "drones"}, headers=good).status_code == 200
        assert c.get("/articles/002_3806188b7ba67ac3", headers={"authorization": "bearer s3cret"}).status_code == 200
        assert c.get("/openapi.json", headers=good).json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    engine.close()


def test_without_a_key_the_schema_declares_no_security(client):
    schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert all("security" not in op for ops in schema["paths"].values() for op in ops.values())
    assert all("422" not in op["responses"] for ops in schema["paths"].values() for op in ops.values())


@pytest.mark.parametrize("host, key, allow_open, refused", [
    ("127.0.0.1", "", False, False), ("localhost", "", False, False), ("::1", "", False, False),
    ("0.0.0.0", "", False, True), ("192.168.1.20", "", False, True), ("example.org", "", False, True), ("::", "", False, True),
    ("0.0.0.0", "k", False, False), ("0.0.0.0", "", True, False),
])
def test_the_service_refuses_to_listen_beyond_loopback_without_a_key(host, key, allow_open, refused):
    settings = Settings(host=host, api_key=key, allow_open=allow_open)
    if refused:
        with pytest.raises(BadInput, match="QA_API_KEY"):
            check_exposure(settings)
    else:
        check_exposure(settings)


def test_settings_read_the_new_variables():
    settings = Settings.from_env({"QA_API_KEY": "k", "QA_ALLOW_OPEN": "0", "QA_MAX_BODY_BYTES": "123"})
    assert (settings.api_key, settings.allow_open, settings.max_body_bytes) == ("k", False, 123)
    assert Settings.from_env({"QA_ALLOW_OPEN": "1"}).allow_open is True
    assert "hunter2" not in repr(dataclasses.replace(settings, api_key="hunter2")), "a logged Settings shows no key"
    with pytest.raises(BadInput):
        Settings.from_env({"QA_ALLOW_OPEN": "perhaps"})


@pytest.mark.parametrize("variable, value, message", [
    ("QA_PORT", "99999", "out of range"), ("QA_PORT", "-1", "out of range"), ("QA_PASSAGES", "0", "out of range"),
    ("QA_CANDIDATES", "0", "out of range"), ("QA_MAX_QUESTION_CHARS", "-1", "out of range"),
    ("QA_FUSION", "bad", "not one of convex, rrf"),
])
def test_settings_out_of_their_range_are_refused_where_they_are_read(variable, value, message):
    # Else they fail far from their cause: a port at bind, no passages as "no answer" to every
    # question, an unknown fusion read as reciprocal ranks.
    with pytest.raises(BadInput, match=f"{variable}='{value}' is {message}"):
        Settings.from_env({variable: value})
    assert Settings.from_env({"QA_PORT": "0", "QA_FUSION": "rrf", "QA_PASSAGES": "1"}).port == 0
    with pytest.raises(BadInput, match="QA_PASSAGES='0' is out of range"):
        dataclasses.replace(Settings(), passages=0)  # Python callers too


# -- the library's surface and the reference page -------------------------------------------------

def test_the_public_names_exist():
    assert {"Engine", "Settings", "Filters", "Answer", "Citation", "Passage", "Match", "Article"} <= set(qa.__all__)
    for name in qa.__all__:
        assert getattr(qa, name) is not None, name


def test_docs_api_md_is_up_to_date_with_the_schema():
    written = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    assert written == render(), "docs/API.md is out of date: run `python -m qa.apidoc > docs/API.md`"
    assert "../shared/CONTRACT.md" in written.split("## Endpoints")[0]
    for endpoint in ("POST /ask", "GET /search", "POST /cite", "GET /articles", "GET /sources",
                     "GET /articles/{article_id}", "POST /articles", "DELETE /articles/{article_id}", "GET /health"):
        assert f"### `{endpoint}`" in written
