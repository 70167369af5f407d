"""Record / replay: model id ``replay:<run.duckdb>`` answers every call from a recorded run.

Runtime stage: LM back ends (registered with ``register_backend("replay", …)`` on first use).
Every run records its LM calls in ``lm_calls`` (rendered messages and response), so any run —
free-form ``rlm`` steps with a real model included — can be replayed offline:
``rlm run spec.rlm --lm replay:recorded.duckdb``, or from an export of that ``lm_calls`` table
as JSON lines (``replay:calls.jsonl``: small and diffable, how test recordings are kept). A
request is answered by the recorded call whose rendered messages are exactly the same (the model
id and settings are not part of the key: the replay stands in for them); when several recorded
calls share the messages, the last answer recorded wins. A request no recorded call matches
raises :class:`ReplayMiss`, naming the step and chunk; it stops the run (exit 4). The replay
reports the recorded model's context window (kept in the recorded run's summary,
``summary.models``; a JSON-lines export has none: 8,192 tokens, the local model's), so prompts
are split as they were; option ``window=N`` overrides it. Token counts use the offline counter,
not the recorded model's own tokenizer: a ``chunk … by tokens`` step may cut differently.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from typing import Any

import duckdb
from dspy.lm15 import Message, Request, Response, TextPart, Usage, response_to_events

from rlm_dsl.errors import InputError, LMError, Unrecoverable
from rlm_dsl.runtime.lm.gate import current_scope, request_messages
from rlm_dsl.runtime.lm.resolve import DEFAULT_CONTEXT_WINDOW, ResolvedLM, register_backend


class ReplayMiss(Unrecoverable):
    """No recorded call has these messages: the replayed run differs from the recorded one.
    Retrying cannot help, so the run stops at the first miss."""


def messages_key(messages: list[dict[str, str]]) -> str:
    """The replay key: a hash of the rendered messages, exactly."""
    text = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ReplayEngine:
    """A DSPy engine answering from a recorded run's ``lm_calls``."""

    def __init__(self, path: str, answers: dict[str, str], model: str) -> None:
        self.path, self.answers, self.model = path, answers, model

    def complete(self, request: Request) -> Response:
        answer = self.answers.get(messages_key(request_messages(request)))
        if answer is None:
            scope = current_scope()
            where = f"step '{scope.step}'" if scope.step else "a call outside any step"
            if scope.chunk_id is not None:
                where += f" chunk {scope.chunk_id}"
            raise ReplayMiss(f"replay: {self.path} has no recorded answer for {where} (depth "
                             f"{scope.depth}): its prompt differs from every recorded call")
        return Response(id=None, model=self.model, message=Message.assistant([TextPart(answer)]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0,
                                                          total_tokens=0))

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Nothing to release: the recording was read when the model was resolved."""


def read_recording(path: str) -> tuple[dict[str, str], str, int | None]:
    """The recorded answers by key, the model most calls used, and its context window."""
    if not os.path.isfile(path):
        raise InputError(f"replay: {path}: no such file (record a run with --db first)")
    try:
        con = _open_recording(path)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"replay: cannot read {path} (it must not be this run's --db): "
                         f"{first}") from None
    try:
        rows = con.execute("SELECT messages, response, model FROM lm_calls WHERE error IS NULL "
                           "AND response IS NOT NULL ORDER BY started_at, call_id").fetchall()
        summaries = [s for (s,) in con.execute(
            "SELECT summary FROM runs WHERE summary IS NOT NULL ORDER BY started_at").fetchall()]
    except duckdb.Error as exc:
        raise InputError(f"replay: {path} holds no recorded run ({exc})") from None
    finally:
        con.close()
    if not rows:
        raise InputError(f"replay: {path} holds no finished LM call to replay")
    answers = {messages_key(json.loads(messages)): response for messages, response, _ in rows}
    model = Counter(m for _, _, m in rows).most_common(1)[0][0]
    windows = [json.loads(s).get("models", {}).get(model) for s in summaries]
    return answers, model, next((w for w in reversed(windows) if w), None)


def _open_recording(path: str) -> duckdb.DuckDBPyConnection:
    """A run's database read-only, or an ``lm_calls`` export (``.jsonl``) as a view."""
    if not path.endswith((".jsonl", ".json")):
        return duckdb.connect(path, read_only=True)
    con = duckdb.connect()
    literal = "'" + path.replace("'", "''") + "'"  # a view's SQL cannot take parameters
    con.execute(f"CREATE VIEW lm_calls AS SELECT * FROM read_json({literal}, format = "
                "'newline_delimited', columns = {call_id: 'VARCHAR', model: 'VARCHAR', "
                "messages: 'JSON', response: 'VARCHAR', error: 'VARCHAR', started_at: "
                "'TIMESTAMP'})")
    con.execute("CREATE TABLE runs (started_at TIMESTAMP, summary JSON)")
    return con


def resolve_replay_lm(model_id: str, options: dict[str, Any]) -> ResolvedLM:
    """The :class:`ResolvedLM` for ``replay:<path>`` (the ``register_backend`` factory)."""
    path = model_id.partition(":")[2].strip()
    if not path:
        raise LMError("model 'replay' needs a recorded run: --lm replay:run.duckdb")
    unknown = sorted(set(options) - {"window"})
    if unknown:
        raise LMError(f"model '{model_id}': unknown option(s) {', '.join(unknown)}; known: window")
    answers, model, window = read_recording(os.path.expanduser(path))
    return ResolvedLM(
        model_id=model_id,
        engine=ReplayEngine(path, answers, model),
        context_window=int(options.get("window") or window or DEFAULT_CONTEXT_WINDOW),
        price=(0.0, 0.0),
        lm_kwargs={"num_retries": 0},
    )


register_backend("replay", resolve_replay_lm)
