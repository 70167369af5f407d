"""The one error hierarchy of rlm-dsl.

Every failure a user can see is an :class:`RlmError` carrying the process exit code the CLI uses
(DESIGN §4: 0 ok, 1 spec/usage, 2 input, 3 budget exhausted, 4 LM/back-end). Compile errors live
in :mod:`rlm_dsl.compiler.diagnostics` and subclass :class:`SpecError`; runtime errors subclass the
others here. The CLI prints ``str(error)`` and exits with ``error.exit_code`` — never a traceback.
A step that fails during a run raises :class:`StepFailed` (miniwdl's ``RunFailed`` is the model):
it keeps the step, the chunk and the cause as objects, prints as one line for people and becomes
an object in ``rlm run --json`` (:meth:`StepFailed.to_dict`).
"""

from __future__ import annotations

from typing import Any, Self, TypeVar

E = TypeVar("E", bound=BaseException)


class RlmError(Exception):
    """Base of every error rlm-dsl raises on purpose."""

    exit_code: int = 1
    step_id: str | None = None  # set when the message names its step already ("step 'x': …")

    @classmethod
    def for_step(cls, step_id: str, message: str) -> Self:
        """``step 'x': message``, remembered as naming step ``step_id`` (not wrapped again)."""
        error = cls(f"step '{step_id}': {message}")
        error.step_id = step_id
        return error


class SpecError(RlmError):
    """The spec (or a command-line usage) is wrong: exit 1."""

    exit_code = 1


class InputError(RlmError):
    """An input file, parameter value, database or trainset is unusable: exit 2."""

    exit_code = 2


class BudgetExhausted(RlmError):
    """A call/token/dollar cap was reached; finished work is kept: exit 3."""

    exit_code = 3


class LMError(RlmError):
    """The LM or another back end failed in a way the run cannot go on from: exit 4."""

    exit_code = 4


class StepFailed(RlmError):
    """Step ``step`` (a plan step: its ``id`` and source ``span``) failed on chunk ``chunk_id``
    (None: the step itself) because of ``cause``; ``detail`` is how the cause reads.

    Prints as ``step 'map-incidents' (triage.rlm:9:1) failed on chunk 12: …``. The exit code is
    the cause's when it is an :class:`RlmError`; :meth:`of` picks the subclass that is also a
    :class:`SpecError`, :class:`InputError` or :class:`LMError`, so handlers of those catch it.
    """

    def __init__(self, step: Any, chunk_id: int | None, cause: BaseException,
                 detail: str | None = None) -> None:
        self.step, self.chunk_id, self.cause = step, chunk_id, cause
        self.detail = str(cause) if detail is None else detail
        self.step_id = step.id
        if isinstance(cause, RlmError):
            self.exit_code = cause.exit_code
        super().__init__(str(self))

    @staticmethod
    def of(step: Any, chunk_id: int | None, cause: BaseException, family: type[RlmError],
           detail: str | None = None) -> StepFailed:
        """The :class:`StepFailed` that is also a ``family`` error (exit code and ``except``)."""
        return _FAMILIES.get(family, StepFailed)(step, chunk_id, cause, detail)

    @property
    def span(self) -> Any:
        return self.step.span

    def __str__(self) -> str:
        on = f" on chunk {self.chunk_id}" if self.chunk_id is not None else ""
        return f"step '{self.step.id}' ({self.span}) failed{on}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form: what failed, where in the spec, on which chunk, and why."""
        span = self.span
        return {"error": "step_failed", "message": str(self), "exit_code": self.exit_code,
                "step": self.step.id, "chunk_id": self.chunk_id,
                "span": {"file": span.file, "line": span.line, "col": span.col},
                "cause": {"type": type(self.cause).__name__, "message": self.detail}}


class SpecStepFailed(StepFailed, SpecError):
    """A step failed because of the spec (a template or SQL error): exit 1."""


class InputStepFailed(StepFailed, InputError):
    """A step failed on its input: exit 2."""


class LMStepFailed(StepFailed, LMError):
    """A step failed in the LM or another back end: exit 4."""


_FAMILIES: dict[type[RlmError], type[StepFailed]] = {
    SpecError: SpecStepFailed, InputError: InputStepFailed, LMError: LMStepFailed}


def caused_by(exc: BaseException, kind: type[E]) -> E | None:
    """The first error of type ``kind`` in ``exc``'s chain (``exc``, its cause or context, …):
    DSPy and LiteLLM wrap the errors of the engines they call."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class Unrecoverable(LMError):
    """An LM error no retry can cure (a replay with no recorded answer): the step stops at
    once instead of recording the row in ``failures`` and going on."""


class RowsFailed(LMError):
    """The run finished, but LM calls failed terminally for some rows, so some output could not
    be produced: exit 4. Finished work is kept; ``failures`` lists every row (retry them with
    ``--retry-failed``)."""
