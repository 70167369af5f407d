"""Syntax errors: turn Lark's ``UnexpectedInput`` into one :class:`Diagnostic` people can act on.

The message names what was found and what the grammar expected there (terminal names translated
to ``'->'``, ``a name``, ``a string``); common slips get a hint chosen with Lark's
``match_examples`` against the labelled malformed snippets below (each given in two statement
positions, since the LALR state depends on what came before). An error at the end of the text
points just past its last character.
"""

from __future__ import annotations

import re
from functools import cache, partial

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from rlm_dsl.compiler.diagnostics import Diagnostic, end_span
from rlm_dsl.compiler.source import Span

_PRELUDE = 'recipe r "x"\ninput a: text\n'

# label -> malformed snippets; the first token that cannot be parsed decides the match.
_SLIPS: dict[str, tuple[str, ...]] = {
    "write '<source> -> <new name>', e.g. 'chunk logs -> windows by lines(400)'": (
        "chunk a b by lines(3)",
        "map a b: str",
        "reduce a b by tree",
        "rlm a b: str",
    ),
    "a chunk needs a strategy, e.g. 'by lines(400, overlap=20)'": (
        "chunk a -> b\noutput b",
        "chunk a -> b lines(3)",
    ),
    "give the type after ':' (str, int, float, bool, list[T], a | b, or a declared type)": (
        'param q: = "x"',
        "map a -> b: \noutput b",
        "map a -> b: using f",
    ),
    "a type annotation needs ':', e.g. 'param question: str' or 'input logs: log'": (
        'param q str = "x"',
        "input logs log",
        "rlm a -> b str",
    ),
    "option values are literals: quote text (format=\"json\"); use true/false/none": (
        "map a -> b: str with retries=x",
        "rlm a -> b: str with timeout=long",
    ),
    "options come after 'with' as name=value pairs separated by commas": (
        "map a -> b: str with retries=2 reason=true",
        "map a -> b: str retries=2",
        'lm fast = "m" with temperature=0 max_tokens=5',
        'input logs: log with path="x" dedup=true',
        "rlm a -> b: str with max_iterations=2 depth=1",
        "reduce a -> b by tree(fanin=2) with retries=1 temperature=0",
    ),
    "an lm binding is a model id string or env(\"VAR\", \"fallback\")": (
        "lm fast = local",
        "lm fast = gpt4",
    ),
    "a filter narrows a value in place: 'filter windows where sql \"...\"'": (
        'filter a -> b where sql "x"',
        'filter a sql "x"',
    ),
    "a filter predicate is sql \"...\", regex \"...\" or lm \"\"\"question\"\"\"": (
        'filter a where "x"',
        "filter a where text",
    ),
    "name the recipe to use as a string path: 'use \"other.rlm\" as other'": (
        "use other.rlm as other",
        "use other as other",
    ),
}

_CHAR_HINTS = {
    "'": "strings use double quotes: \"...\"",
    '"': 'close the string with " on the same line, or use """...""" for several lines',
    "<": "list types are written list[T]",
    ";": "statements need no separator; start each on its own line",
    "=": "'==' is not an operator here; comparisons belong inside sql \"...\"",
}

_STATEMENT_KEYWORDS = frozenset(
    ["recipe", "param", "lm", "type", "input", "chunk", "filter", "map", "reduce", "rlm", "use",
     "output"]
)
_MAX_EXPECTED = 8
_STATEMENT_START = re.compile(rf"({'|'.join(_STATEMENT_KEYWORDS)})\b")
MAX_ERRORS = 20
_hint_cache: dict[tuple[object, ...], str | None] = {}


def syntax_errors(first: UnexpectedInput, parser: Lark, text: str, path: str) -> list[Diagnostic]:
    """The first syntax error and those after it: parsing resumes at each later line that starts
    a statement (a keyword in column 1, outside triple-quoted strings), up to MAX_ERRORS."""
    diags = [syntax_diagnostic(first, parser, text, path)]
    lines = text.split("\n")
    starts = _statement_starts(lines)
    while len(diags) < MAX_ERRORS:
        line = diags[-1].span.line
        resume = next((n for n in starts if n > line), None)
        if resume is None:
            break
        rest = "\n" * (resume - 1) + "\n".join(lines[resume - 1 :])  # keeps line numbers
        try:
            parser.parse(rest)
        except UnexpectedInput as exc:
            diags.append(syntax_diagnostic(exc, parser, rest, path))
        else:
            break
    return diags


def _statement_starts(lines: list[str]) -> list[int]:
    starts, in_prompt = [], False
    for number, line in enumerate(lines, 1):
        if not in_prompt and _STATEMENT_START.match(line):
            starts.append(number)
        code = line if in_prompt else line.split("#", 1)[0]  # a comment cannot open a prompt
        if code.count('"""') % 2:
            in_prompt = not in_prompt
    return starts


def syntax_diagnostic(exc: UnexpectedInput, parser: Lark, text: str, path: str) -> Diagnostic:
    """One diagnostic for a Lark parse error of ``text``."""
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(exc, parser, text, path)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        tok = exc.token
        span = Span(path, tok.line, tok.column, tok.end_line or tok.line,
                    tok.end_column or tok.column + 1)
        message = f"unexpected {_found(tok.type, str(tok))}{_expected(exc.expected, parser)}"
        return Diagnostic(span, message, _hint(exc, parser))
    expected = exc.expected if isinstance(exc, UnexpectedToken | UnexpectedEOF) else set()
    message = f"unexpected end of file{_expected(expected, parser)}"
    hint = _hint(exc, parser) if isinstance(exc, UnexpectedToken) else None
    return Diagnostic(end_span(path, text), message, hint)


def _bad_character(exc: UnexpectedCharacters, parser: Lark, text: str, path: str) -> Diagnostic:
    char, pos = exc.char, exc.pos_in_stream
    span = Span(path, exc.line, exc.column, exc.line, exc.column + 1)
    if char == '"' and text.startswith('"""', max(0, pos - 2)) and exc.column > 2:
        # the lexer took the first two quotes of an unclosed """ as an empty string
        opening = Span(path, exc.line, exc.column - 2, exc.line, exc.column + 1)
        return Diagnostic(opening, "unterminated triple-quoted string",
                          'close it with """ (a prompt may span many lines)')
    if char == '"':
        return Diagnostic(span, "unterminated string", _CHAR_HINTS['"'])
    message = f"unexpected character {char!r}{_expected(exc.allowed or set(), parser)}"
    return Diagnostic(span, message, _CHAR_HINTS.get(char))


def _found(token_type: str, value: str) -> str:
    if token_type == "NAME":
        return f"name '{value}'"
    if token_type in ("STRING", "LONG_STRING"):
        return "string"
    if token_type == "NUMBER":
        return f"number {value}"
    return f"'{value}'"


def _expected(names: set[str], parser: Lark) -> str:
    described = {_describe(n, parser) for n in names}
    if not described:
        return ""
    keywords = {f"'{k}'" for k in _STATEMENT_KEYWORDS}
    if keywords <= described:
        described = (described - keywords) | {"a statement"}
    ordered = sorted(described)
    shown = ", ".join(ordered[:_MAX_EXPECTED]) + (", ..." if len(ordered) > _MAX_EXPECTED else "")
    return f"; expected {'one of ' if len(ordered) > 1 else ''}{shown}"


def _describe(terminal: str, parser: Lark) -> str:
    fixed = {"NAME": "a name", "STRING": "a string", "LONG_STRING": "a string",
             "NUMBER": "a number", "$END": "end of file"}
    if terminal in fixed:
        return fixed[terminal]
    try:
        pattern = parser.get_terminal(terminal).pattern
    except KeyError:
        return terminal
    return f"'{pattern.value}'" if pattern.type == "str" else terminal


def _hint(exc: UnexpectedToken, parser: Lark) -> str | None:
    state = exc.state
    depth = len(getattr(state, "state_stack", ()))
    key = (depth, getattr(state, "position", state), exc.token.type)
    if key not in _hint_cache:
        examples = {label: [_PRELUDE + s for s in snippets] + [s for s in snippets]
                    for label, snippets in _SLIPS.items()}
        _hint_cache[key] = exc.match_examples(
            partial(_replay, parser), examples, token_type_match_fallback=True, use_accepts=False
        )
    return _hint_cache[key]


@cache
def _example_error(parser: Lark, example: str) -> UnexpectedInput | None:
    try:
        parser.parse(example)
    except UnexpectedInput as exc:
        return exc
    return None


def _replay(parser: Lark, example: str) -> None:
    """``parse`` for match_examples that parses each example once and replays its error."""
    error = _example_error(parser, example)
    if error is not None:
        raise error.with_traceback(None)
