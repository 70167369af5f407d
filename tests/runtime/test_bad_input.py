"""Bad input to ``rlm run``: one clear message naming the problem and the documented exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SPEC = '''
    recipe items "Count."
    param k: int = 3
    param strict: bool = false
    type Level = low | high
    param tier: Level = "low"
    input items: lines
    chunk items -> pieces by lines(10)
    map pieces -> n: int """
      COUNT "{{ k }}"
      {{ chunk.text }}
    """
    output n
'''


@pytest.fixture
def recipe(spec) -> Path:
    return spec(SPEC)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.txt"
    path.write_text("line 3\nline 4\n")
    return path


def _run(cli, recipe: Path, *args: str) -> tuple[int, str]:
    code, out, err = cli("run", recipe, "--lm", "test", *args)
    assert out == ""
    return code, err.strip()


def test_missing_input(cli, recipe, tmp_path):
    missing = tmp_path / "nope.txt"
    assert _run(cli, recipe, "--input", f"items={missing}") == (2, f"{missing}: no such file")


def test_binary_input(cli, recipe, tmp_path):
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02 binary")
    assert _run(cli, recipe, "--input", f"items={binary}") == (
        2, f"{binary}:1: binary file (NUL byte at offset 0), not text")


def test_empty_input(cli, recipe, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert _run(cli, recipe, "--input", f"items={empty}") == (
        2, f"{empty}: empty input (no bytes to read)")


def test_directory_as_input(cli, recipe, tmp_path):
    assert _run(cli, recipe, "--input", f"items={tmp_path}") == (
        2, f"{tmp_path}: is a directory (use a glob such as {tmp_path}/*.log)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_input(cli, recipe, good):
    good.chmod(0)
    code, err = _run(cli, recipe, "--input", f"items={good}")
    assert code == 2 and err.startswith(f"{good}: ")


def test_input_not_declared_by_the_spec(cli, recipe, good):
    assert _run(cli, recipe, "--input", f"logs={good}") == (
        2, "--input logs: the recipe 'items' declares no input 'logs' (inputs: items)")


def test_input_without_a_path_is_a_usage_error(cli, recipe):
    assert _run(cli, recipe, "--input", "items") == (1, "--input expects name=path, got 'items'")


@pytest.mark.parametrize(("param", "message"), [
    ("k=three", "--param k=three: expected an integer (int)"),
    ("strict=maybe", "--param strict=maybe: expected true or false (bool)"),
    ("tier=medium", "--param tier=medium: expected one of low, high"),
    ("colour=red", "--param colour: the recipe 'items' declares no param 'colour' "
                   "(params: k, strict, tier)"),
])
def test_wrong_param(cli, recipe, good, param, message):
    assert _run(cli, recipe, "--input", f"items={good}", "--param", param) == (2, message)


def test_db_that_is_not_duckdb(cli, recipe, good, tmp_path):
    bogus = tmp_path / "notes.duckdb"
    bogus.write_text("these are my notes, not a database\n")
    assert _run(cli, recipe, "--input", f"items={good}", "--db", bogus) == (
        2, f"{bogus}: not a DuckDB database")
    assert bogus.read_text() == "these are my notes, not a database\n"


def test_good_params_are_typed(cli, recipe, good):
    code, out, err = cli("run", recipe, "--lm", "test", "--input", f"items={good}",
                         "--param", "k=4", "--param", "strict=yes", "--param", "tier=high")
    assert (code, out) == (0, "[\n  1\n]\n")
    assert err.startswith("calls: 1 · cache hits: 0 · tokens: ")


def test_template_error_names_step_and_chunk(cli, spec, good):
    path = spec(SPEC.replace("{{ chunk.text }}", "{{ chunk.text }} {{ k // (k - 3) }}"), "zero.rlm")
    code, out, err = cli("run", path, "--lm", "test", "--input", f"items={good}")
    assert (code, out) == (1, "")
    assert err.strip() == (f"step 'map-n' ({path}:8:1) failed on chunk 0: template error: "
                           "ZeroDivisionError: integer division or modulo by zero")


def test_sql_error_names_the_step(cli, spec, good):
    path = spec(SPEC.replace("    output n\n", '    reduce n -> total by sql "SELECT sum(nn) '
                             'AS total FROM {{ input }}"\n    output total\n'), "sql.rlm")
    code, out, err = cli("run", path, "--lm", "test", "--input", f"items={good}")
    assert (code, out) == (1, "")
    assert err.strip() == (f"step 'reduce-total' ({path}:12:1) failed: SQL error: Binder Error: "
                           'Referenced column "nn" not found in FROM clause!')


def test_failed_run_json_carries_the_step_failure_as_an_object(cli, spec, good):
    path = spec(SPEC.replace("{{ chunk.text }}", "{{ chunk.text }} {{ k // (k - 3) }}"), "zero.rlm")
    code, out, err = cli("run", path, "--lm", "test", "--input", f"items={good}", "--json")
    assert code == 1
    assert err.strip().startswith(f"step 'map-n' ({path}:8:1) failed on chunk 0: template error")
    failure = json.loads(out)["error"]  # the --json object's error: every error has its type
    assert failure == {
        "type": "SpecStepFailed", "error": "step_failed", "message": err.strip(),
        "exit_code": 1, "step": "map-n",
        "chunk_id": 0, "span": {"file": str(path), "line": 8, "col": 1},
        "cause": {"type": "SpecError", "message": "template error: ZeroDivisionError: "
                  "integer division or modulo by zero"},
    }


def test_step_failed_keeps_its_objects_and_family():
    from rlm_dsl.compiler.source import Span
    from rlm_dsl.errors import LMError, RlmError, StepFailed

    class Step:
        id, span = "map-x", Span("t.rlm", 9, 1, 9, 20)

    cause = TimeoutError("slow")
    failure = StepFailed.of(Step(), 12, cause, LMError, "TimeoutError: slow")
    assert isinstance(failure, LMError) and failure.exit_code == 4
    assert (failure.step_id, failure.chunk_id, failure.cause) == ("map-x", 12, cause)
    assert str(failure) == "step 'map-x' (t.rlm:9:1) failed on chunk 12: TimeoutError: slow"
    plain = StepFailed.of(Step(), None, RlmError("budget"), RlmError)
    assert type(plain) is StepFailed and str(plain) == "step 'map-x' (t.rlm:9:1) failed: budget"
