"""The one error hierarchy of rlm-dsl.

Every failure a user can see is an :class:`RlmError` carrying the process exit code the CLI uses
(DESIGN §4: 0 ok, 1 spec/usage, 2 input, 3 budget exhausted, 4 LM/back-end). Compile errors live
in :mod:`rlm_dsl.compiler.diagnostics` and subclass :class:`SpecError`; runtime errors subclass the
others here. The CLI prints ``str(error)`` and exits with ``error.exit_code`` — never a traceback.
"""

from __future__ import annotations


class RlmError(Exception):
    """Base of every error rlm-dsl raises on purpose."""

    exit_code: int = 1


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


class RowsFailed(LMError):
    """The run finished, but LM calls failed terminally for some rows, so some output could not
    be produced: exit 4. Finished work is kept; ``failures`` lists every row (retry them with
    ``--retry-failed``)."""
