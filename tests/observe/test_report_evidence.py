"""The HTML report links answer → evidence rows → chunk text, all inside the one file.

Runs real recipes with the deterministic test LM (``--lm test``), writes ``rlm trace --html``
and checks the page against the store: every row of the output's ``evidence`` column is a
row of the page, cited ``source:line`` as ``rlm run`` prints it, and links to an anchor on the
page holding that chunk's text with its line numbers.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from rlm_dsl.runtime.store.store import Store


class _Page(HTMLParser):
    """Ids with their text, evidence rows with their link, and every href/src on the page."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str | None] = []
        self.text: dict[str, list[str]] = {}
        self.rows: list[dict[str, str | None]] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.urls += [v or "" for k, v in attrs if k in ("href", "src")]
        if "evidence-row" in (a.get("class") or ""):
            self.rows.append({"id": a.get("id"), "row": a.get("data-row"), "href": None})
        if tag == "a" and self.rows and self.rows[-1]["href"] is None and self._in_row():
            self.rows[-1]["href"] = a.get("href")
        self.open.append(a.get("id"))
        if a.get("id"):
            self.text[a["id"] or ""] = []

    def _in_row(self) -> bool:
        return self.rows[-1]["id"] in self.open

    def handle_endtag(self, tag: str) -> None:
        if self.open:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        for key in self.open:
            if key in self.text:
                self.text[key].append(data)

    def of(self, key: str) -> str:
        return "".join(self.text[key])


def _report(evidence_run, text: str) -> tuple[_Page, list[dict], Path]:
    db, html, _ = evidence_run(text)
    with Store.open(db) as store:
        table = store.scalar("SELECT table_name FROM information_schema.columns "
                             "WHERE column_name = 'evidence'")
        evidence = store.rows(table, order_by=None)[0]["evidence"]
    page = _Page()
    page.feed(html.read_text(encoding="utf-8"))
    return page, evidence, html


def test_the_answer_cites_its_row_and_links_to_the_chunk_text(evidence_run, find_spec,
                                                              items) -> None:
    page, evidence, html = _report(evidence_run, find_spec)
    assert '["item 17 ok"]' in page.of("answer-answer")
    assert evidence == [{"id": 1, "source": str(items), "first_line": 11, "last_line": 20,
                         "line": 18}]
    assert page.rows == [{"id": "ev-answer-1", "row": "1", "href": "#text-parts-1"}]
    assert f"[1]{items}:18" in re.sub(r"\s", "", page.of("ev-answer-1"))  # as rlm run prints
    chunk = page.of("text-parts-1")
    assert f"{items}:11-20" in chunk
    assert "18item 17 ok" in chunk and "11item 10 ok" in chunk and "21item" not in chunk
    assert 'class="ln cited">18<' in html.read_text()
    assert [u for u in page.urls if not u.startswith("#")] == []  # nothing from anywhere else


def test_every_voting_row_is_on_the_page_and_links_to_its_own_chunk(evidence_run, vote_spec,
                                                                    items) -> None:
    page, evidence, _ = _report(evidence_run, vote_spec)
    assert len(evidence) > 1
    assert [r["row"] for r in page.rows] == [str(row["id"]) for row in evidence]
    for shown, row in zip(page.rows, evidence, strict=True):
        target = (shown["href"] or "#")[1:]
        assert target in page.text, f"link {shown['href']} has no anchor"
        first, last = row["first_line"], row["last_line"]
        chunk = page.of(target)
        assert f"{items}:{first}-{last}" in chunk
        lines = items.read_text().splitlines()[first - 1:last]
        assert all(f"{first + k}{line}" in chunk for k, line in enumerate(lines))


def test_a_step_without_evidence_shows_no_rows(evidence_run, find_spec) -> None:
    page, evidence, _ = _report(evidence_run, find_spec.replace("item 17 ", "zebra"))
    assert evidence == []
    assert page.rows == [] and "no evidence rows" in page.of("answer-answer")
