"""``rlm run FILE``: execute a recipe over its inputs and print the outputs and a summary line.

CLI stage over :func:`rlm_dsl.runtime.executor.execute`. Inputs come from ``--input name=path``
(repeatable; a name given twice gets several paths) and fall back to each input's ``path=``;
params from ``--param k=v``; ``--lm`` overrides every LM binding, with ``--api-base URL`` and
``--api-key-env VAR`` as its options (an OpenAI-compatible server: ``--lm openai/<name>``);
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
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from rlm_dsl.api import load
from rlm_dsl.cli.app import app, err, out
from rlm_dsl.cli.plan import parse_pairs
from rlm_dsl.errors import SpecError, StepFailed
from rlm_dsl.runtime.executor import RunOptions, execute
from rlm_dsl.runtime.observe.progress import RunProgress
from rlm_dsl.runtime.optimize.optimizer import load_optimized
from rlm_dsl.runtime.runinfo import summary_line


class Executor(StrEnum):
    """Where a run's LM calls are answered."""

    local = "local"
    ray = "ray"


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The spec (.rlm) to run.")],
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="name=path.")] = None,
    params: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value.")] = None,
    lm: Annotated[str | None, typer.Option("--lm", help="LM for every step.")] = None,
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
    lm_options = _lm_options(lm, api_base, api_key_env, pull)
    options = RunOptions(
        inputs=_inputs(inputs or []), params=parse_pairs(params or [], "--param"), lm=lm,
        lm_options=lm_options, db=db,
        concurrency=concurrency, max_calls=max_calls, max_tokens=max_tokens, max_usd=max_usd,
        retry_failed=retry_failed, incremental=incremental, executor=str(executor),
        ray_workers=ray_workers, allow_weak_sandbox=allow_weak_sandbox, timeout=timeout,
    )
    options.command = _resume_command(file, inputs or [], params or [], options)
    _connect(options.executor, ray_workers)
    forecast = _forecast(plan, options, quiet) if estimate else None
    with _progress(not quiet and err.is_terminal) as progress:
        options.progress = progress
        try:
            result = execute(plan, options, program.step_modules)
        except StepFailed as failure:
            if as_json:  # the failure as an object on stdout; the message still goes to stderr
                sys.stdout.write(json.dumps({"error": failure.to_dict()}, default=str) + "\n")
            raise
    _print_outputs(result.outputs, result.summary, as_json)
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

    forecast = estimate_plan(plan, options.inputs, options.params, options.lm)
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


def _resume_command(file: Path, inputs: list[str], params: list[str], options: RunOptions) -> Any:
    def command(flags: dict[str, str]) -> str:
        argv = ["rlm", "run", str(file)]
        for value in inputs:
            argv += ["--input", value]
        for value in params:
            argv += ["--param", value]
        if options.lm:
            argv += ["--lm", options.lm]
        for key, value in options.lm_options.items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        argv += ["--db", str(options.db)]
        if options.concurrency != 8:
            argv += ["--concurrency", str(options.concurrency)]
        if options.executor != "local":
            argv += ["--executor", options.executor]
        if options.ray_workers is not None:
            argv += ["--ray-workers", str(options.ray_workers)]
        caps = {"--max-calls": options.max_calls, "--max-tokens": options.max_tokens,
                "--max-usd": options.max_usd}
        for flag, value in caps.items():
            if flag in flags or value is not None:
                argv += [flag, flags.get(flag, str(value))]
        return shlex.join(argv)

    return command


@contextmanager
def _progress(show: bool) -> Iterator[RunProgress | None]:
    """Live bars and spend on a terminal (the executor binds the run's budget to them)."""
    if not show:
        yield None
        return
    with RunProgress(err) as progress:
        yield progress


def _print_outputs(outputs: dict[str, Any], summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"outputs": outputs, "summary": summary}, default=str,
                                    ensure_ascii=False, indent=2) + "\n")
        return
    for name, value in outputs.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str,
                                                               ensure_ascii=False, indent=2)
        if len(outputs) > 1:
            out.print(f"{name}:", markup=False, highlight=False)
        out.print(text, markup=False, highlight=False)
