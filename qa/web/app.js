// The News QA page: asks, searches and looks up quotes through the service's HTTP API.
// No build step and no dependencies. Text from the service is only ever set as textContent,
// never as HTML, so an article cannot inject markup or script into the page.
"use strict";

(() => {
  const KEY_STORAGE = "newsqa.apiKey";
  const PAGE_SIZE = 10;
  const ANSWERS = 3;
  const PASSAGES = 5;
  const CLOSEST = 3;

  const $ = (id) => document.getElementById(id);

  const MODES = {
    ask: {
      label: "Question", button: "Ask",
      placeholder: "How many drones did Kyiv's defences shoot down?",
      hint: "Ask a question in plain words; the answer is quoted from an article.",
    },
    search: {
      label: "Search for", button: "Search",
      placeholder: "Kyivstar cyber attack",
      hint: "Passages of the articles, best first.",
    },
    cite: {
      label: "Quote or claim", button: "Look up",
      placeholder: "One person was killed and three others were injured",
      hint: "Where the articles say this: the same words, nearly the same words, or the same statement.",
    },
  };

  const state = {
    run: 0,            // the latest query; answers to older ones are dropped
    listOffset: 0,
    listRun: 0,
    opener: null,      // the element that opened the article view, focused again on close
    shown: null,       // the article in the view: {id, title}
    openRun: 0,        // the latest article asked for; a slower earlier one is not shown
    only: null,        // questions go to this article only: {id, title}
    keyWaiters: null,  // pending calls waiting for an API key
    sessionKey: "",    // the key, when localStorage cannot keep it
  };

  // -- offsets ---------------------------------------------------------------------------------
  // The service's offsets count code points (Python string indices); JavaScript strings index
  // UTF-16 code units, where a character outside the BMP (an emoji) takes two.

  /** The UTF-16 index in `text` of code point offset `point`. */
  function utf16Index(text, point) {
    let index = 0;
    for (let seen = 0; seen < point && index < text.length; seen++) {
      index += text.codePointAt(index) > 0xffff ? 2 : 1;
    }
    return index;
  }

  /** `text[start:end]` as Python would slice it (code point offsets). */
  function slicePoints(text, start, end) {
    return text.slice(utf16Index(text, start), utf16Index(text, end));
  }

  /**
   * Fill `container` with `text`, the span `outer` (code points) wrapped in a highlighted
   * span and `inner` in a <mark> (inside `outer` when it lies within it). Returns the element
   * to bring into view.
   */
  function renderHighlighted(container, text, { outer = null, inner = null } = {}) {
    container.replaceChildren();
    const at = (point) => utf16Index(text, point);
    const mark = (start, end) => {
      const element = document.createElement("mark");
      element.textContent = text.slice(start, end);
      return element;
    };
    if (outer && inner && inner[0] >= outer[0] && inner[1] <= outer[1]) {
      const [os, oe, is, ie] = [at(outer[0]), at(outer[1]), at(inner[0]), at(inner[1])];
      const span = document.createElement("span");
      span.className = "hl-context";
      span.append(text.slice(os, is), mark(is, ie), text.slice(ie, oe));
      container.append(text.slice(0, os), span, text.slice(oe));
      return span.querySelector("mark");
    }
    const only = inner || outer;
    if (!only) {
      container.textContent = text;
      return null;
    }
    const [start, end] = [at(only[0]), at(only[1])];
    let element;
    if (inner) {
      element = mark(start, end);
    } else {
      element = document.createElement("span");
      element.className = "hl-context";
      element.textContent = text.slice(start, end);
    }
    container.append(text.slice(0, start), element, text.slice(end));
    return element;
  }

  // -- the API ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function storedKey() {
    try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }

  function storeKey(key) {
    try { localStorage.setItem(KEY_STORAGE, key); } catch { /* private mode: keep it for this page only */ }
    state.sessionKey = key;
  }

  /** Call the API; on 401 ask for the key (once for all waiting calls) and try again. */
  async function api(path, { method = "GET", body } = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const key = storedKey() || state.sessionKey;
      if (key) headers.Authorization = `Bearer ${key}`;
      let response;
      try {
        response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch {
        throw new ApiError(0, "unreachable", "The service cannot be reached. Is it running?");
      }
      if (response.status === 401 && attempt < 5) {
        await askForKey(key ? "That key was refused. Enter the service's API key." : "This service needs an API key.");
        continue;
      }
      const payload = await response.json().catch(() => null);
      if (!response.ok) {
        const error = (payload && payload.error) || {};
        throw new ApiError(response.status, error.code || "http_error", error.message || `The service answered ${response.status}.`);
      }
      return { status: response.status, body: payload };
    }
  }

  function askForKey(message) {
    if (!state.keyWaiters) {
      state.keyWaiters = [];
      $("key-note").textContent = message;
      $("key-form").hidden = false;
      $("key").focus();
    }
    return new Promise((resolve) => state.keyWaiters.push(resolve));
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    storeKey(key);
    $("key").value = "";
    $("key-form").hidden = true;
    const waiters = state.keyWaiters || [];
    state.keyWaiters = null;
    waiters.forEach((resolve) => resolve());
  });

  /** The filters of asks, searches and lookups; the article list takes all but `article_ids`. */
  function filters({ forList = false } = {}) {
    const chosen = {};
    if ($("published-from").value) chosen.published_from = $("published-from").value;
    if ($("published-to").value) chosen.published_to = $("published-to").value;
    if ($("source").value) chosen.source = $("source").value;
    if (state.only && !forList) chosen.article_ids = [state.only.id];
    return chosen;
  }

  /** A query string; a list is the parameter repeated (`article_ids=a&article_ids=b`). */
  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      for (const one of Array.isArray(value) ? value : [value]) search.append(name, String(one));
    }
    return search.toString();
  }

  // -- small DOM helpers -----------------------------------------------------------------------

  function element(tag, { className, text, attrs } = {}, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  function formatDate(iso) {
    const parts = /^(\d{4})-(\d{2})-(\d{2})/.exec(iso || "");
    if (!parts) return iso || "";
    const date = new Date(Date.UTC(+parts[1], +parts[2] - 1, +parts[3]));
    return date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });
  }

  /** "Title · 7 Nov 2023 · RTE.ie": what is known of an article, as a line of text. */
  function metaLine(info, { withTitle = true } = {}) {
    const line = element("p", { className: "meta" });
    const parts = [];
    if (withTitle) parts.push(element("span", { className: "title", text: info.title || info.article_id || info.id }));
    if (info.published) parts.push(element("time", { text: formatDate(info.published), attrs: { datetime: info.published } }));
    if (info.source) parts.push(element("span", { className: "source", text: info.source }));
    parts.forEach((part, index) => line.append(...(index ? [" · ", part] : [part])));
    return line;
  }

  /** A safe link: only http(s) addresses from article data become links. */
  function safeUrl(url) {
    try {
      const parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  function shorten(text, points = 320) {
    const characters = Array.from(text);
    return characters.length <= points ? text : `${characters.slice(0, points).join("").trimEnd()} …`;
  }

  function say(id, message, { error = false } = {}) {
    const line = $(id);
    line.textContent = message;
    line.classList.toggle("error", error);
  }

  function plural(count, one, many) {
    return `${count} ${count === 1 ? one : many}`;
  }

  // -- modes -----------------------------------------------------------------------------------

  function currentMode() {
    return document.querySelector('input[name="mode"]:checked').value;
  }

  function showMode() {
    const mode = MODES[currentMode()];
    $("query-label").textContent = mode.label;
    $("query-submit").textContent = mode.button;
    $("query").placeholder = mode.placeholder;
    $("query-hint").textContent = mode.hint;
  }

  document.querySelectorAll('input[name="mode"]').forEach((radio) => radio.addEventListener("change", showMode));

  // -- ask, search, cite -----------------------------------------------------------------------

  $("query-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("query").value.trim();
    if (!text) {
      say("status", "Type something to ask, search or look up first.");
      $("query").focus();
      return;
    }
    const mode = currentMode();
    const run = ++state.run;
    const results = $("results");
    results.setAttribute("aria-busy", "true");
    say("status", { ask: "Reading the articles…", search: "Searching…", cite: "Looking for the quote…" }[mode]);
    try {
      let view;
      if (mode === "ask") view = await ask(text);
      else if (mode === "search") view = await search(text);
      else view = await cite(text);
      if (run !== state.run) return;
      results.replaceChildren(...view.nodes);
      say("status", view.message);
    } catch (error) {
      if (run !== state.run) return;
      results.replaceChildren();
      say("status", error.message, { error: true });
    } finally {
      if (run === state.run) results.removeAttribute("aria-busy");
    }
  });

  async function ask(question) {
    const { body } = await api("/ask", { method: "POST", body: { question, top_k: ANSWERS, ...filters() } });
    if (body.answers.length) {
      const list = element("ol", { className: "cards answers" }, ...body.answers.map(answerCard));
      return { nodes: [list], message: body.answers.length === 1 ? "1 answer." : `${body.answers.length} answers, best first.` };
    }
    // No answer: say so plainly, and offer the closest passages to read instead.
    let passages = [];
    try {
      ({ body: { results: passages } } = await api(`/search?${query({ q: question, k: CLOSEST, ...filters() })}`));
    } catch { /* the note stands on its own */ }
    const note = element("div", { className: "no-answer" },
      element("p", { className: "no-answer-title", text: "No answer found." }),
      element("p", { text: passages.length
        ? "None of the articles states an answer to this question. These passages come closest:"
        : "None of the articles states an answer to this question." }));
    if (!passages.length) return { nodes: [note], message: "No answer found." };
    const list = element("ol", { className: "cards passages" }, ...passages.map(passageCard));
    return { nodes: [note, list], message: `No answer found. The ${plural(passages.length, "closest passage is", "closest passages are")} offered.` };
  }

  function answerCard(answer) {
    const { citation, context } = answer;
    const sentence = element("blockquote", { className: "sentence" });
    renderHighlighted(sentence, context.text, {
      inner: [citation.start - context.start, citation.end - context.start],
    });
    const open = element("button", { className: "open", text: "Open the article", attrs: { type: "button" } });
    open.addEventListener("click", () => openArticle(citation.article_id, {
      outer: [context.start, context.end], inner: [citation.start, citation.end],
      legend: "The answer is marked, inside its highlighted sentence.",
    }, open));
    return element("li", { className: "card answer" },
      element("p", { className: "answer-text", text: answer.text }),
      sentence,
      metaLine({ ...citation }),
      element("div", { className: "card-foot" }, open, element("span", { className: "score", text: `score ${answer.score.toFixed(2)}` })));
  }

  async function search(text) {
    const { body } = await api(`/search?${query({ q: text, k: PASSAGES, ...filters() })}`);
    const list = element("ol", { className: "cards passages" }, ...body.results.map(passageCard));
    return { nodes: [list], message: body.results.length ? `${plural(body.results.length, "passage", "passages")}, best first.` : "No passages found." };
  }

  function passageCard(passage) {
    const open = element("button", { className: "open", text: "Open the article", attrs: { type: "button" } });
    open.addEventListener("click", () => openArticle(passage.article_id, {
      inner: [passage.start, passage.end], legend: "The passage is marked.",
    }, open));
    return element("li", { className: "card passage" },
      metaLine(passage),
      element("p", { className: "passage-text", text: shorten(passage.text) }),
      element("div", { className: "card-foot" }, open, element("span", { className: "score", text: `score ${passage.score.toFixed(3)}` })));
  }

  const KINDS = {
    exact: "the same words",
    near: "nearly the same words",
    semantic: "the same statement in other words",
  };

  async function cite(text) {
    const { body } = await api("/cite", { method: "POST", body: { text, k: PASSAGES, ...filters() } });
    const list = element("ol", { className: "cards matches" }, ...body.matches.map(matchCard));
    return { nodes: [list], message: body.matches.length ? `${plural(body.matches.length, "match", "matches")}, best first.` : "No article says this." };
  }

  function matchCard(match) {
    const open = element("button", { className: "open", text: "Open the article", attrs: { type: "button" } });
    open.addEventListener("click", () => openArticle(match.article_id, {
      inner: [match.start, match.end], legend: `The match (${KINDS[match.kind] || match.kind}) is marked.`,
    }, open));
    return element("li", { className: `card match kind-${match.kind}` },
      element("p", { className: "kind", text: `${match.kind}: ${KINDS[match.kind] || ""}` }),
      element("blockquote", { className: "sentence" }, element("mark", { text: match.text })),
      metaLine(match),
      element("div", { className: "card-foot" }, open, element("span", { className: "score", text: `score ${match.score.toFixed(2)}` })));
  }

  // -- the article view ------------------------------------------------------------------------

  async function openArticle(articleId, { outer = null, inner = null, legend = "" } = {}, opener = null) {
    const run = ++state.openRun;
    let article;
    try {
      ({ body: article } = await api(`/articles/${encodeURIComponent(articleId)}`));
    } catch (error) {
      if (run === state.openRun) say("status", error.message, { error: true });
      return;
    }
    if (run !== state.openRun) return;
    state.opener = opener || document.activeElement;
    state.shown = { id: article.id, title: article.title || article.id };
    const reader = $("reader");
    $("reader-title").textContent = article.title || article.id;
    const meta = metaLine(article, { withTitle: false });
    const url = article.url && safeUrl(article.url);
    if (url) {
      const link = element("a", { text: "original", attrs: { href: url, rel: "noopener noreferrer", target: "_blank" } });
      meta.append(...(meta.childNodes.length ? [" · ", link] : [link]));
    }
    meta.append(...(meta.childNodes.length ? [" · "] : []), element("span", { className: "id", text: article.id }));
    $("reader-meta").replaceWith(Object.assign(meta, { id: "reader-meta" }));
    $("reader-legend").textContent = legend;
    const target = renderHighlighted($("article-text"), article.text, { outer, inner });
    reader.hidden = false;
    document.body.classList.add("reading");
    // Where the view covers the whole page (a phone), what is behind it takes no focus.
    const covers = window.matchMedia("(max-width: 64rem)").matches;
    for (const behind of document.querySelectorAll(".top, .layout, .skip")) behind.inert = covers;
    $("reader-title").focus({ preventScroll: true });
    // Scroll the article (not the page behind it) to put the highlight in the middle of the view.
    const body = $("reader-body");
    body.scrollTop = 0;
    if (target) {
      const view = body.getBoundingClientRect();
      const spot = target.getBoundingClientRect();
      // A highlight taller than the view (a long passage) starts near its top instead.
      const margin = spot.height < view.height * 0.7 ? (view.height - spot.height) / 2 : view.height * 0.15;
      body.scrollTop = Math.max(0, spot.top - view.top - margin);
    }
  }

  function closeArticle() {
    if ($("reader").hidden) return;
    $("reader").hidden = true;
    document.body.classList.remove("reading");
    for (const behind of document.querySelectorAll(".top, .layout, .skip")) behind.inert = false;
    const opener = state.opener;
    state.opener = null;
    if (opener && document.contains(opener)) opener.focus();
  }

  $("reader-close").addEventListener("click", closeArticle);

  function askOnly(article) {
    state.only = article;
    $("only-article-title").textContent = article ? article.title : "";
    $("only-article").hidden = !article;
  }

  $("reader-only").addEventListener("click", () => {
    askOnly(state.shown);
    state.opener = $("query");
    closeArticle();
    say("status", `Questions, searches and lookups now go to “${state.only.title}” only.`);
  });
  $("only-article-clear").addEventListener("click", () => {
    askOnly(null);
    say("status", "Questions, searches and lookups go to all articles again.");
    $("query").focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("reader").hidden) {
      event.preventDefault();
      closeArticle();
    }
  });

  // -- the article list ------------------------------------------------------------------------

  async function loadList() {
    const run = ++state.listRun;
    const list = $("article-list");
    list.setAttribute("aria-busy", "true");
    try {
      const { body } = await api(`/articles?${query({ limit: PAGE_SIZE, offset: state.listOffset, ...filters({ forList: true }) })}`);
      if (run !== state.listRun) return;
      if (!body.articles.length && body.total && state.listOffset) {
        // The page emptied (a delete): show the last page that has articles.
        state.listOffset = Math.max(0, Math.floor((body.total - 1) / PAGE_SIZE) * PAGE_SIZE);
        return loadList();
      }
      list.replaceChildren(...body.articles.map(articleRow));
      const first = body.total ? body.offset + 1 : 0;
      const last = body.offset + body.articles.length;
      const filtered = Object.keys(filters({ forList: true })).length ? " (filtered)" : "";
      $("list-summary").textContent = body.total
        ? `${first}–${last} of ${plural(body.total, "article", "articles")}${filtered}`
        : `No articles${filtered}.`;
      $("prev-page").disabled = body.offset <= 0;
      $("next-page").disabled = last >= body.total;
      $("pager").hidden = body.total <= PAGE_SIZE && body.offset === 0;
    } catch (error) {
      if (run !== state.listRun) return;
      list.replaceChildren();
      $("list-summary").textContent = "";
      say("library-status", error.status === 404 || error.status === 405
        ? "This service cannot list its articles (it needs a newer version)."
        : error.message, { error: true });
    } finally {
      if (run === state.listRun) list.removeAttribute("aria-busy");
    }
  }

  function articleRow(article) {
    const title = element("button", { className: "link title", text: article.title || article.id, attrs: { type: "button" } });
    title.addEventListener("click", () => openArticle(article.id, {}, title));
    const remove = element("button", {
      className: "quiet danger", text: "Delete",
      attrs: { type: "button", "aria-label": `Delete “${article.title || article.id}”` },
    });
    remove.addEventListener("click", () => deleteArticle(article));
    const meta = metaLine(article, { withTitle: false });
    const chunks = typeof article.chunks === "number" ? plural(article.chunks, "passage", "passages") : null;
    for (const part of [chunks, article.id]) {
      if (part === null) continue;
      meta.append(...(meta.childNodes.length ? [" · "] : []), element("span", { text: part }));
    }
    return element("li", { className: "article-row", attrs: { "data-id": article.id } },
      element("div", { className: "row-main" }, title, meta), remove);
  }

  async function deleteArticle(article) {
    const name = article.title || article.id;
    if (!window.confirm(`Delete “${name}” (${article.id})? This cannot be undone.`)) return;
    try {
      await api(`/articles/${encodeURIComponent(article.id)}`, { method: "DELETE" });
      say("library-status", `Deleted “${name}”.`);
      refresh();
      $("article-list").focus();
    } catch (error) {
      say("library-status", error.message, { error: true });
    }
  }

  $("prev-page").addEventListener("click", () => {
    state.listOffset = Math.max(0, state.listOffset - PAGE_SIZE);
    loadList();
  });
  $("next-page").addEventListener("click", () => {
    state.listOffset += PAGE_SIZE;
    loadList();
  });

  async function loadSources() {
    const select = $("source");
    try {
      const { body } = await api("/sources");
      const chosen = select.value;
      const options = body.sources.map(({ source, articles }) =>
        element("option", { text: `${source} (${articles})`, attrs: { value: source } }));
      select.replaceChildren(element("option", { text: "any source", attrs: { value: "" } }), ...options);
      select.value = body.sources.some(({ source }) => source === chosen) ? chosen : "";
    } catch { /* an older service without /sources: "any source" only */ }
  }

  async function loadCounts() {
    try {
      const { body } = await api("/health");
      $("counts").textContent = `${plural(body.articles, "article", "articles")} · ${plural(body.chunks, "passage", "passages")}`;
    } catch { $("counts").textContent = ""; }
  }

  function refresh() {
    loadList();
    loadSources();
    loadCounts();
  }

  for (const id of ["published-from", "published-to", "source"]) {
    $(id).addEventListener("change", () => {
      state.listOffset = 0;
      loadList();
    });
  }
  $("clear-filters").addEventListener("click", () => {
    askOnly(null);
    $("published-from").value = "";
    $("published-to").value = "";
    $("source").value = "";
    state.listOffset = 0;
    loadList();
  });

  // -- adding articles -------------------------------------------------------------------------

  async function addArticles(payload, what) {
    try {
      const { body } = await api("/articles", { method: "POST", body: payload });
      const added = body.added || [];
      const replaced = body.replaced || [];
      const parts = [];
      if (added.length) parts.push(`added ${added.map((id) => `“${id}”`).join(", ")}`);
      if (replaced.length) parts.push(`replaced ${replaced.map((id) => `“${id}”`).join(", ")}`);
      const passages = typeof body.chunks === "number" ? ` (${plural(body.chunks, "passage", "passages")})` : "";
      const done = parts.join("; ") || `stored ${what}`;
      say("library-status", `${done[0].toUpperCase()}${done.slice(1)}${passages}.`);
      refresh();
      return true;
    } catch (error) {
      say("library-status", `Could not add ${what}: ${error.message}`, { error: true });
      return false;
    }
  }

  $("add-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const article = { id: form.elements.id.value.trim(), text: form.elements.text.value };
    for (const name of ["title", "published", "source", "url"]) {
      const value = form.elements[name].value.trim();
      if (value) article[name] = value;
    }
    if (!article.id || !article.text.trim()) {
      say("library-status", "An article needs an id and a text.", { error: true });
      return;
    }
    if (await addArticles(article, `“${article.id}”`)) form.reset();
  });

  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("upload-file").files[0];
    if (!file) return;
    const name = file.name;
    const extension = (/\.([^.]+)$/.exec(name) || [, ""])[1].toLowerCase();
    let text;
    try { text = await file.text(); } catch {
      say("library-status", `Could not read ${name}.`, { error: true });
      return;
    }
    let payload;
    if (extension === "txt" || extension === "md") {
      payload = { id: name.replace(/\.[^.]+$/, ""), text };
    } else if (extension === "jsonl") {
      const articles = [];
      const lines = text.split(/\r?\n/);
      for (let index = 0; index < lines.length; index++) {
        if (!lines[index].trim()) continue;
        try {
          articles.push(JSON.parse(lines[index]));
        } catch {
          say("library-status", `${name}, line ${index + 1}: not a JSON object.`, { error: true });
          return;
        }
      }
      if (!articles.length) {
        say("library-status", `${name} holds no articles.`, { error: true });
        return;
      }
      payload = { articles };
    } else {
      say("library-status", `${name}: upload a .txt, .md or .jsonl file.`, { error: true });
      return;
    }
    if (await addArticles(payload, name)) event.target.reset();
  });

  // -- start -----------------------------------------------------------------------------------

  showMode();
  refresh();

  // For the browser tests: the offset conversion, checked against Python's own slicing.
  window.newsQA = Object.freeze({ utf16Index, slicePoints });
})();
