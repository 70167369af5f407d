"""Free-form `rlm` step: a ``dspy.RLM`` whose REPL is our sandbox and whose tools reach the store.

Runtime stage for plan steps of kind ``rlm``. :class:`RlmStep` *is* a ``dspy.RLM`` subclass, so its
``generate_action`` and ``extract`` predictors keep their names and stay optimizable; it swaps in
our instructions, our :class:`~rlm_dsl.runtime.repl.sandbox.SandboxInterpreter`, a lazy
``context`` over the step's source table and the host tools (``sql``, ``llm_query``,
``llm_query_batched``, ``rlm_query``). ``rlm_query`` runs a child RLM of the same kind with the
sub-LM one level deeper, up to the step's ``depth``; every depth draws on one call budget
(``max_llm_calls``). Each REPL iteration and each sub-call becomes a row of ``rlm_iterations``:
a row's id is ``<parent_call_id or "root">.<iteration>``, so the recursion tree is the prefix
tree of those ids. In ``lm_calls``, a root or child RLM's own calls carry its invocation's
``parent_call_id`` as ``parent_id`` (NULL at the root), and a sub-call's LM call carries that
sub-call row's id.
"""

from __future__ import annotations

import contextlib
import contextvars
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.primitives.code_interpreter import CodeInterpreterError
from dspy.primitives.repl_types import REPLHistory, REPLVariable
from dspy.utils.exceptions import AdapterParseError, ContextWindowExceededError

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.templates import environment
from rlm_dsl.compiler.types import Prim
from rlm_dsl.errors import BudgetExhausted, RlmError, SpecError, caused_by
from rlm_dsl.runtime.lm.gate import call_scope, current_scope
from rlm_dsl.runtime.lm.signatures import annotation, camel, to_plain
from rlm_dsl.runtime.repl.invocation import CallBudget, Invocation, StepSpent
from rlm_dsl.runtime.repl.prompts import (
    TOOL_DOCS,
    action_instructions,
    context_variable,
    describe_output,
)
from rlm_dsl.runtime.repl.sandbox import SandboxInterpreter, SandboxLimits
from rlm_dsl.runtime.repl.snapshot import SqlSnapshot
from rlm_dsl.runtime.repl.tools import TableSource, TextSource, readonly_sql

UNREADABLE_ACTION = (
    "[Error] your reply could not be read. Answer with a `[[ ## reasoning ## ]]` section, then a "
    "`[[ ## code ## ]]` section holding one ```python block, then `[[ ## completed ## ]]`."
)
_ACTIVE: contextvars.ContextVar[Invocation] = contextvars.ContextVar("rlm_invocation")


class ReplError(RlmError):
    """The `rlm` step cannot finish: the REPL failed for good, or no answer was readable."""

    exit_code = 4


@dataclass(slots=True)
class RlmResult:
    """What an `rlm` step produced: the typed value, every recorded row, sandbox warnings."""

    value: Any
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Factory:
    """Makes this invocation's sandbox; ``dspy.RLM`` reads ``execution_instructions`` from it."""

    execution_instructions = SandboxInterpreter.execution_instructions

    def __init__(self, limits: SandboxLimits, invocation: Invocation) -> None:
        self.limits, self.invocation = limits, invocation

    def __call__(self) -> SandboxInterpreter:
        interpreter = SandboxInterpreter(limits=self.limits)
        self.invocation.interpreters.append(interpreter)
        return interpreter


class RlmStep(dspy.RLM):
    """The `rlm` step of a plan as a DSPy module; run it with :meth:`run`."""

    def __init__(
        self, step: Step, *, context_window: int = 8192, count_tokens: Any = None,
        max_workers: int = 16, limits: SandboxLimits | None = None, sub_agent: bool = False,
    ) -> None:
        if step.kind != "rlm" or step.output is None:
            raise SpecError(f"step {step.id!r} is not an rlm step with a typed output")
        opts = step.options
        self.step, self.sub_agent = step, sub_agent
        self.depth = int(opts.get("depth", 1))
        allowed = tuple(opts.get("tools") or TOOL_DOCS)
        self.tool_names = tuple(t for t in allowed if t != "rlm_query" or self.depth >= 2)
        self.context_window, self.max_workers = context_window, max_workers
        self.count_tokens = count_tokens or (lambda text: -(-len(text) // 4))
        timeout = float(opts.get("timeout", 30))
        total = timeout * int(opts.get("max_iterations", 20))  # the step's REPL wall clock
        self.limits = limits or SandboxLimits(timeout_s=timeout, cpu_s=timeout, total_s=total)
        name = "answer" if sub_agent else step.output.name
        out_type = annotation(step.output.type) if not sub_agent else str
        signature = dspy.Signature(
            {"task": (str, dspy.InputField(desc="what to find out about the input")),
             name: (out_type, dspy.OutputField(desc=f"a value of type {step.output.type}"
                                               if not sub_agent else "the answer"))},
            "Carry out `task` over the input held in `context`.",
        )
        signature = type(camel("rlm", step.name), (signature,), {"__doc__": signature.instructions})
        self.output_name = name
        super().__init__(
            signature, max_iters=int(opts.get("max_iterations", 20)),
            max_llm_calls=int(opts.get("max_llm_calls", 50)),
            max_output_chars=self.limits.max_output_chars,
            interpreter_factory=SandboxInterpreter,  # run() passes one bound to its invocation
        )
        if opts.get("max_tokens"):  # caps each action and the extract fallback, not sub-calls
            for predictor in (self.generate_action, self.extract):
                predictor.config["max_tokens"] = int(opts["max_tokens"])

    # -- public API ----------------------------------------------------------------------------

    def run(
        self, store: Any, source_table: str, params: dict[str, Any], root_lm: dspy.LM,
        sub_lm: dspy.LM, run_id: str, chunk_id: int | None = None,
    ) -> RlmResult:
        """Run the step over ``source_table``; record and return its trajectory."""
        task = environment().from_string(self.step.prompt or "").render(**params).strip()
        if chunk_id is None:
            chunk_id = current_scope().chunk_id
        invocation = Invocation(
            store=store, run_id=run_id, step=self.step.id, chunk_id=chunk_id, depth=0,
            node="root", parent_call_id=None, source=TableSource(store, source_table),
            snapshot=SqlSnapshot(store),
            budget=CallBudget(self.max_llm_calls), root_lm=root_lm, sub_lm=sub_lm,
        )
        with contextlib.closing(invocation.snapshot):  # children share it
            try:
                prediction = self._invoke(invocation, task, root_lm)
            except CodeInterpreterError as exc:
                raise ReplError.for_step(self.step.id, f"the REPL failed: {exc}") from None
            except Exception as exc:
                spent = _budget_cause(exc)
                if spent is not None:
                    raise spent from None
                if caused_by(exc, ContextWindowExceededError):
                    raise ReplError.for_step(
                        self.step.id, "the REPL history outgrew the root LM's context window "
                        f"after {invocation.iteration} iteration(s); give the model a larger "
                        "window (n_ctx) or lower max_iterations") from None
                raise
        value = to_plain(getattr(prediction, self.output_name))
        return RlmResult(value, list(invocation.trajectory), invocation.all_warnings())

    def _invoke(self, invocation: Invocation, task: str, lm: dspy.LM) -> dspy.Prediction:
        token = _ACTIVE.set(invocation)
        try:
            with dspy.context(lm=lm):
                return self(task=task, interpreter_factory=_Factory(self.limits, invocation))
        finally:
            _ACTIVE.reset(token)

    # -- dspy.RLM hooks ------------------------------------------------------------------------

    def _build_signatures(self) -> tuple[type[dspy.Signature], type[dspy.Signature]]:
        action, extract = super()._build_signatures()
        outputs = self.signature.output_fields
        rules = f"\nExecution environment:\n{SandboxInterpreter.execution_instructions}\n"
        out_type = Prim("str") if self.sub_agent else self.step.output.type
        instructions = action_instructions(
            "\n".join(describe_output(name, out_type) for name in outputs),
            ", ".join(outputs), self.tool_names, self.max_llm_calls, self.max_iters,
        )
        self._initial_execution_instructions = SandboxInterpreter.execution_instructions
        self._initial_sub_agent_rules = ""
        self._initial_interpreter_rules = rules
        return action.with_instructions(instructions + "\n" + rules), extract

    def _setup_facade(self, repl: Any, budget: Any, interpreter_factory: Any) -> str:
        return ""  # no in-sandbox dspy: recursion goes through rlm_query, on our budget

    def _prepare_execution_tools(self, budget: Any = None) -> dict[str, Any]:
        invocation = _ACTIVE.get()
        tools = {"_context": invocation.source, "sql": self._sql_tool(invocation),
                 "llm_query": self._llm_query_tool(invocation),
                 "llm_query_batched": self._batched_tool(invocation),
                 "rlm_query": self._rlm_query_tool(invocation)}
        return {k: v for k, v in tools.items() if k == "_context" or k in self.tool_names}

    def _build_variables(self, **input_args: Any) -> list[REPLVariable]:
        invocation = _ACTIVE.get()
        info = invocation.source("info")
        facts = {
            "sub-LM window": f"about {self.context_window:,} tokens (≈ {self.context_window * 4:,}"
                             " characters) per llm_query prompt",
            "sub-LM calls left": invocation.budget.left(),
            "recursion depth": f"{invocation.depth} (rlm_query "
                               f"{'' if invocation.depth + 2 <= self.depth else 'not '}available)",
        }
        tables = invocation.tables() if "sql" in self.tool_names else {}
        preview = invocation.source("lines", 0, 5)[:1000]
        return [*super()._build_variables(**input_args),
                context_variable(info, preview, tables, facts)]

    def _execute_iteration(self, repl: Any, variables: Any, history: REPLHistory,
                           iteration: int, *args: Any) -> dspy.Prediction | REPLHistory:
        invocation = _ACTIVE.get()
        invocation.begin(iteration + 1)
        if invocation.depth > 0:
            invocation.budget.reserve(1, "a sub-agent step", fatal=True)
        with call_scope(step=invocation.step, chunk_id=invocation.chunk_id,
                        depth=invocation.depth, parent_id=invocation.parent_call_id):
            try:
                result = super()._execute_iteration(repl, variables, history, iteration, *args)
            except AdapterParseError as exc:  # small models: show the problem, spend the step
                result = history.append(code=str(exc.lm_response or "")[:4000],
                                        output=UNREADABLE_ACTION)
        entry = result.trajectory[-1] if isinstance(result, dspy.Prediction) else \
            result.entries[-1].model_dump()
        invocation.record_iteration(entry)
        return result

    def _extract_fallback(self, variables: Any, history: REPLHistory,
                          output_field_names: list[str]) -> dspy.Prediction:
        invocation = _ACTIVE.get()
        invocation.begin(self.max_iters + 1)
        with call_scope(step=invocation.step, chunk_id=invocation.chunk_id,
                        depth=invocation.depth, parent_id=invocation.parent_call_id):
            try:
                prediction = super()._extract_fallback(variables, history, output_field_names)
            except AdapterParseError as exc:
                invocation.record_iteration({"reasoning": "iterations used up: extract",
                                             "code": "", "output": f"[Error] {exc}"})
                raise ReplError.for_step(self.step.id, "the model never called SUBMIT and its "
                                         "final answer could not be parsed") from None
        values = {name: to_plain(getattr(prediction, name)) for name in output_field_names}
        invocation.record_iteration({"reasoning": "iterations used up: extract", "code": "",
                                     "output": f"EXTRACT: {values}"})
        return prediction

    # -- host tools ----------------------------------------------------------------------------

    def _sql_tool(self, invocation: Invocation):
        def sql(query: str) -> dict[str, Any]:
            return readonly_sql(invocation.snapshot, query)

        return sql

    def _llm_query_tool(self, invocation: Invocation):
        def llm_query(prompt: str) -> str:
            refusal = self._too_long(prompt)
            if refusal:
                invocation.record_call("llm_query", prompt, None, refusal)
                return refusal
            invocation.budget.reserve(1, "llm_query")
            return self._sub_call(invocation, "llm_query", prompt)

        return llm_query

    def _batched_tool(self, invocation: Invocation):
        def llm_query_batched(prompts: list[str]) -> list[str]:
            if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
                raise TypeError("llm_query_batched(prompts) takes a list of strings")
            refusals = [self._too_long(p) for p in prompts]
            invocation.budget.reserve(sum(r is None for r in refusals), "llm_query_batched")
            answers: list[str | None] = list(refusals)
            todo = [i for i, r in enumerate(refusals) if r is None]
            with ThreadPoolExecutor(max_workers=max(1, min(self.max_workers, len(todo)))) as pool:
                futures = {i: pool.submit(contextvars.copy_context().run, self._sub_call,
                                          invocation, "llm_query_batched", prompts[i])
                           for i in todo}
                for i, future in futures.items():
                    answers[i] = future.result()
            return [a or "" for a in answers]

        return llm_query_batched

    def _rlm_query_tool(self, invocation: Invocation):
        def rlm_query(sub_context: Any, question: str) -> str:
            if invocation.depth + 2 > self.depth:
                raise RuntimeError(
                    f"rlm_query is not available at depth {invocation.depth}: this step allows "
                    f"depth {self.depth}; use llm_query on smaller pieces")
            call_id = invocation.next_call_id()
            child = invocation.child(call_id, TextSource(_as_rows(sub_context)))
            label = f"rlm_query(<{child.source('info')['n_rows']} rows>, {question!r})"
            try:
                answer, error = str(self._child(child, str(question))), None
            except (StepSpent, ReplError, CodeInterpreterError) as exc:  # the parent goes on
                answer, error = f"[ERROR] the sub-agent stopped: {exc}", str(exc)
            except Exception as exc:
                spent = _budget_cause(exc)
                invocation.record_call("rlm_query", label, None,
                                       f"{type(spent or exc).__name__}: {spent or exc}",
                                       call_id=call_id)
                if spent is not None:  # the run is out of budget: stop every depth
                    raise spent from None
                raise
            invocation.record_call("rlm_query", label, answer, error, call_id=call_id)
            return answer

        return rlm_query

    def _child(self, child: Invocation, question: str) -> Any:
        module = RlmStep(self.step, context_window=self.context_window,
                         count_tokens=self.count_tokens, max_workers=self.max_workers,
                         limits=self.limits, sub_agent=True)
        module.generate_action.demos = list(self.generate_action.demos)
        prediction = module._invoke(child, question, child.sub_lm)
        return to_plain(prediction.answer)

    def _sub_call(self, invocation: Invocation, tool: str, prompt: str) -> str:
        call_id = invocation.next_call_id()
        with call_scope(step=invocation.step, chunk_id=invocation.chunk_id,
                        depth=invocation.depth + 1, parent_id=call_id):
            try:
                text = _lm_text(invocation.sub_lm(prompt))
            except Exception as exc:
                spent = _budget_cause(exc)
                error = f"{type(spent or exc).__name__}: {spent or exc}"
                invocation.record_call(tool, prompt, None, error, call_id=call_id)
                if spent is not None:
                    raise spent from None
                return f"[ERROR] {error}"
        invocation.record_call(tool, prompt, text, None, call_id=call_id)
        return text

    def _too_long(self, prompt: Any) -> str | None:
        if not isinstance(prompt, str) or not prompt:
            return "[ERROR] the prompt must be a non-empty string"
        tokens = self.count_tokens(prompt)
        limit = self.context_window - min(1024, self.context_window // 8)
        if tokens <= limit:
            return None
        return (f"[ERROR] prompt too long for the sub-LM: about {tokens:,} tokens, but its window "
                f"is {self.context_window:,} tokens ({limit:,} left for a prompt). Split the text "
                "(e.g. context.chunks(n)) and query the pieces; nothing was spent.")


def _as_rows(sub_context: Any) -> list[str]:
    if isinstance(sub_context, str):
        return sub_context.split("\n")
    if isinstance(sub_context, list):
        return [r["text"] if isinstance(r, dict) and "text" in r else str(r) for r in sub_context]
    raise TypeError("rlm_query(sub_context, question): sub_context must be text or a list of "
                    "lines/rows")


def _budget_cause(exc: BaseException) -> BudgetExhausted | None:
    """The run-budget refusal behind ``exc`` (DSPy wraps engine errors), if that is what it is."""
    return caused_by(exc, BudgetExhausted)


def _lm_text(response: Any) -> str:
    if isinstance(response, list) and response:
        first = response[0]
        text = first.get("text") if isinstance(first, dict) else first
    else:
        text = getattr(response, "text", None)
    if not isinstance(text, str):
        raise TypeError(f"the sub-LM returned no text ({type(response).__name__})")
    return text
