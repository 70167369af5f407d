"""``rlm run``'s own flags: progress bars, ``--estimate``'s versus line, ``--api-base`` /
``--api-key-env``, ``--pull``."""

from __future__ import annotations

import json

FORK_LINES = "a ERROR x\nb ok\nc ERROR y\n"


SHOUT = '''
    recipe shout "Upper-case every line, then join."
    input items: lines
    chunk items -> pieces by lines(1)
    map pieces -> loud: str """
      UPPER
      {{ chunk.text }}
    """
    reduce loud -> all: str by concat """
      JOIN
      {{ items | tojson }}
    """
    output all
'''


def test_a_run_off_a_terminal_prints_no_progress(spec, cli, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text(FORK_LINES)
    code, _, err = cli("run", spec(SHOUT), "--input", f"items={data}", "--lm", "test")
    assert code == 0
    assert len(err.splitlines()) == 1  # the summary line only: no bars, no spend line
    assert err.startswith("calls: 4 · cache hits: 0 · tokens: ")


def test_progress_shows_bars_and_spend_against_the_bound_budget(spec, tmp_path):
    import io

    from rich.console import Console

    from rlm_dsl.compile import compile_file
    from rlm_dsl.runtime.executor import RunOptions, execute
    from rlm_dsl.runtime.observe.progress import RunProgress

    data = tmp_path / "d.txt"
    data.write_text(FORK_LINES)
    screen = io.StringIO()
    progress = RunProgress(Console(file=screen, force_terminal=True, width=120), transient=False)
    with progress:
        execute(compile_file(spec(SHOUT)), RunOptions(
            inputs={"items": str(data)}, lm="test", max_calls=50, progress=progress))
    assert progress.budget is not None and progress.budget.calls == 4
    text = screen.getvalue()
    assert "map-loud" in text and "3/3" in text
    assert "spend: 4 of 50 calls" in text


def test_estimate_prints_the_versus_line_with_the_actual_numbers(spec, cli, tmp_path):
    import json

    data = tmp_path / "d.txt"
    data.write_text(FORK_LINES)
    code, out, err = cli("run", spec(SHOUT), "--input", f"items={data}", "--lm", "test",
                         "--estimate", "--json", "--quiet")
    assert code == 0
    summary = json.loads(out)["summary"]
    versus = err.splitlines()[-1]
    assert versus.startswith("estimate vs actual: calls 4 estimated, 4 actual (+0%) · tokens ")
    assert f"estimated, {summary['tokens']:,} actual" in versus
    assert summary["calls"] == 4


def test_api_base_and_key_env_reach_the_lm_server(spec, cli, tmp_path, loopback, monkeypatch):
    server = loopback(lambda messages: "[[ ## loud ## ]]\nSHOUTED\n\n[[ ## completed ## ]]")
    monkeypatch.setenv("LOOPBACK_KEY", "sk-loop-123")
    data = tmp_path / "d.txt"
    data.write_text("a\nb\n")
    path = spec('''
        recipe shout "Upper-case every line."
        input items: lines
        chunk items -> pieces by lines(1)
        map pieces -> loud: str """
          UPPER
          {{ chunk.text }}
        """
        output loud
    ''')
    code, out, err = cli("run", path, "--input", f"items={data}", "--lm", "openai/loopback",
                         "--api-base", server.url, "--api-key-env", "LOOPBACK_KEY", "--json")
    assert code == 0, err
    assert json.loads(out)["outputs"]["loud"] == ["SHOUTED", "SHOUTED"]
    assert [r["model"] for r in server.requests] == ["loopback", "loopback"]
    assert [h["Authorization"] for h in server.headers] == ["Bearer sk-loop-123"] * 2
    assert "a" in server.requests[0]["messages"][-1]["content"]


def test_lm_options_need_lm_and_pull_needs_the_local_model(spec, cli, tmp_path):
    path = spec(SHOUT)
    code, _, err = cli("run", path, "--api-base", "http://127.0.0.1:9/v1")
    assert (code, err.strip()) == (1, "--api-base sets an option of the --lm model: "
                                      "pass --lm too")
    code, _, err = cli("run", path, "--lm", "test", "--pull")
    assert (code, err.strip()) == (1, "--pull fetches the local model; --lm test is not "
                                      "'local'")


def test_pull_fetches_the_local_model_before_the_run(spec, cli, monkeypatch):
    from rlm_dsl.errors import LMError

    asked = []

    def ensure(pull: bool = False) -> None:
        asked.append(pull)
        raise LMError("no network here")

    monkeypatch.setattr("rlm_dsl.runtime.lm.models.ensure_local_model", ensure)
    code, _, err = cli("run", spec(SHOUT), "--lm", "local", "--pull")
    assert (code, err.strip(), asked) == (4, "no network here", [True])
