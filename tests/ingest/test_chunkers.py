"""Chunking: every strategy with exact expectations, coverage, overlap, token counts, errors."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm_dsl.errors import InputError, SpecError, StepFailed
from rlm_dsl.runtime.ingest import chunkers, rowchunks
from rlm_dsl.runtime.ingest.chunkers import chunk
from rlm_dsl.runtime.ingest.inputs import load_input
from rlm_dsl.runtime.lm.tokens import TokenCounter
from rlm_dsl.runtime.store.store import Store
from tests.ingest.conftest import ESTIMATE, chunk_step, input_step

Write = Callable[[str, str | bytes], str]


def lines_table(store: Store, sources: dict[str, list[str]], table: str = "x") -> None:
    """A line-input table built directly (no files): ids dense, offsets per source."""
    rows, next_id = [], 0
    for source, lines in sources.items():
        offset = 0
        for number, text in enumerate(lines, start=1):
            rows.append(
                {
                    "id": next_id,
                    "source": source,
                    "line_no": number,
                    "byte_offset": offset,
                    "text": text,
                }
            )
            offset += len(text.encode()) + 1
            next_id += 1
    store.con.execute(
        f"CREATE OR REPLACE TABLE {table} (id BIGINT, source VARCHAR, line_no BIGINT, "
        "byte_offset BIGINT, text VARCHAR)"
    )
    store.insert_rows(table, rows)


def run(store: Store, strategy: str, *args: object, source: str = "x", **options: object):
    chunk(store, chunk_step(strategy, *args, source=source, **options), source, ESTIMATE)
    return store.rows("c")


def spans(rows: list[dict]) -> list[tuple]:
    return [(r["id"], r["source"], r["first_line"], r["last_line"], r["n_rows"]) for r in rows]


def test_lines_without_overlap(store: Store) -> None:
    lines_table(store, {"a": [f"a{i}" for i in range(1, 8)], "b": ["b1", "b2"]})
    rows = run(store, "lines", 3)
    assert spans(rows) == [
        (0, "a", 1, 3, 3),
        (1, "a", 4, 6, 3),
        (2, "a", 7, 7, 1),
        (3, "b", 1, 2, 2),
    ]
    assert rows[1]["text"] == "a4\na5\na6"
    assert (rows[1]["start_byte"], rows[1]["end_byte"]) == (9, 17)
    assert [r["n_tokens"] for r in rows] == [2, 2, 1, 2]  # ceil(8 / 4), ..., ceil(5 / 4)
    assert [r["key"] for r in rows] == [None] * 4


def test_lines_with_overlap(store: Store) -> None:
    lines_table(store, {"a": [f"l{i}" for i in range(1, 11)]})
    rows = run(store, "lines", 4, overlap=2)
    assert [(r["first_line"], r["last_line"]) for r in rows] == [(1, 4), (3, 6), (5, 8), (7, 10)]
    assert rows[3]["text"] == "l7\nl8\nl9\nl10"


def test_records_is_lines_over_rows(store: Store, write: Write) -> None:
    load_input(
        store, input_step("jsonl"), write("r.jsonl", "".join(f'{{"q": {i}}}\n' for i in range(5)))
    )
    rows = run(store, "records", 2, overlap=1)
    assert [(r["first_line"], r["last_line"]) for r in rows] == [(1, 2), (2, 3), (3, 4), (4, 5)]
    assert rows[0]["text"] == '{"q":0}\n{"q":1}'


def test_filtered_source_with_gaps_in_ids(store: Store) -> None:
    lines_table(store, {"a": [f"l{i}" for i in range(1, 10)]})
    store.create_table_as("kept", "SELECT * FROM x WHERE line_no % 3 <> 0")
    rows = run(store, "lines", 4, source="kept")
    assert [(r["first_line"], r["last_line"], r["text"]) for r in rows] == [
        (1, 5, "l1\nl2\nl4\nl5"),
        (7, 8, "l7\nl8"),
    ]


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=60),
    n=st.integers(1, 12),
    overlap_share=st.floats(0, 0.95),
)
def test_line_windows_cover_every_line_in_order(
    lengths: list[int], n: int, overlap_share: float
) -> None:
    overlap = min(n - 1, int(n * overlap_share))
    with Store.open(None) as store:
        lines_table(store, {"s": [f"{i}:" + "x" * k for i, k in enumerate(lengths)]})
        rows = run(store, "lines", n, overlap=overlap)
    covered = [line for r in rows for line in range(r["first_line"], r["last_line"] + 1)]
    assert sorted(set(covered)) == list(range(1, len(lengths) + 1))
    for before, after in itertools.pairwise(rows):
        assert after["first_line"] == before["first_line"] + n - overlap
    assert all(r["n_rows"] == r["last_line"] - r["first_line"] + 1 <= n for r in rows)
    assert all(r["text"].count("\n") == r["n_rows"] - 1 for r in rows)


def expected_windows(sizes: list[int], n: int, overlap: int) -> list[tuple[str, int, int]]:
    """Reference: (source, first line, last line) of every row window, source by source."""
    stride, found = n - overlap, []
    for index, total in enumerate(sizes):
        k = 0
        while k == 0 or k * stride + overlap < total:
            found.append((f"s{index}", k * stride + 1, min(k * stride + n, total)))
            k += 1
    return found


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    n=st.integers(1, 8),
    overlap_share=st.floats(0, 0.9),
    batch=st.integers(1, 40),
)
def test_batched_row_windows_match_the_reference(
    sizes: list[int], n: int, overlap_share: float, batch: int
) -> None:
    overlap = min(n - 1, int(n * overlap_share))
    with pytest.MonkeyPatch.context() as patch, Store.open(None) as store:
        patch.setattr(rowchunks, "BATCH_ROWS", batch)
        lines_table(
            store, {f"s{i}": [f"s{i}-{j}" for j in range(1, k + 1)] for i, k in enumerate(sizes)}
        )
        rows = run(store, "lines", n, overlap=overlap)
    assert [(r["source"], r["first_line"], r["last_line"]) for r in rows] == expected_windows(
        sizes, n, overlap
    )
    assert [r["id"] for r in rows] == list(range(len(rows)))
    for r in rows:
        assert r["text"] == "\n".join(
            f"{r['source']}-{j}" for j in range(r["first_line"], r["last_line"] + 1)
        )


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=50),
    n=st.integers(5, 60),
    strategy=st.sampled_from(["chars", "tokens"]),
)
def test_budget_chunks_respect_the_budget_and_lose_nothing(
    lengths: list[int], n: int, strategy: str
) -> None:
    lines = [f"{i}" + "y" * k for i, k in enumerate(lengths)]
    with Store.open(None) as store:
        lines_table(store, {"s": lines})
        rows = run(store, strategy, n)
    measure = len if strategy == "chars" else ESTIMATE.count
    whole = [r for r in rows if r["n_rows"] > 1 or measure(lines[r["first_line"] - 1]) <= n]
    assert all(measure(r["text"]) <= n for r in rows)
    assert "\n".join(r["text"] for r in whole) == "\n".join(
        line for line in lines if measure(line) <= n
    )
    pieces = [r for r in rows if r not in whole]
    for line_no in sorted({r["first_line"] for r in pieces}):
        cut = "".join(r["text"] for r in pieces if r["first_line"] == line_no)
        assert cut == lines[line_no - 1]


def test_chars_packs_whole_lines_with_overlap(store: Store) -> None:
    lines_table(store, {"a": ["aaaa", "bbbbbbb", "", "cccc"]})
    rows = run(store, "chars", 10, overlap=5)
    assert [r["text"] for r in rows] == ["aaaa", "bbbbbbb\n", "\ncccc"]
    assert [(r["first_line"], r["last_line"]) for r in rows] == [(1, 1), (2, 3), (3, 4)]


def test_an_overlong_line_is_cut_with_substr(store: Store) -> None:
    lines_table(store, {"a": ["abcdefghijklmnopqrstuvwxyz", "xyz"]})
    rows = run(store, "chars", 10, overlap=2)
    assert [(r["text"], r["first_line"], r["start_byte"], r["end_byte"]) for r in rows] == [
        ("abcdefghij", 1, 0, 10),
        ("ijklmnopqr", 1, 8, 18),
        ("qrstuvwxyz", 1, 16, 26),
        ("xyz", 2, 27, 30),
    ]


def test_tokens_use_the_counter(store: Store) -> None:
    words = TokenCounter("words", lambda text: len(text.split()))
    lines_table(store, {"a": ["one two", "three", "four five six", "seven"]})
    chunk(store, chunk_step("tokens", 4), "x", words)  # row weight: its tokens + 1 (newline)
    rows = store.rows("c")
    assert [r["text"] for r in rows] == ["one two\nthree", "four five six", "seven"]
    chunk(store, chunk_step("tokens", 5), "x", words)
    assert [(r["text"], r["n_tokens"]) for r in store.rows("c")] == [
        ("one two\nthree", 3),
        ("four five six\nseven", 4),
    ]


def test_large_tables_estimate_n_tokens_from_a_sampled_ratio(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chunkers, "EXACT_TOKEN_BYTES", 10)
    per_char = TokenCounter("one per 2 chars", lambda text: len(text) // 2)
    lines_table(store, {"a": ["ab" * 10] * 6})
    chunk(store, chunk_step("lines", 3), "x", per_char)
    assert [r["n_tokens"] for r in store.rows("c")] == [31, 31]  # sample ratio 125 / 62


def test_regex_starts_chunks(store: Store) -> None:
    lines_table(store, {"a": ["pre", "BEGIN 1", "x", "BEGIN 2", "y", "z"]})
    rows = run(store, "regex", "^BEGIN")
    assert [r["text"] for r in rows] == ["pre", "BEGIN 1\nx", "BEGIN 2\ny\nz"]
    rows = run(store, "regex", "^BEGIN", max_lines=2)
    assert [r["text"] for r in rows] == ["pre", "BEGIN 1\nx", "BEGIN 2\ny", "z"]


def test_delimiter_lines_separate_and_vanish(store: Store) -> None:
    lines_table(store, {"a": ["a", "---", "b", "c", "---", "---", "d"]})
    rows = run(store, "delimiter", "---")
    assert [(r["text"], r["first_line"], r["last_line"]) for r in rows] == [
        ("a", 1, 1),
        ("b\nc", 3, 4),
        ("d", 7, 7),
    ]


def test_file_and_record(store: Store) -> None:
    lines_table(store, {"a": ["1", "2"], "b": ["3"]})
    assert [(r["source"], r["text"]) for r in run(store, "file")] == [("a", "1\n2"), ("b", "3")]
    assert [(r["id"], r["source"], r["text"]) for r in run(store, "record")] == [
        (0, "a", "1"),
        (1, "a", "2"),
        (2, "b", "3"),
    ]


def test_files_tables_are_split_into_lines(store: Store, write: Write, tmp_path: Path) -> None:
    write("d/a.md", "one\ntwo\nthree\n")
    write("d/b.md", "four")
    load_input(store, input_step("files"), str(tmp_path / "d"))
    rows = run(store, "lines", 2)
    assert [
        (Path(r["source"]).name, r["first_line"], r["start_byte"], r["text"]) for r in rows
    ] == [("a.md", 1, 0, "one\ntwo"), ("a.md", 3, 8, "three"), ("b.md", 1, 0, "four")]
    assert [r["text"] for r in run(store, "file")] == ["one\ntwo\nthree\n", "four"]


def test_column_groups_by_value_in_first_seen_order(store: Store, write: Write) -> None:
    events = "".join(
        f'{{"session": "{s}", "text": "{t}"}}\n'
        for s, t in [("s2", "a"), ("s1", "b"), ("s2", "c"), ("s1", "d"), ("s3", "e")]
    )
    load_input(store, input_step("jsonl"), write("e.jsonl", events))
    rows = run(store, "column", "session")
    assert [(r["key"], r["text"], r["n_rows"]) for r in rows] == [
        ("s2", "a\nc", 2),
        ("s1", "b\nd", 2),
        ("s3", "e", 1),
    ]


def test_window_buckets_time_and_carries_timestamps(store: Store, write: Write) -> None:
    events = [
        ("2026-01-01T00:00:10", "one"),
        ("2026-01-01T00:04:59", "two"),
        (None, "cont"),
        ("2026-01-01T00:12:00", "three"),
    ]
    body = "".join(
        f'{{"ts": {("null" if ts is None else chr(34) + ts + chr(34))}, "text": "{t}"}}\n'
        for ts, t in events
    )
    load_input(store, input_step("jsonl"), write("w.jsonl", body))
    rows = run(store, "window", "5m")
    assert [(r["key"], r["text"]) for r in rows] == [
        ("2026-01-01T00:00:00", "one\ntwo\ncont"),
        ("2026-01-01T00:10:00", "three"),
    ]
    store.con.execute("ALTER TABLE x RENAME COLUMN ts TO happened")
    assert len(run(store, "window", "1h", column="happened")) == 1


def test_sql_chunks_keep_query_order_and_extra_columns(store: Store) -> None:
    lines_table(store, {"a": ["x1", "y1", "x2"]})
    query = """SELECT left(text, 1) AS key, string_agg(text, ' ' ORDER BY id) AS text,
        count(*) AS n_rows FROM {{ input }} GROUP BY 1 ORDER BY key DESC"""
    chunk(store, chunk_step("sql", query), "x", ESTIMATE)
    rows = store.rows("c")
    assert [(r["id"], r["key"], r["text"], r["n_rows"], r["first_line"]) for r in rows] == [
        (0, "y", "y1", 1, None),
        (1, "x", "x1 x2", 2, None),
    ]


def test_five_million_characters_chunk_quickly(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    store.con.execute(
        f"""COPY (SELECT printf('2026-01-01T00:%02d:%02d host-%d app: request %d took %d ms %s',
                (i // 60) % 60, i % 60, i % 7, i, (i * 7) % 1000, repeat('z', 40)) AS line
            FROM range(60000) t(i)) TO '{path}' (FORMAT csv, HEADER false, QUOTE '')"""
    )
    assert path.stat().st_size > 5_000_000
    started = time.perf_counter()
    load_input(store, input_step("text"), str(path))
    chunk(store, chunk_step("lines", 400, overlap=20), "x", ESTIMATE)
    elapsed = time.perf_counter() - started
    assert store.count("x") == 60000
    assert store.count("c") == 158  # ceil((60000 - 20) / 380)
    last = store.rows("c")[-1]
    assert (last["first_line"], last["last_line"]) == (59661, 60000)
    assert last["text"].splitlines()[-1].startswith("2026-01-01T00:39:59 host-2 app: request 59999")
    assert elapsed < 20


@pytest.mark.parametrize(
    ("strategy", "args", "options", "error", "message"),
    [
        ("lines", (0,), {}, SpecError, "chunk size must be a positive integer, got 0"),
        ("lines", (3,), {"overlap": 3}, SpecError, "overlap must be an integer from 0 to 2, got 3"),
        ("regex", ("(",), {}, SpecError, "invalid regex '(': Invalid Input Error: missing ): ("),
        (
            "window",
            ("5x",),
            {},
            SpecError,
            'bad window duration \'5x\' (use e.g. "30s", "5m", "1h")',
        ),
        (
            "column",
            ("nope",),
            {},
            InputError,
            "table 'x' has no column 'nope' (columns: id, source, line_no, byte_offset, text)",
        ),
        ("bogus", (), {}, SpecError, "unknown chunk strategy 'bogus'"),
    ],
)
def test_bad_chunk_steps(
    store: Store, strategy: str, args: tuple, options: dict, error: type, message: str
) -> None:
    lines_table(store, {"a": ["x"]})
    with pytest.raises(error) as caught:
        run(store, strategy, *args, **options)
    assert str(caught.value) == f"step 'chunk-c': {message}"


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("SELECT 1 AS a", "chunk query must yield a text column (it yields: a)"),
        ("SELECT nope FROM {{ input }}", "chunk query failed: Binder Error: Referenced column "
         '"nope" not found in FROM clause!'),
        ("SELECT * FROM {{ nope }}", "chunk query template: 'nope' is undefined"),
    ],
)
def test_a_bad_chunk_query_names_the_spec_position_at_run_time(
    store: Store, query: str, detail: str
) -> None:
    """Where ``rlm check`` cannot describe the query (columns known only at run time), the run's
    error still points at the chunk step in the spec."""
    lines_table(store, {"a": ["x"]})
    with pytest.raises(SpecError) as caught:
        run(store, "sql", query)
    assert str(caught.value).startswith(f"step 'chunk-c' (test.rlm:1:1) failed: {detail}")
    assert isinstance(caught.value, StepFailed)


@pytest.mark.parametrize("overlap", [0, 2])
def test_windows_whose_rows_arrive_out_of_order_are_rebuilt_in_order(overlap: int) -> None:
    """The unordered join is verified: a window failing the order check gets the ordered text.

    Real disorder needs a window split between two threads' morsels (120k-row row groups), so
    the check is replaced by one that fails for every other window.
    """
    sources = {"s0": [f"s0-{j}" for j in range(1, 41)], "s1": ["s1-1", "s1-2", "s1-3"]}

    def chunked(repair: bool) -> list[dict]:
        with pytest.MonkeyPatch.context() as patch, Store.open(None) as store:
            patch.setattr(rowchunks, "IN_ORDER", "min(id) % 8 < 4")
            patch.setattr(rowchunks, "BATCH_ROWS", 10)
            if not repair:
                patch.setattr(rowchunks, "_reorder", lambda *args: None)
            lines_table(store, sources)
            # a counter that needs the text (a UDF) keeps the chunk text materialised
            step = chunk_step("lines", 4, source="x", overlap=overlap)
            chunk(store, step, "x", TokenCounter("exact", lambda text: -(-len(text) // 4)))
            return store.rows("c")

    assert any(r["text"] is None for r in chunked(repair=False))  # the check did fail
    rows = chunked(repair=True)
    assert [(r["source"], r["first_line"], r["last_line"]) for r in rows] == expected_windows(
        [40, 3], 4, overlap
    )
    for r in rows:
        assert r["text"] == "\n".join(
            f"{r['source']}-{j}" for j in range(r["first_line"], r["last_line"] + 1)
        )
        assert r["n_tokens"] == -(-len(r["text"]) // 4)


def test_the_order_check_tells_an_unordered_window() -> None:
    with Store.open(None) as store:
        check = rowchunks.IN_ORDER
        ordered = store.scalar(f"SELECT {check} FROM (SELECT unnest([3, 4, 5, 6]) AS id)")
        shuffled = store.scalar(
            f"SELECT {check} FROM (SELECT unnest(list_reverse([3, 4, 5, 6])) AS id)"
        )
    assert (ordered, shuffled) == (True, False)


@pytest.mark.parametrize("overlap", [0, 2])
def test_row_windows_keep_line_ranges_and_read_their_text_through_the_source(
    overlap: int,
) -> None:
    """A length-based counter makes ``c`` a view over the windows' id ranges
    (``c__stored``, no text); its rows equal the materialised windows of a text-counting
    counter, and a point lookup reads one window's text."""
    sources = {"s0": [f"s0-{j} ü" for j in range(1, 41)], "s1": ["s1-1", "", "s1-3"]}

    def chunked(counter: TokenCounter) -> tuple[list[dict], str, str | None]:
        with Store.open(None) as store:
            lines_table(store, sources)
            step = chunk_step("lines", 4, source="x", overlap=overlap)
            chunk(store, step, "x", counter)
            kind = store.scalar("SELECT table_type FROM information_schema.tables "
                                "WHERE table_name = 'c'")
            one = store.scalar("SELECT text FROM c WHERE id = 3")
            rows = store.rows("c")
            chunk(store, step, "x", TokenCounter("exact", ESTIMATE.count))  # view -> table
            assert store.rows("c") == rows
            return rows, kind, one

    lazy, kind, one = chunked(ESTIMATE)
    materialised, table_kind, _ = chunked(TokenCounter("exact", ESTIMATE.count))
    assert (kind, table_kind) == ("VIEW", "BASE TABLE")
    assert lazy == materialised
    assert one == lazy[3]["text"]
    assert [(r["source"], r["first_line"], r["last_line"]) for r in lazy] == expected_windows(
        [40, 3], 4, overlap)
