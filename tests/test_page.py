"""The page at `/`, driven in headless Chromium (Selenium) against a real server.

uvicorn serves `create_app(engine)` from a background thread over a private copy of the seed
index; the browser asks, searches, looks up quotes, adds and deletes articles as a person would,
and every highlight is checked against the API's own offsets: the highlighted text is exactly
`article.text[start:end]` (Python's code-point slicing, emoji included).

Needs Debian's `chromium` and `chromium-driver`; without them the tests skip and say so.
`QA_PAGE_SCREENSHOTS=1` also writes the README's screenshots to docs/.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from qa import Engine
from qa.api import create_app

from .conftest import ROOT, make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Chromium not installed: apt-get install chromium chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install -e '.[test]'")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

WAIT = 30  # seconds; answers take well under one, but the machine may be busy
DRONES = "How many drones did Kyiv's defences shoot down?"
LAPTOP = (1280, 860)
PHONE = (390, 844)


@contextmanager
def serving(engine: Engine) -> Iterator[str]:
    """uvicorn serving `create_app(engine)` from a thread on a free loopback port; yields its URL."""
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture(scope="module")
def index_copy(tmp_path_factory, seed_index) -> Path:
    directory = tmp_path_factory.mktemp("page") / "index"
    shutil.copytree(seed_index, directory)
    return directory


@pytest.fixture(scope="module")
def server(index_copy, encoder):
    """The service over its own copy of the seed index (tests that add articles delete them)."""
    engine = Engine(make_settings(index_copy), encoder=encoder)
    with serving(engine) as url:
        yield url
    engine.close()


@pytest.fixture(scope="module")
def api(server):
    # No kept-alive connections: uvicorn closes idle ones after 5 s, and a request sent just then
    # would be reset.
    with httpx.Client(base_url=server, timeout=WAIT, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Without these Chromium stalls on a closed network (it tries to reach Google's services).
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", "--lang=en-GB",
                 f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    # The driver is given, so Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    """The page, freshly loaded at laptop size, with its article list shown."""
    browser.set_window_size(*LAPTOP)
    browser.get(server + "/")
    wait_for(browser, lambda d: d.execute_script("return Boolean(window.newsQA)"))
    return browser


def wait_for(driver, condition, timeout=WAIT):
    return WebDriverWait(driver, timeout).until(condition)


def run_query(driver, mode: str, text: str) -> None:
    """Choose the mode, type the text and press Enter; wait until the status reports."""
    driver.find_element(By.CSS_SELECTOR, f'input[name="mode"][value="{mode}"]').click()
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(text, Keys.ENTER)
    wait_for(driver, lambda d: d.find_element(By.ID, "results").get_attribute("aria-busy") is None
             and d.find_element(By.ID, "status").text and not d.find_element(By.ID, "status").text.endswith("…"))


def text_content(driver, selector: str) -> str:
    """The exact text of an element (textContent, not the rendered, white-space-folded text)."""
    return driver.execute_script("return document.querySelector(arguments[0]).textContent", selector)


def open_result(driver, index: int = 0) -> None:
    cards = driver.find_elements(By.CSS_SELECTOR, "#results .card")
    cards[index].find_element(By.CSS_SELECTOR, "button.open").click()
    wait_for(driver, expected_conditions.visibility_of_element_located((By.ID, "reader")))
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#article-text mark"))


def in_view(driver, selector: str) -> bool:
    """Whether the element is inside both the window and the article view's visible part."""
    return driver.execute_script(
        """const box = document.querySelector(arguments[0]).getBoundingClientRect();
           const view = document.getElementById('reader-body').getBoundingClientRect();
           return box.top >= Math.max(0, view.top) && box.bottom <= Math.min(window.innerHeight, view.bottom)
               && box.height > 0;""",
        selector,
    )


def save_screenshot(driver, name: str, tmp_path: Path) -> Path:
    """A PNG of the page; into docs/ when QA_PAGE_SCREENSHOTS=1 (for the README)."""
    folder = ROOT / "docs" if os.environ.get("QA_PAGE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path)), "no screenshot"
    assert path.stat().st_size > 10_000
    return path


# -- the tests --------------------------------------------------------------------------------


def test_page_is_served_with_its_files_and_no_outside_resources(server):
    page = httpx.get(server + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        response = httpx.get(f"{server}/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert "http://" not in response.text and "https://" not in response.text
    assert httpx.get(server + "/static/__init__.py").status_code == 404
    assert "http://" not in page.text and "https://" not in page.text.replace('placeholder="https://…"', "")


def test_ask_opens_the_cited_article_with_the_answer_highlighted_exactly(page, api, tmp_path):
    expected = api.post("/ask", json={"question": DRONES, "top_k": 3}).json()["answers"][0]
    run_query(page, "ask", DRONES)
    first = page.find_element(By.CSS_SELECTOR, "#results .answer")
    assert first.find_element(By.CSS_SELECTOR, ".answer-text").text == expected["text"] == "7"
    assert text_content(page, "#results .answer .sentence") == expected["context"]["text"]
    assert text_content(page, "#results .answer .sentence mark") == expected["text"]
    assert expected["citation"]["title"] in first.find_element(By.CSS_SELECTOR, ".meta").text

    open_result(page)
    citation, context = expected["citation"], expected["context"]
    article = api.get("/articles/" + citation["article_id"]).json()
    assert text_content(page, "#article-text") == article["text"]
    assert text_content(page, "#article-text mark") == article["text"][citation["start"]:citation["end"]] == "7"
    assert text_content(page, "#article-text .hl-context") == article["text"][context["start"]:context["end"]] == context["text"]
    assert len(page.find_elements(By.CSS_SELECTOR, "#article-text .hl-context mark")) == 1
    assert page.find_element(By.ID, "reader-title").text == article["title"]
    assert in_view(page, "#article-text mark") and in_view(page, "#article-text .hl-context")
    save_screenshot(page, "page.png", tmp_path)

    # Escape closes the article view and gives the focus back to the button that opened it.
    page.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_for(page, expected_conditions.invisibility_of_element_located((By.ID, "reader")))
    assert page.switch_to.active_element.text == "Open the article"

    # On a phone the article takes the whole screen, the answer still in view.
    page.set_window_size(*PHONE)
    open_result(page)
    assert in_view(page, "#article-text mark")
    save_screenshot(page, "page-phone.png", tmp_path)


def test_the_page_works_by_keyboard_alone(page):
    """Tab to the box, Enter asks, Tab reaches the answer's button (focus visible), Escape closes."""
    body = page.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert page.switch_to.active_element.text == "Skip to the question box"
    page.switch_to.active_element.send_keys(Keys.ENTER)
    assert page.switch_to.active_element.get_attribute("id") == "query"
    page.switch_to.active_element.send_keys("Who is the head of the SBU's cybersecurity department?", Keys.ENTER)
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .answer"))
    for _ in range(12):  # the submit button, the filters, then the first answer's button
        page.switch_to.active_element.send_keys(Keys.TAB)
        if page.switch_to.active_element.text == "Open the article":
            break
    focused = page.switch_to.active_element
    assert focused.text == "Open the article"
    assert page.execute_script("return getComputedStyle(arguments[0]).outlineStyle", focused) == "solid"
    focused.send_keys(Keys.ENTER)
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#article-text mark"))
    assert page.switch_to.active_element.get_attribute("id") == "reader-title"
    page.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_for(page, expected_conditions.invisibility_of_element_located((By.ID, "reader")))
    assert page.switch_to.active_element.text == "Open the article"


def test_search_shows_passages_best_first_and_opens_one(page, api):
    query = "Kyivstar cyber attack"
    expected = api.get("/search", params={"q": query, "k": 5}).json()["results"]
    run_query(page, "search", query)
    cards = page.find_elements(By.CSS_SELECTOR, "#results .passage")
    assert len(cards) == len(expected) >= 2
    assert [c.find_element(By.CSS_SELECTOR, ".title").text for c in cards] == [p["title"] for p in expected]
    scores = [float(c.find_element(By.CSS_SELECTOR, ".score").text.split()[-1]) for c in cards]
    assert scores == sorted(scores, reverse=True)
    assert "Kyivstar" in cards[0].text

    open_result(page, 0)
    best = expected[0]
    article = api.get("/articles/" + best["article_id"]).json()
    assert text_content(page, "#article-text mark") == article["text"][best["start"]:best["end"]] == best["text"]
    assert in_view(page, "#article-text mark") or page.execute_script(
        # a passage taller than the view: its start is in view
        "const b = document.querySelector('#article-text mark').getBoundingClientRect();"
        "return b.top >= 0 && b.top < window.innerHeight;")


def test_cite_finds_a_quote_with_other_typography_and_highlights_it(page, api):
    quote = "“Such terror continues every day and night,” Zelensky said in a post on Telegram."
    run_query(page, "cite", quote)
    first = page.find_element(By.CSS_SELECTOR, "#results .match")
    assert first.find_element(By.CSS_SELECTOR, ".kind").text.startswith("exact")
    match = api.post("/cite", json={"text": quote, "k": 5}).json()["matches"][0]
    assert match["kind"] == "exact"

    open_result(page, 0)
    article = api.get("/articles/" + match["article_id"]).json()
    marked = text_content(page, "#article-text mark")
    assert marked == article["text"][match["start"]:match["end"]] == match["text"]
    assert marked.startswith('"Such terror') and marked != quote  # the article's own typography
    assert in_view(page, "#article-text mark")


def test_no_answer_is_said_plainly_with_the_closest_passages(page):
    run_query(page, "ask", "Who won the 2022 FIFA World Cup?")
    assert page.find_element(By.CSS_SELECTOR, "#results .no-answer-title").text == "No answer found."
    assert page.find_element(By.ID, "status").text.startswith("No answer found.")
    assert not page.find_elements(By.CSS_SELECTOR, "#results .answer")
    assert page.find_elements(By.CSS_SELECTOR, "#results .passage")


def test_an_article_is_added_by_paste_and_deleted(page, api):
    article_id = "Page test: pasted (1)"  # spaces, a colon and brackets: encoded in the URL
    page.find_element(By.CSS_SELECTOR, "#add summary").click()
    page.find_element(By.ID, "add-id").send_keys(article_id)
    page.find_element(By.ID, "add-title").send_keys("Pasted article about lighthouses")
    page.find_element(By.ID, "add-source").send_keys("Page Test Wire")
    page.find_element(By.ID, "add-text").send_keys(
        "Pasted article about lighthouses\n\nThe Hook Head lighthouse has guided ships for 800 years.")
    page.find_element(By.CSS_SELECTOR, "#add-form button[type=submit]").click()
    wait_for(page, lambda d: d.find_element(By.ID, "library-status").text)
    assert "Added" in page.find_element(By.ID, "library-status").text, page.find_element(By.ID, "library-status").text
    try:
        assert api.get("/articles/" + quote_id(article_id)).json()["source"] == "Page Test Wire"
        # The list is redrawn after "Added" shows, by a request of its own (slower on Milvus).
        row = wait_for(page, lambda d: find_row(d, article_id, required=False))
        row.find_element(By.CSS_SELECTOR, "button.danger").click()
        alert = wait_for(page, expected_conditions.alert_is_present())
        assert article_id in alert.text
        alert.accept()
        wait_for(page, lambda d: "Deleted" in d.find_element(By.ID, "library-status").text)
        wait_for(page, lambda d: not find_row(d, article_id, required=False))
        assert api.get("/articles/" + quote_id(article_id)).status_code == 404
    finally:
        api.delete("/articles/" + quote_id(article_id))


def test_articles_are_uploaded_from_md_and_jsonl_files(page, api, tmp_path):
    """A .md file is one article named after the file; a .jsonl file is one article a line."""
    markdown = tmp_path / "page-upload-note.md"
    markdown.write_text("Harbour lights\n\nThe harbour lights were repaired on Tuesday.\n", encoding="utf-8")
    lines = tmp_path / "page-upload.jsonl"
    lines.write_text('{"id": "page-upload-a", "text": "First line article. It is short.", "source": "Upload Wire"}\n'
                     '\n{"id": "page-upload-b", "text": "Second line article. Also short."}\n', encoding="utf-8")
    page.find_element(By.CSS_SELECTOR, "#add summary").click()
    try:
        for path, expected in ((markdown, "page-upload-note"), (lines, "page-upload-b")):
            page.find_element(By.ID, "upload-file").send_keys(str(path))
            # The form shows once the details open, and is busy while an upload runs: wait until
            # its button takes a click (a click before that failed once: "element not interactable").
            submit = (By.CSS_SELECTOR, "#upload-form button[type=submit]")
            wait_for(page, expected_conditions.element_to_be_clickable(submit)).click()
            wait_for(page, lambda d: expected in d.find_element(By.ID, "library-status").text)
        stored = api.get("/articles/page-upload-note").json()
        assert stored["text"] == markdown.read_text(encoding="utf-8") and stored["title"] == "Harbour lights"
        assert api.get("/articles/page-upload-a").json()["source"] == "Upload Wire"
        assert api.get("/articles/page-upload-b").status_code == 200
    finally:
        for article_id in ("page-upload-note", "page-upload-a", "page-upload-b"):
            api.delete("/articles/" + article_id)


def test_filters_narrow_the_list(page, api):
    added = [
        {"id": "page-filter-a", "text": "Harbour news\n\nThe harbour reopened on Monday.", "published": "2001-02-03", "source": "Filter Test Daily"},
        {"id": "page-filter-b", "text": "Harbour news\n\nThe harbour closed on Friday.", "published": "2001-05-06", "source": "Filter Test Daily"},
    ]
    assert api.post("/articles", json={"articles": added}).status_code in (200, 201)
    try:
        page.refresh()
        wait_for(page, lambda d: "Filter Test Daily" in d.find_element(By.ID, "source").text)
        Select(page.find_element(By.ID, "source")).select_by_value("Filter Test Daily")
        wait_for(page, lambda d: listed_ids(d) == {"page-filter-a", "page-filter-b"})
        set_date(page, "published-to", "2001-03-31")
        wait_for(page, lambda d: listed_ids(d) == {"page-filter-a"})
        assert "1–1 of 1 article" in page.find_element(By.ID, "list-summary").text
        page.find_element(By.ID, "clear-filters").click()
        wait_for(page, lambda d: len(listed_ids(d)) > 2)
    finally:
        for article in added:
            api.delete("/articles/" + article["id"])


def test_questions_can_go_to_one_article_from_its_view(page, api):
    """Open an article from the list, ask about it only: a search keeps to it (article_ids)."""
    nato = "002_3806188b7ba67ac3"
    wait_for(page, lambda d: nato in listed_ids(d))
    find_row(page, nato).find_element(By.CSS_SELECTOR, "button.title").click()
    wait_for(page, expected_conditions.visibility_of_element_located((By.ID, "reader")))
    assert text_content(page, "#article-text") == api.get("/articles/" + nato).json()["text"]
    page.find_element(By.ID, "reader-only").click()
    wait_for(page, expected_conditions.invisibility_of_element_located((By.ID, "reader")))
    assert page.find_element(By.ID, "only-article").is_displayed()
    run_query(page, "search", "drones shot down")
    titles = {t.text for t in page.find_elements(By.CSS_SELECTOR, "#results .passage .title")}
    assert titles == {api.get("/articles/" + nato).json()["title"]}
    page.find_element(By.ID, "only-article-clear").click()
    run_query(page, "search", "drones shot down")
    titles = {t.text for t in page.find_elements(By.CSS_SELECTOR, "#results .passage .title")}
    assert len(titles) > 1


def test_an_emoji_before_the_answer_is_highlighted_exactly(page, api):
    text = ("Probe news 🚀🛰️\n\n"
            "Engineers 👩‍🚀 cheered 🎉🎉 at dawn. The Zorblax probe carried 42 sensors to the moon, "
            "the agency said. 😀 It weighs 900 kilograms.")
    article = {"id": "page-emoji", "title": "Probe news 🚀", "text": text, "source": "Emoji Test"}
    assert api.post("/articles", json=article).status_code in (200, 201)
    try:
        question = "How many sensors did the Zorblax probe carry?"
        expected = api.post("/ask", json={"question": question}).json()["answers"][0]
        assert expected["citation"]["article_id"] == "page-emoji" and expected["text"] == "42"
        # Offsets count code points: in UTF-16 this answer sits further on than its offset.
        start, end = expected["citation"]["start"], expected["citation"]["end"]
        assert len(text[:start].encode("utf-16-le")) // 2 > start
        run_query(page, "ask", question)
        open_result(page)
        assert text_content(page, "#article-text mark") == text[start:end] == "42"
        context = expected["context"]
        assert text_content(page, "#article-text .hl-context") == text[context["start"]:context["end"]]
        assert page.execute_script("return window.newsQA.slicePoints(arguments[0], arguments[1], arguments[2])",
                                   text, start, end) == "42"
    finally:
        api.delete("/articles/page-emoji")


def test_the_page_asks_for_the_api_key_and_remembers_it(browser, index_copy, encoder):
    """With QA_API_KEY set, the page asks for the key on the first 401, retries, and keeps it."""
    engine = Engine(make_settings(index_copy, api_key="page-test-key"), encoder=encoder)
    try:
        with serving(engine) as url:
            browser.set_window_size(*LAPTOP)
            browser.get(url + "/")
            key_field = wait_for(browser, expected_conditions.visibility_of_element_located((By.ID, "key")))
            assert "needs an API key" in browser.find_element(By.ID, "key-note").text
            assert browser.switch_to.active_element == key_field
            key_field.send_keys("a wrong key", Keys.ENTER)
            wait_for(browser, lambda d: "refused" in d.find_element(By.ID, "key-note").text)
            browser.find_element(By.ID, "key").send_keys("page-test-key", Keys.ENTER)
            wait_for(browser, lambda d: len(listed_ids(d)) == 5)
            assert not browser.find_element(By.ID, "key").is_displayed()
            browser.refresh()  # remembered: no question asked again
            wait_for(browser, lambda d: len(listed_ids(d)) == 5)
            assert not browser.find_element(By.ID, "key").is_displayed()
            browser.execute_script("localStorage.clear()")
    finally:
        engine.close()


def test_offsets_convert_from_code_points_like_python(page):
    samples = ["plain", "a😀b", "👩‍🚀 x 🎉🎉 y", "é and e\u0301", "\U0001f600" * 5 + "end"]
    for sample in samples:
        for start in range(len(sample) + 1):
            for end in range(start, len(sample) + 1, 2):
                got = page.execute_script("return window.newsQA.slicePoints(arguments[0], arguments[1], arguments[2])",
                                          sample, start, end)
                assert got == sample[start:end], (sample, start, end)


# -- helpers of the tests above -----------------------------------------------------------------


def quote_id(article_id: str) -> str:
    from urllib.parse import quote

    return quote(article_id, safe="")


def listed_ids(driver) -> set[str]:
    # In one script: the list may be redrawn between finding rows and reading them.
    return set(driver.execute_script(
        "return Array.from(document.querySelectorAll('#article-list li'), row => row.dataset.id)"))


def find_row(driver, article_id: str, required: bool = True):
    """The list row of an article, paging on until it is found."""
    for _ in range(20):
        # The page redraws its list after a change has been reported: wait until it has.
        wait_for(driver, lambda d: d.find_element(By.ID, "article-list").get_attribute("aria-busy") != "true")
        row = driver.execute_script(
            "return Array.from(document.querySelectorAll('#article-list li')).find(row => row.dataset.id === arguments[0])"
            " || null", article_id)
        if row:
            return row
        forward = driver.find_element(By.ID, "next-page")
        if not forward.is_enabled():
            break
        summary = driver.find_element(By.ID, "list-summary").text
        forward.click()
        wait_for(driver, lambda d: d.find_element(By.ID, "list-summary").text != summary)
    if required:
        raise AssertionError(f"{article_id!r} is not in the list")
    return None


def set_date(driver, element_id: str, iso: str) -> None:
    """Set a date field as picking a date does (typing into one depends on the locale)."""
    driver.execute_script(
        "const field = document.getElementById(arguments[0]); field.value = arguments[1];"
        "field.dispatchEvent(new Event('change', {bubbles: true}));",
        element_id, iso,
    )
