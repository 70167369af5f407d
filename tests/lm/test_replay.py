"""``--lm replay:run.duckdb``: a recorded run answers a new one offline, exactly or not at all."""

from __future__ import annotations

import json
import textwrap

from rlm_dsl.cli.main import main

SPEC = '''
    recipe items "Count bad items, then sum with an LM."
    input items: lines
    chunk items -> pieces by lines(1)
    map pieces -> n: int with retries=2 """
      COUNT "bad"
      {{ chunk.text }}
    """
    reduce n -> total: int by concat """
      SUM
      {{ items | tojson }}
    """
    output total
'''


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _files(tmp_path, n=12):
    spec = tmp_path / "items.rlm"
    spec.write_text(textwrap.dedent(SPEC).lstrip())
    data = tmp_path / "items.txt"
    data.write_text("".join(f"item {i} {'bad' if i % 3 == 0 else 'ok'}\n" for i in range(n)))
    return spec, data


def test_a_replay_gives_the_recorded_outputs_without_the_model(tmp_path, capsys):
    spec, data = _files(tmp_path)
    recorded = tmp_path / "recorded.duckdb"
    code, out, err = _cli(capsys, "run", spec, "-i", f"items={data}", "--db", recorded,
                          "--lm", "test:fail=0.2,garbage=0.2,seed=1", "--json")
    assert code == 0, err
    first = json.loads(out)
    code, out, err = _cli(capsys, "run", spec, "-i", f"items={data}", "--json",
                          "--lm", f"replay:{recorded}")
    assert code == 0, err
    again = json.loads(out)
    assert again["outputs"] == first["outputs"] == {"total": 4}
    assert first["summary"]["calls"] == 17  # with retries of injected faults
    # each prompt gets its last recorded answer: one call per row and one for the reduce
    assert again["summary"]["calls"] == 13 and again["summary"]["failures"] == 0


def test_a_prompt_the_recording_lacks_stops_the_run_naming_step_and_chunk(tmp_path, capsys):
    spec, data = _files(tmp_path)
    recorded = tmp_path / "recorded.duckdb"
    args = ("run", spec, "-i", f"items={data}")
    assert _cli(capsys, *args, "--db", recorded, "--lm", "test")[0] == 0
    spec.write_text(spec.read_text().replace('COUNT "bad"', 'COUNT "ok"'))
    code, out, err = _cli(capsys, "run", spec, "-i", f"items={data}", "--lm",
                          f"replay:{recorded}", "--concurrency", "1")
    assert code == 4 and out == ""
    assert err.strip() == (
        f"step 'map-n' ({spec}:4:1) failed on chunk 0: replay: {recorded} has no recorded "
        "answer for step 'map-n' chunk 0 (depth 0): its prompt differs from every recorded call")


def test_a_missing_recording_is_an_input_error(tmp_path, capsys):
    spec, data = _files(tmp_path)
    code, _, err = _cli(capsys, "run", spec, "-i", f"items={data}", "--lm",
                        f"replay:{tmp_path / 'none.duckdb'}")
    assert code == 2
    assert f"replay: {tmp_path / 'none.duckdb'}: no such file" in err
