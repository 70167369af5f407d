"""The HTML report in real headless Chromium: no console errors, expansion, numbers, screenshot.

Chromium is Debian's ``chromium`` package (``apt-get install -y chromium``); without it these
tests skip with that reason. The page is loaded from a file with ``#expand=<node id>``; its
script opens that node, and ``--dump-dom`` shows the DOM after the script ran. Console output
is read from Chromium's log (``--enable-logging=stderr``). The screenshot is saved to
``tests/observe/artifacts/report.png`` (ignored by git).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rlm_dsl.cli.main import main
from rlm_dsl.runtime.store.store import Store

ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-logging=stderr", "--v=0")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")


def _browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [_chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


class _Dom(HTMLParser):
    """Elements by id with their attributes, whether all enclosing <details> are open, text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.visible: dict[str, bool] = {}
        self.text: dict[str, list[str]] = {}
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        opened = all("open" in a for t, a in self.stack if t == "details")
        self.stack.append((tag, attributes))
        if "id" in attributes:
            key = attributes["id"] or ""
            self.by_id[key] = attributes
            self.visible[key] = opened and (tag != "details" or "open" in attributes)
            self.text[key] = []

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, attributes in self.stack:
            if attributes.get("id") in self.text:
                self.text[attributes["id"] or ""].append(data)


@pytest.fixture
def report(synthetic_db, tmp_path) -> tuple[Path, Path]:
    path, _ = synthetic_db
    html = tmp_path / "report.html"
    assert main(["trace", str(path), "--html", str(html)]) == 0
    return path, html


def test_report_loads_expands_and_matches_the_store(report, tmp_path) -> None:
    db, html = report
    target = "call-abcdef01-15"  # the depth-2 llm_query call inside the rlm_query child
    done = _browse(f"{html.as_uri()}#expand={target}", tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    dom = _Dom()
    dom.feed(done.stdout)
    assert dom.body.get("data-ready") == "1"
    assert "hidden" in dom.by_id["js-errors"] and "".join(dom.text["js-errors"]) == ""
    assert dom.visible[target]
    assert "DEEP question" in "".join(dom.text[target])
    assert not dom.visible["call-abcdef01-0"]  # nothing else was opened
    with Store.open(db) as store:
        totals = store.con.execute(
            "SELECT count(*) FILTER (WHERE NOT cached), sum(prompt_tokens + completion_tokens) "
            "FROM lm_calls").fetchone()
        per_step = store.con.execute(
            "SELECT step, count(*) FILTER (WHERE NOT cached), "
            "sum(prompt_tokens + completion_tokens) FROM lm_calls GROUP BY 1").fetchall()
    shown = dom.by_id["totals"]
    assert (int(shown["data-calls"] or -1), int(shown["data-tokens"] or -1)) == totals
    for step, calls, tokens in per_step:
        row = dom.by_id[f"bar-{step}"]
        assert (int(row["data-calls"] or -1), int(row["data-tokens"] or -1)) == (calls, tokens)
        assert f"{tokens}" in "".join(dom.text[f"bar-{step}"])
    assert "failed" in (dom.by_id["bar-map-notes"].get("class") or "")
    assert "failed" in (dom.by_id["map-notes"].get("class") or "")  # the tree node
    failed_boxes = re.findall(r'data-step="([^"]+)"><rect class="box failed"', done.stdout)
    assert failed_boxes == ["map-notes", "rlm-answer"]  # the plan graph, outlined in red


def test_report_screenshot_artifact(report, tmp_path) -> None:
    _, html = report
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = _browse(f"{html.as_uri()}#expand=rlm-answer.chunk-0.root.2.1.2.1", tmp_path / "p2",
                   "--window-size=1200,1800", f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 1800)
    print(f"screenshot: {shot}")


def test_report_of_a_real_run_expands_a_depth_two_call(real_run, tmp_path) -> None:
    with Store.open(real_run) as store:
        call_id, prompt = store.con.execute(
            "SELECT call_id, messages->>'$[0].content' FROM lm_calls WHERE depth = 2 "
            "ORDER BY started_at LIMIT 1").fetchone()
        calls = store.scalar("SELECT count(*) FILTER (WHERE NOT cached) FROM lm_calls")
    html = tmp_path / "real.html"
    assert main(["trace", str(real_run), "--html", str(html)]) == 0
    done = _browse(f"{html.as_uri()}#expand=call-{call_id}", tmp_path / "p3", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
    dom = _Dom()
    dom.feed(done.stdout)
    assert dom.body.get("data-ready") == "1" and "".join(dom.text["js-errors"]) == ""
    assert dom.visible[f"call-{call_id}"]
    assert prompt.splitlines()[0] in "".join(dom.text[f"call-{call_id}"])
    assert int(dom.by_id["totals"]["data-calls"] or -1) == calls  # cache hits are not calls
