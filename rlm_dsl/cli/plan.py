"""``rlm plan FILE``: compile a spec and show its plan as text, JSON, DOT or Mermaid.

With ``--estimate`` the plan is also forecast (LM calls, tokens, cost) over the given
``--input name=path`` / ``--param k=v`` values by ``rlm_dsl.runtime.estimator.estimate_plan``,
imported only then so that plain ``rlm plan`` never loads the runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rlm_dsl.cli.app import app, out
from rlm_dsl.compile import compile_file
from rlm_dsl.compiler.plan import Plan
from rlm_dsl.errors import SpecError

FORMATS = ("text", "json", "dot", "mermaid")
ESTIMATE_HELP = "Also forecast LM calls, tokens and cost over the inputs (nothing is spent)."
INPUT_HELP = "name=path of an input for --estimate (repeatable; default: the spec's path)."
PARAM_HELP = "name=value of a param for --estimate (repeatable)."


def parse_pairs(values: list[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a value without '=' is a usage error."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"{option} expects name=value, got {value!r}")
        pairs[key.strip()] = rest
    return pairs


def _render(plan: Plan, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n"
    return {"text": plan.dumps, "dot": plan.to_dot, "mermaid": plan.to_mermaid}[fmt]()


def _estimate(plan: Plan, inputs: dict[str, str], params: dict[str, str], lm: str | None,
              lm_all: bool) -> Any:
    try:
        from rlm_dsl.runtime.estimator import estimate_plan
    except ModuleNotFoundError as exc:
        if exc.name not in ("rlm_dsl.runtime.estimator", "rlm_dsl.runtime"):
            raise
        raise SpecError("--estimate is not available: rlm_dsl.runtime.estimator is missing "
                        "from this installation") from None
    return estimate_plan(plan, inputs=inputs, params=params, lm=lm, lm_all=lm_all)


@app.command()
def plan(
    file: Annotated[Path, typer.Argument(help="The spec (.rlm) to compile.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="text|json|dot|mermaid")] = "text",
    estimate: Annotated[bool, typer.Option(help=ESTIMATE_HELP)] = False,
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help=INPUT_HELP)] = None,
    params: Annotated[list[str] | None, typer.Option("--param", "-p", help=PARAM_HELP)] = None,
    lm: Annotated[str | None, typer.Option("--lm", help="Default LM (for --estimate).")] = None,
    lm_all: Annotated[str | None, typer.Option(
        "--lm-all", help="LM of every step, bindings included (for --estimate).")] = None,
) -> None:
    """Compile a spec and print its plan."""
    if fmt not in FORMATS:
        raise SpecError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    compiled = compile_file(file)
    if not estimate:
        typer.echo(_render(compiled, fmt), nl=False)
        return
    if lm and lm_all:
        raise SpecError("--lm sets the default LM, --lm-all the LM of every step: pass one")
    result = _estimate(compiled, parse_pairs(inputs or [], "--input"),
                       parse_pairs(params or [], "--param"), lm or lm_all, lm_all is not None)
    if fmt == "json":
        both = {"plan": compiled.to_json(), "estimate": result.to_json()}
        typer.echo(json.dumps(both, indent=2, ensure_ascii=False))
        return
    typer.echo(_render(compiled, fmt), nl=False)
    result.render(out)
