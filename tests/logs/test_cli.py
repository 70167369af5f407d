"""``rlm ingest`` and ``rlm sql`` through ``rlm_dsl.cli.main.main(argv)``."""

from __future__ import annotations

import json
from pathlib import Path

from rlm_dsl.cli.main import main

SAMPLES = Path(__file__).parents[2] / "recipes" / "data" / "logs"


def test_ingest_then_query(tmp_path: Path, capsys):
    db = str(tmp_path / "logs.duckdb")
    assert main(["ingest", db, str(SAMPLES / "app.log"), str(SAMPLES / "auth.log")]) == 0
    out = capsys.readouterr().out
    assert "app.log" in out and "log4j" in out and "syslog" in out
    assert "ingested 250 rows from 2 file(s) into" in out
    assert "(formats: log4j, syslog; parse errors: 0)" in out

    code = main(
        [
            "sql",
            db,
            "SELECT level, count(*) AS n FROM logs WHERE level IS NOT NULL GROUP BY 1 ORDER BY 1",
            "--format",
            "csv",
        ]
    )
    assert (code, capsys.readouterr().out) == (0, "level,n\nERROR,2\nINFO,68\nWARN,8\n")

    code = main(
        [
            "sql",
            db,
            "SELECT line_no, end_line_no, component FROM logs WHERE level = 'ERROR' "
            "ORDER BY source, line_no",
            "--format",
            "json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == [
        {"line_no": 44, "end_line_no": 59, "component": "com.acme.shop.order.OrderRepository"},
        {"line_no": 134, "end_line_no": 134, "component": None},  # sshd[31337]: error: …
    ]

    assert main(["sql", db, "SELECT count(*) AS n FROM logs"]) == 0
    table = capsys.readouterr().out
    assert "┃ n   ┃" in table and "│ 250 │" in table and "1 row(s)" in table


def test_ingest_again_appends_only_new_lines(tmp_path: Path, capsys):
    log = tmp_path / "app.log"
    log.write_text("Mar  3 10:00:00 web01 app[7]: one\n")
    db = str(tmp_path / "logs.duckdb")
    assert main(["ingest", db, str(log)]) == 0
    with log.open("a") as f:
        f.write("Mar  3 10:00:01 web01 app[7]: two\n")
    capsys.readouterr()
    assert main(["ingest", db, str(log)]) == 0
    assert "appended 1 rows from 1 file(s)" in capsys.readouterr().out
    assert main(["sql", db, "SELECT id, message FROM logs ORDER BY id", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "id,message\n0,one\n1,two\n"


def test_ingest_bad_input_exits_2(tmp_path: Path, capsys):
    db = str(tmp_path / "logs.duckdb")
    assert main(["ingest", db, str(SAMPLES / "app.log"), "--format", "nope"]) == 2
    assert "unknown log format 'nope'; known formats:" in capsys.readouterr().err
    assert main(["ingest", db, str(tmp_path / "missing.log")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_sql_errors(tmp_path: Path, capsys):
    missing = str(tmp_path / "none.duckdb")
    assert main(["sql", missing, "SELECT 1"]) == 2
    assert capsys.readouterr().err.strip() == f"{missing}: no such DuckDB database file"

    notdb = tmp_path / "notes.txt"
    notdb.write_text("hello")
    assert main(["sql", str(notdb), "SELECT 1"]) == 2
    assert "cannot open as a DuckDB database" in capsys.readouterr().err

    db = str(tmp_path / "logs.duckdb")
    assert main(["ingest", db, str(SAMPLES / "auth.log")]) == 0
    capsys.readouterr()
    assert main(["sql", db, "SELEC 1"]) == 1
    assert capsys.readouterr().err.startswith("SQL error: Parser Error: syntax error")
    assert main(["sql", db, "DELETE FROM logs__stored"]) == 1  # logs is a view over it
    assert "read-only" in capsys.readouterr().err
    assert main(["sql", db, "SELECT 1", "--format", "xml"]) == 1
    assert "unknown output format 'xml'" in capsys.readouterr().err


def test_ingest_dedup_and_memory_limit(tmp_path: Path, capsys):
    db = str(tmp_path / "logs.duckdb")
    args = ["ingest", db, str(SAMPLES / "app.log"), "--table", "t", "--dedup"]
    assert main([*args, "--memory-limit", "lots"]) == 1
    assert "--memory-limit: not a memory size: 'lots'" in capsys.readouterr().err
    assert main([*args, "--memory-limit", "256MB"]) == 0
    capsys.readouterr()
    assert main(["sql", db, "SELECT count(*), sum(count) FROM t", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "count_star(),sum(count)\n18,77\n"


def test_ingest_a_directory_holding_the_database(tmp_path: Path, capsys):
    (tmp_path / "a.log").write_text("Mar  3 10:00:00 web01 app[7]: one\n")
    db = str(tmp_path / "logs.duckdb")
    assert main(["ingest", db, str(tmp_path)]) == 0
    assert main(["ingest", db, str(tmp_path)]) == 0  # the database file is not read as a log
    assert "appended 0 rows from 1 file(s)" in capsys.readouterr().out


def test_ingest_with_an_encoding(tmp_path: Path, capsys):
    db = str(tmp_path / "logs.duckdb")
    log = tmp_path / "old.log"
    log.write_bytes("Mar  3 10:00:01 web01 app[1]: caf\u00e9 ready\n".encode("latin-1"))
    assert main(["ingest", db, str(log), "--encoding", "latin-1"]) == 0
    assert "Latin-1" not in capsys.readouterr().out
    assert main(["sql", db, "SELECT message FROM logs", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "message\ncafé ready\n"
    assert main(["ingest", db, str(log), "--encoding", "ebcdic"]) == 1
    assert "unknown encoding 'ebcdic'" in capsys.readouterr().err
