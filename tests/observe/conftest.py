"""Fixtures for the observability tests: a run store written row by row following the schema.

:func:`synthetic_store` writes one run with a map step (a chunk split once, a failed chunk), a
two-level tree reduce and an ``rlm`` step of depth 2 (iterations, an ``llm_query`` sub-call and
an ``rlm_query`` child with its own iterations and calls), exactly as the executor, the call gate
and the REPL record them (ids, ``parent_id``, ``parent_call_id``, ``depth``, times).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rlm_dsl.runtime.store.store import Store

RUN = "abcdef0123456789"
T0 = datetime(2026, 11, 24, 12, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def tick(self, seconds: float = 1.0) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t


def _call(n: int, clock: Clock, step: str, chunk: int, depth: int, parent: str | None,
          prompt: str, response: str | None, error: str | None = None) -> dict[str, Any]:
    return {
        "call_id": f"{RUN[:8]}-{n}", "run_id": RUN, "step": step, "chunk_id": chunk,
        "depth": depth, "parent_id": parent, "model": "test", "cache_key": f"k{n}",
        "messages": json.dumps([{"role": "system", "content": "sys"},
                                {"role": "user", "content": prompt}]),
        "response": response, "prompt_tokens": 100 + n, "completion_tokens": 10 + n,
        "cost_usd": 0.001 * n, "latency_s": 0.5, "cached": False, "error": error,
        "started_at": clock.tick(),
    }


def build_store(store: Store) -> dict[str, Any]:
    """Write the run; returns what the tests check against (call ids per step)."""
    clock = Clock()
    calls: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    def call(step: str, chunk: int, depth: int, parent: str | None, prompt: str,
             response: str | None = "ok", error: str | None = None) -> None:
        calls.append(_call(len(calls), clock, step, chunk, depth, parent, prompt, response, error))

    def row(chunk: int, depth: int, parent: str | None, iteration: int, code: str,
            output: str, error: str | None = None) -> None:
        rows.append({"run_id": RUN, "step": "rlm-answer", "chunk_id": chunk, "depth": depth,
                     "parent_call_id": parent, "iteration": iteration, "reasoning": "think",
                     "code": code, "output": output, "error": error, "at": clock.tick()})

    began = clock.tick()
    for chunk in range(3):
        if chunk == 1:  # too big: split once, two calls at depth 1
            call("map-notes", 1, 1, None, "MAP chunk 1 left half")
            call("map-notes", 1, 1, None, "MAP chunk 1 right half")
        elif chunk == 2:
            call("map-notes", 2, 0, None, "MAP chunk 2", None, "TimeoutError: slow")
        else:
            call("map-notes", chunk, 0, None, f"MAP chunk {chunk}")
    failures = [{"run_id": RUN, "step": "map-notes", "chunk_id": 2, "error": "TimeoutError: slow",
                 "raw_response": None, "attempts": 3, "resolved": False, "at": clock.tick()}]
    map_done = clock.tick()
    for batch in range(3):
        call("reduce-summary", batch, 0, None, f"REDUCE level 0 batch {batch}")
    for batch in range(2):
        call("reduce-summary", batch, 1, None, f"REDUCE level 1 batch {batch}")
    call("reduce-summary", 0, 2, None, "REDUCE level 2 batch 0")
    reduce_done = clock.tick()
    # rlm step, depth 2: root iteration 1 (one llm_query), iteration 2 (rlm_query child with
    # two iterations, one making an llm_query at depth 2), iteration 3 submits.
    call("rlm-answer", 0, 0, None, "ROOT action 1")
    call("rlm-answer", 0, 1, "root.1.1", "SUB question one")
    row(0, 1, "root.1", 1, "llm_query:\nSUB question one", "answer one")
    row(0, 0, None, 1, "x = llm_query('SUB question one')", "answer one")
    call("rlm-answer", 0, 0, None, "ROOT action 2")
    call("rlm-answer", 0, 1, "root.2.1", "CHILD action 1")
    row(0, 1, "root.2.1", 1, "print(context[:3])", "three rows")
    call("rlm-answer", 0, 1, "root.2.1", "CHILD action 2")
    call("rlm-answer", 0, 2, "root.2.1.2.1", "DEEP question")
    row(0, 2, "root.2.1.2", 1, "llm_query:\nDEEP question", "deep answer")
    row(0, 1, "root.2.1", 2, "SUBMIT(answer='child')", "child done")
    row(0, 1, "root.2", 1, "rlm_query:\nrlm_query(<3 rows>, 'what?')", "child")
    row(0, 0, None, 2, "y = rlm_query(context[:3], 'what?')", "child")
    call("rlm-answer", 0, 0, None, "ROOT action 3")
    row(0, 0, None, 3, "SUBMIT(answer=y)", "", "[Error] NameError: boom")
    done = clock.tick()
    store.insert_rows("lm_calls", calls)
    store.insert_rows("rlm_iterations", rows)
    store.insert_rows("failures", failures)
    store.insert_rows("step_status", [
        {"run_id": RUN, "step": "input-doc", "status": "done", "rows": 30,
         "started_at": T0, "finished_at": T0},
        {"run_id": RUN, "step": "chunk-parts", "status": "done", "rows": 3,
         "started_at": T0, "finished_at": began},
        {"run_id": RUN, "step": "map-notes", "status": "done", "rows": 2,
         "started_at": began, "finished_at": map_done},
        {"run_id": RUN, "step": "reduce-summary", "status": "done", "rows": 1,
         "started_at": map_done, "finished_at": reduce_done},
        {"run_id": RUN, "step": "rlm-answer", "status": "done", "rows": 1,
         "started_at": reduce_done, "finished_at": done},
    ])
    store.insert_rows("runs", [{"run_id": RUN, "recipe": "synthetic", "started_at": T0,
                                "finished_at": done, "status": "done", "params": "{}",
                                "inputs": "{}", "summary": json.dumps({"calls": len(calls)})}])
    return {"calls": calls, "rows": rows}


@pytest.fixture
def synthetic_db(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "run.duckdb"
    with Store.open(path) as store:
        expected = build_store(store)
    return path, expected


def _instance(schema: dict[str, Any], text: str, defs: dict[str, Any]) -> Any:
    """The smallest value valid under a field's JSON schema (strings: ``text``)."""
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].rpartition("/")[2]], text, defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _instance(options[0], text, defs)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _instance(props[k], text, defs) for k in schema.get("required", props)}
    if kind == "array":
        return [_instance(schema.get("items", {}), text, defs)]
    return {"string": text, "integer": 0, "number": 0.0, "boolean": False}.get(
        kind, text)


@pytest.fixture
def typed_test_lm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deterministic test LM, but answering enum and record fields with valid values.

    Its stock answer for a field with no directive is the prompt's first line, which cannot
    parse as an enum or a record; here such fields get the first enum value or the smallest
    record its JSON schema allows (strings: that first line, lists: one element), so every
    recipe runs without parse failures and retries and estimates can be compared with runs.
    """
    import ast
    import re

    from rlm_dsl.runtime.lm import testing

    stock = testing.answer
    schemas = re.compile(r"\[\[ ## (\w+) ## \]\]\n\{\1\}\s+# note: the value you produce "
                         r"must adhere to the JSON schema: (\{.*\})")

    def answer(system: str, user: str) -> str:
        text = stock(system, user)
        first = (testing._section(user, "prompt").splitlines() or [""])[0]
        outputs = system.partition("Your output fields are:")[2].partition("All interactions")[0]
        found = dict(schemas.findall(system))
        for name, kind in testing._OUTPUTS.findall(outputs):
            value: Any = None
            if kind.startswith("Literal["):
                value = ast.literal_eval(kind[len("Literal"):])[0]
            elif name in found:
                schema = json.loads(found[name])
                value = json.dumps(_instance(schema, first, schema.get("$defs", {})))
            if value is not None:
                text = re.sub(rf"(\[\[ ## {name} ## \]\]\n)(.*?)(\n\n\[\[ ## )",
                              lambda m, v=value: m.group(1) + v + m.group(3), text, flags=re.S)
        return text

    monkeypatch.setattr(testing, "answer", answer)


TRACED = '''recipe traced "Map, tree reduce and a depth-2 rlm step over one input."
input notes: lines
chunk notes -> parts by lines(2)
map parts -> n: int """
  SUM
  {{ chunk.text }}
"""
reduce n -> total: int by tree(fanin=2) """
  SUM
  {% for i in items %}{{ i }}
  {% endfor %}
"""
rlm notes -> answer: str with max_iterations=4, max_llm_calls=8, depth=2 """
  Find the vault code.
"""
output total, answer
'''
NOTES = "day 1\nday 2\nthe vault code K9Q is taped under desk 3\nday 4\n" \
        "day 5\nday 6\nday 7\nday 8\n"
ACTION_MARK = "You answer a task over an input"  # the REPL action prompt (runtime/repl/prompts)


def _action(code: str) -> str:
    return (f"[[ ## reasoning ## ]]\nnext step\n\n[[ ## code ## ]]\n```python\n{code}\n```\n\n"
            "[[ ## completed ## ]]")


def _repl_script(testing: Any, stock: Any) -> Any:
    """Test-LM answers, except REPL actions: the root asks a sub-agent (rlm_query) about the
    hit, the sub-agent asks llm_query twice — calls at depths 0, 1 and 2."""
    import re

    def answer(system: str, user: str) -> str:
        if not system:  # llm_query: a bare prompt, answered as text
            return testing.compute(user, "str")
        if ACTION_MARK not in system:
            return stock(system, user)
        turn = len(re.findall(r"=== Step \d+ ===", user))
        if "Find the vault code." not in user:  # the child's task
            read = "llm_query('FIND \"code\"\\n' + context.lines(0, 5))"
            return _action(f"print({read})" if turn == 0 else f"SUBMIT({read})")
        steps = ["hits = context.search('vault')\nprint(hits)",
                 "answer = rlm_query([h['text'] for h in hits], 'Which code?')\nprint(answer)",
                 "SUBMIT(answer)"]
        return _action(steps[min(turn, len(steps) - 1)])

    return answer


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store written by the real executor: map, tree reduce, depth-2 rlm (test LM)."""
    import rlm_dsl
    from rlm_dsl.runtime.lm import testing

    folder = tmp_path_factory.mktemp("real")
    spec, notes = folder / "traced.rlm", folder / "notes.txt"
    spec.write_text(TRACED)
    notes.write_text(NOTES)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(testing, "answer", _repl_script(testing, testing.answer))
        result = rlm_dsl.load(spec).run(inputs={"notes": str(notes)}, lm="test",
                                        db=folder / "run.duckdb")
    assert result.outputs["total"] == sum(range(1, 9)) + 9  # and the 9 inside "K9Q"
    assert result.outputs["answer"] == "the vault code K9Q is taped under desk 3"
    return folder / "run.duckdb"
