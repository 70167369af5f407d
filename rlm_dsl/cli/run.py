"""``rlm run FILE``: execute a recipe over its inputs and print the outputs and a summary line.

CLI stage over :func:`rlm_dsl.runtime.executor.execute`. Inputs come from ``--input name=path``
(repeatable; a name given twice gets several paths) and fall back to each input's ``path=``;
params from ``--param k=v``; ``--lm`` is the default LM (steps without ``using NAME``) and
``--lm-all`` replaces every binding too, with ``--api-base URL`` and ``--api-key-env VAR`` as
its options (an OpenAI-compatible server: ``--lm openai/<name>``);
``--pull`` fetches the pinned local model first when it is missing. ``--incremental`` (same
``--db``) reads only what log inputs gained and recomputes downstream through the LM cache.
Outputs go to stdout (text, or one JSON object with ``--json``), then one summary line (calls,
cache hits, tokens, cost, wall time, failures) to stderr. Live progress
(:class:`~rlm_dsl.runtime.observe.progress.RunProgress`: a bar per step with done / total, rate and
ETA, and the spend against the budget) is shown only when stderr is a terminal and ``--quiet``
is off. ``--executor ray`` (``--ray-workers N``) has Ray workers answer the LM calls while this
process keeps the plan, budget, cache and results (:mod:`rlm_dsl.runtime.lm.ray_engine`).
``--estimate`` forecasts the run first (:func:`~rlm_dsl.runtime.estimator.estimate_plan`)
and ends with an "estimate vs actual" line. A budget refusal exits 3 with the exact command to
resume.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from rlm_dsl.api import load
from rlm_dsl.cli import envelope
from rlm_dsl.cli.app import app, err, out
from rlm_dsl.cli.plan import parse_pairs
from rlm_dsl.errors import RowsFailed, SpecError
from rlm_dsl.runtime.executor import RunOptions, RunResult, execute
from rlm_dsl.runtime.observe.progress import RunProgress
from rlm_dsl.runtime.optimize.optimizer import load_optimized
from rlm_dsl.runtime.runinfo import summary_line
from rlm_dsl.runtime.steps.evidence import citation
from rlm_dsl.runtime.steps.reuse import explain_lines


class Executor(StrEnum):
    """Where a run's LM calls are answered."""

    local = "local"
    ray = "ray"


@app.command()
def run(
    context: typer.Context,
    file: Annotated[Path, typer.Argument(help="The spec (.rlm) to run.")],
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="name=path.")] = None,
    params: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value.")] = None,
    lm: Annotated[str | None, typer.Option(
        "--lm", help="The default LM: for steps without 'using NAME'.")] = None,
    lm_all: Annotated[str | None, typer.Option(
        "--lm-all", help="An LM for every step, replacing every 'using NAME' binding.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="DuckDB file (resume).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 8,
    max_calls: Annotated[int | None, typer.Option("--max-calls", min=0)] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=0)] = None,
    max_usd: Annotated[float | None, typer.Option("--max-usd", min=0)] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    no_opt: Annotated[bool, typer.Option("--no-opt", help="Ignore <spec>.opt.json.")] = False,
    api_base: Annotated[str | None, typer.Option(
        "--api-base", help="Server URL for the --lm model (OpenAI-compatible).")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="Environment variable holding the --lm model's API key.")] = None,
    pull: Annotated[bool, typer.Option(
        "--pull", help="Download the local model first if it is missing.")] = False,
    incremental: Annotated[bool, typer.Option(
        "--incremental", help="With the same --db: read only new log lines, recompute the rest "
        "from the cache.")] = False,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Say per step whether its stored result was reused or why it ran.",
    )] = False,
    estimate: Annotated[bool, typer.Option(
        "--estimate", help="Forecast calls and tokens first; compare with the run at the end.",
    )] = False,
    executor: Annotated[Executor, typer.Option(
        "--executor", help="Where LM calls run: in this process, or on Ray workers "
        "($RAY_ADDRESS or a local cluster).")] = Executor.local,
    ray_workers: Annotated[int | None, typer.Option(
        "--ray-workers", min=1, help="Ray workers per model (default: the cluster's CPUs).",
    )] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=1, help="Seconds to wait for one LM request (default 120; an lm's "
        "own timeout= wins).")] = None,
    allow_weak_sandbox: Annotated[bool, typer.Option(
        "--allow-weak-sandbox", help="Run `rlm` steps even where the REPL sandbox has no kernel "
        "isolation (no bubblewrap or seccomp here).")] = False,
) -> None:
    """Run a recipe."""
    program = load(file)
    plan = program.plan
    note = load_optimized(program, file, no_opt)
    if note:
        err.print(note, markup=False, highlight=False)
    if lm and lm_all:
        raise SpecError("--lm sets the default LM, --lm-all the LM of every step: pass one")
    lm = lm or lm_all
    lm_options = _lm_options(lm, api_base, api_key_env, pull)
    options = RunOptions(
        inputs=_inputs(inputs or []), params=parse_pairs(params or [], "--param"), lm=lm,
        lm_all=lm_all is not None,
        lm_options=lm_options, db=db,
        concurrency=concurrency, max_calls=max_calls, max_tokens=max_tokens, max_usd=max_usd,
        retry_failed=retry_failed, incremental=incremental, executor=str(executor),
        ray_workers=ray_workers, allow_weak_sandbox=allow_weak_sandbox, timeout=timeout,
    )
    options.command = resume_command(context)
    _connect(options.executor, ray_workers)
    forecast = _forecast(plan, options, quiet) if estimate else None
    try:
        with _progress(not quiet and err.is_terminal) as progress:
            options.progress = progress
            result = execute(plan, options, program.step_modules)
    except RowsFailed as exc:  # the outputs stand, less the failed rows: show them
        if not as_json:  # (with --json, main prints the one object, error included)
            _report(exc.result, False, forecast, explain)  # type: ignore[attr-defined]
        raise
    _report(result, as_json, forecast, explain)


def _report(result: RunResult, as_json: bool, forecast: Any, explain: bool) -> None:
    """Outputs to stdout; the step decisions (``--explain``), warnings and the summary line to
    stderr."""
    if as_json:
        envelope.write(envelope.run_object(result))
    else:
        _print_outputs(result.outputs, result.evidence)
    if explain:
        for line in explain_lines(result.summary.get("steps") or {}):
            err.print(line, markup=False, highlight=False)
    for warning in result.warnings:
        err.print(warning, markup=False, highlight=False)
    err.print(summary_line(result.summary), markup=False, highlight=False)
    if forecast is not None:
        err.print(forecast.versus(result.summary), markup=False, highlight=False)


def _connect(executor: str, ray_workers: int | None) -> None:
    """Join or start the Ray cluster before the run and say which (``--executor ray``)."""
    if executor != "ray":
        if ray_workers is not None:
            raise SpecError("--ray-workers sets the Ray pool: pass --executor ray too")
        return
    from rlm_dsl.runtime.lm.ray_engine import connect

    err.print(connect(ray_workers), markup=False, highlight=False)


def _forecast(plan: Any, options: RunOptions, quiet: bool) -> Any:
    """The run's cost forecast (shown as a table unless ``--quiet``)."""
    from rlm_dsl.runtime.estimator import estimate_plan

    forecast = estimate_plan(plan, options.inputs, options.params, options.lm, options.lm_all)
    if not quiet:
        forecast.render(err)
    return forecast


def _lm_options(lm: str | None, api_base: str | None, api_key_env: str | None,
                pull: bool) -> dict[str, str]:
    """The ``--lm`` model's options from the command line (``--pull`` runs here)."""
    given = {k: v for k, v in (("api_base", api_base), ("api_key_env", api_key_env)) if v}
    if given and not lm:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise SpecError(f"{flag} sets an option of the --lm model: pass --lm too")
    if pull:
        if lm not in (None, "local"):
            raise SpecError(f"--pull fetches the local model; --lm {lm} is not 'local'")
        from rlm_dsl.runtime.lm.models import ensure_local_model

        ensure_local_model(pull=True)
    return given


def _inputs(values: list[str]) -> dict[str, list[str] | str]:
    found: dict[str, list[str]] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path:
            raise SpecError(f"--input expects name=path, got {value!r}")
        found.setdefault(name.strip(), []).append(path)
    return {k: v[0] if len(v) == 1 else v for k, v in found.items()}


def resume_command(context: typer.Context) -> Callable[[dict[str, str]], str]:
    """``command(changes)``: this very ``rlm run`` command line — every flag as given — with
    ``changes`` applied (``{"--max-calls": "120"}`` sets a value, ``{"--retry-failed": ""}``
    turns a switch on)."""
    def command(changes: dict[str, str]) -> str:
        argv = ["rlm", "run"]
        seen = set()
        for param in context.command.params:
            value = context.params.get(param.name or "")
            flag = max(param.opts, key=len)
            if flag in changes:
                seen.add(flag)
                value = True if _is_flag(param) else changes[flag]
            argv += _argv(param, flag, value)
        for flag, value in changes.items():
            if flag not in seen:
                argv += [flag, value] if value else [flag]
        return shlex.join(argv)

    return command


def _argv(param: Any, flag: str, value: Any) -> list[str]:
    """How click parameter ``param`` set to ``value`` is written on a command line ([] for its
    default)."""
    if value is None or value == param.default or value == [] or (_is_flag(param) and not value):
        return []
    if param.param_type_name == "argument":
        return [str(value)]
    if _is_flag(param):
        return [flag]
    values = value if param.multiple else [value]
    return [part for v in values for part in (flag, str(v))]


def _is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False))


@contextmanager
def _progress(show: bool) -> Iterator[RunProgress | None]:
    """Live bars and spend on a terminal (the executor binds the run's budget to them)."""
    if not show:
        yield None
        return
    with RunProgress(err) as progress:
        yield progress


def _print_outputs(outputs: dict[str, Any], evidence: dict[str, list[dict[str, Any]]]
                   ) -> None:
    for name, value in outputs.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str,
                                                               ensure_ascii=False, indent=2)
        if len(outputs) > 1:
            out.print(f"{name}:", markup=False, highlight=False)
        out.print(text, markup=False, highlight=False)
        _print_citations(evidence.get(name) or [])


def _print_citations(rows: list[dict[str, Any]], most: int = 10) -> None:
    """``  [1] source:line`` for the rows a value rests on — on stderr, beside the summary, so
    that stdout stays the value alone for pipes."""
    for number, row in enumerate(rows[:most], 1):
        err.print(f"  [{number}] {citation(row)}", markup=False, highlight=False)
    if len(rows) > most:
        err.print(f"  … and {len(rows) - most} more (evidence column of its table)",
                  markup=False, highlight=False)
