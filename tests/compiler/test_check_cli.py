"""``rlm check`` and ``rlm plan`` through the real CLI entry point: messages and exit codes."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from rlm_dsl.cli.main import main
from rlm_dsl.compile import compile_file

ROOT = Path(__file__).resolve().parents[2]
GOOD = 'recipe tiny "One map."\ninput doc: text\nmap doc -> notes: str """{{ chunk.text }}"""\n' \
       "output notes\n"
BAD = 'recipe tiny "One map."\ninput doc: text\nmap docs -> notes: str """{{ chunk.txt }}"""\n' \
      "output notes\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out, captured.err


@pytest.fixture
def spec(tmp_path: Path):
    def write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    return write


def test_check_clean_file(capsys, spec) -> None:
    code, out, err = run(capsys, "check", spec("good.rlm", GOOD))
    assert code == 0
    assert out.endswith("good.rlm: ok (recipe tiny, 2 steps)\n")
    assert err == ""


def test_check_reports_every_error_of_every_file(capsys, spec) -> None:
    bad = spec("bad.rlm", BAD)
    worse = spec("worse.rlm", BAD.replace("output notes", "output nothing"))
    code, out, err = run(capsys, "check", bad, spec("good.rlm", GOOD), worse)
    assert code == 1
    assert err.count("error: unknown name 'docs'") == 2
    assert f"{worse}:4:8: error: unknown name 'nothing'" in err
    assert "good.rlm: ok" in out
    assert err.count("\n1 error\n") == 1 and err.count("\n2 errors\n") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "error: spec is empty"),
        (b"# nothing but a comment\n", "error: spec is empty (it has only comments)"),
        (b"\xef\xbb\xbf", "error: spec is empty"),
    ],
)
def test_check_empty_specs_are_spec_errors(capsys, spec, content, message) -> None:
    path = spec("empty.rlm", content)
    code, _, err = run(capsys, "check", path)
    assert code == 1
    assert f"{path}:1:1: {message}" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"recipe x\x00\x01\x02 binary", ": is a binary file, not a spec (found NUL bytes)"),
        (b'recipe r\n# caf\xe9 "latin-1"\n', ":2:6: is not UTF-8 text (byte 0xe9)"),
    ],
)
def test_check_unreadable_bytes_exit_2(capsys, spec, content, message) -> None:
    path = spec("odd.rlm", content)
    code, _, err = run(capsys, "check", path)
    assert code == 2
    assert err.strip() == f"{path}{message}"


def test_check_missing_file_and_directory_exit_2(capsys, tmp_path, spec) -> None:
    missing = str(tmp_path / "nope.rlm")
    code, _, err = run(capsys, "check", spec("bad.rlm", BAD), missing, str(tmp_path))
    assert code == 2
    assert f"{missing}: no such file" in err
    assert f"{tmp_path}: is a directory, not a spec file" in err
    assert "unknown name 'docs'" in err


def test_check_huge_spec_is_refused_quickly(capsys, spec) -> None:
    line = "# " + "x" * 98 + "\n"
    path = spec("huge.rlm", GOOD + line * 100_000)  # 10 MB
    code, _, err = run(capsys, "check", path)
    assert code == 1
    assert "error: spec is too large" in err


def test_plan_text_matches_dumps(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(capsys, "plan", "recipes/incident_report.rlm")
    assert code == 0
    assert out == compile_file("recipes/incident_report.rlm").dumps()


def test_plan_other_formats(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(capsys, "plan", "recipes/label_counting.rlm", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["recipe"] == "label_counting"
    assert [n["id"] for n in data["graph"]["nodes"]] == [
        "input-questions", "chunk-rows", "map-label", "reduce-counts", "reduce-most_common"]
    assert {"source": "map-label", "target": "reduce-counts"} in data["graph"]["edges"]
    _, dot, _ = run(capsys, "plan", "recipes/label_counting.rlm", "--format", "dot")
    assert dot.startswith('digraph "label_counting" {') and '"map-label" -> "reduce-counts";' in dot
    _, mermaid, _ = run(capsys, "plan", "recipes/label_counting.rlm", "-f", "mermaid")
    assert mermaid.startswith("flowchart LR\n") and "  map_label --> reduce_counts\n" in mermaid


def test_plan_bad_format_and_bad_spec(capsys, spec) -> None:
    code, _, err = run(capsys, "plan", spec("good.rlm", GOOD), "--format", "yaml")
    assert code == 1
    assert "unknown --format 'yaml'; choose one of text, json, dot, mermaid" in err
    code, _, err = run(capsys, "plan", spec("bad.rlm", BAD))
    assert code == 1
    assert "error: unknown name 'docs'" in err and "hint: did you mean 'doc'?" in err


def test_plan_estimate_calls_the_runtime(capsys, spec, monkeypatch) -> None:
    seen: dict[str, object] = {}

    class Estimate:
        def render(self, console) -> None:
            console.print("42 calls", markup=False)

        def to_json(self) -> dict[str, int]:
            return {"calls": 42}

    def estimate_plan(plan, *, inputs, params, lm, lm_all=False):
        seen.update(recipe=plan.recipe, inputs=inputs, params=params, lm=lm)
        return Estimate()

    fake = types.ModuleType("rlm_dsl.runtime.estimator")
    fake.estimate_plan = estimate_plan  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlm_dsl.runtime.estimator", fake)
    path = spec("good.rlm", GOOD)
    argv = ["plan", path, "--estimate", "--input", "doc=a=b.txt", "-p", "k=v", "--lm", "test"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and out.endswith("42 calls\n")
    assert seen == {"recipe": "tiny", "inputs": {"doc": "a=b.txt"}, "params": {"k": "v"},
                    "lm": "test"}
    code, out, _ = run(capsys, *argv, "--format", "json")
    assert json.loads(out)["estimate"] == {"calls": 42}
    code, _, err = run(capsys, "plan", path, "--estimate", "--input", "doc")
    assert code == 1 and "--input expects name=value, got 'doc'" in err


def test_plan_estimate_without_runtime_module(capsys, spec, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "rlm_dsl.runtime.estimator", None)
    code, _, err = run(capsys, "plan", spec("good.rlm", GOOD), "--estimate")
    assert code == 1
    assert "--estimate is not available" in err


@pytest.mark.parametrize("argv, message", [
    (["check"], "Missing argument 'files'"),
    (["check", "--bogus", "x.rlm"], "No such option: --bogus"),
    (["run", "x.rlm", "--concurrency", "0"], "Invalid value for '--concurrency'"),
])
def test_usage_errors_exit_1_with_clicks_message(capsys, argv, message) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert message in err
    assert "internal error" not in err


def test_check_json_gives_diagnostics_as_objects(capsys, spec):
    good, bad = spec("good.rlm", GOOD), spec("bad.rlm", BAD)
    code, out, _ = run(capsys, "check", good, bad, spec("bin.rlm", b"\xff\xfe"), "--json")
    data = json.loads(out)
    assert code == data["exit_code"] == 2
    first, second, third = data["files"]
    assert (first["ok"], first["recipe"], first["steps"], first["diagnostics"]) == (
        True, "tiny", 2, [])
    assert second["ok"] is False and [
        (d["line"], d["col"], d["end_col"], d["message"], d["hint"])
        for d in second["diagnostics"]] == [
        (3, 5, 9, "unknown name 'docs'", "did you mean 'doc'?")]
    assert third["diagnostics"] == [] and "not UTF-8" in third["error"]
