"""Template mining against LogHub's labelled samples: rlm-dsl's SQL miner side by side with Drain3.

Reads the 2k-line labelled samples of 16 systems (``<System>/<System>_2k.log_structured.csv``:
``Content`` and the true ``EventId``) from LogHub — a checkout, or the bare mirror the search
tool's fetch of ``github:logpai/loghub`` leaves (read with ``git show``); the data is never
copied into this repository. For each system it computes the *grouping accuracy* (the share of
lines whose predicted group holds exactly the lines of their true event, as in Zhu et al.,
"Tools and Benchmarks for Automated Log Parsing") of

* ``rlm``: :func:`rlm_dsl.runtime.logs.templates.mine_templates_sql` (what ``dedup=true`` uses),
* ``drain3``: Drain3's ``TemplateMiner`` with its default configuration, and
* ``drain3+masks``: Drain3 fed the messages after rlm's one-line masks (:func:`template_sql`).

Prints a table and saves ``bench/results/templates.json``. Drain3 pins ``cachetools==4.2.1``
while DSPy needs ``>=5.5``: install it next to the project with
``pip install --no-deps drain3 jsonpickle``.

    python bench/bench_templates.py --loghub /work/.mirror/logpai+loghub/repo
    RLM_LOGHUB=/path/to/loghub python bench/bench_templates.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import duckdb

from rlm_dsl.runtime.logs.templates import mine_templates_sql, template_sql

SYSTEMS = (
    "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
    "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper",
)
RESULTS = Path(__file__).resolve().parent / "results" / "templates.json"


def read_sample(loghub: Path, system: str) -> str:
    """The text of ``system``'s structured CSV, from a checkout or a bare git mirror."""
    rel = f"{system}/{system}_2k.log_structured.csv"
    if (loghub / rel).is_file():
        return (loghub / rel).read_text(encoding="utf-8")
    return subprocess.run(
        ["git", "-C", str(loghub), "show", f"HEAD:{rel}"],
        check=True, capture_output=True, text=True,
    ).stdout


def grouping_accuracy(truth: list[str], predicted: list) -> float:
    """Share of lines whose predicted group equals their true group."""
    true_groups, groups = defaultdict(set), defaultdict(set)
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        true_groups[t].add(i)
        groups[p].add(i)
    right = 0
    for members in groups.values():
        events = {truth[i] for i in members}
        if len(events) == 1 and true_groups[events.pop()] == members:
            right += len(members)
    return right / len(truth)


def drain3_groups(messages: list[str]) -> list[int]:
    """Drain3's cluster id per message (default configuration, in memory)."""
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    return [miner.add_log_message(m)["cluster_id"] for m in messages]


def bench_system(loghub: Path, system: str) -> dict:
    con = duckdb.connect()
    with tempfile.NamedTemporaryFile("w", suffix=".csv", encoding="utf-8") as csv:
        csv.write(read_sample(loghub, system))
        csv.flush()
        con.execute("CREATE TABLE raw AS SELECT * FROM read_csv(?, all_varchar=true)", [csv.name])
    con.execute(
        "CREATE TABLE t AS SELECT CAST(LineId AS INTEGER) AS id, coalesce(Content, '') AS msg, "
        "EventId AS event FROM raw"
    )
    truth = [r[0] for r in con.execute("SELECT event FROM t ORDER BY id").fetchall()]
    messages = [r[0] for r in con.execute("SELECT msg FROM t ORDER BY id").fetchall()]
    out: dict = {"system": system, "lines": len(truth)}
    started = time.perf_counter()
    mined = con.execute(f"SELECT template FROM ({mine_templates_sql('t', 'id', 'msg')}) "
                        "ORDER BY id").fetchall()
    out["rlm_s"] = time.perf_counter() - started
    out["rlm"] = grouping_accuracy(truth, [r[0] for r in mined])
    started = time.perf_counter()
    out["drain3"] = grouping_accuracy(truth, drain3_groups(messages))
    out["drain3_s"] = time.perf_counter() - started
    masked = [r[0] for r in con.execute(f"SELECT {template_sql('msg')} FROM t ORDER BY id")
              .fetchall()]
    out["drain3_masks"] = grouping_accuracy(truth, drain3_groups(masked))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loghub", default=os.environ.get("RLM_LOGHUB"),
                        help="LogHub checkout or bare mirror (or set RLM_LOGHUB)")
    args = parser.parse_args()
    if not args.loghub:
        parser.error("give --loghub DIR or set RLM_LOGHUB (github.com/logpai/loghub)")
    rows = [bench_system(Path(args.loghub), s) for s in SYSTEMS]
    print("| system | rlm GA | Drain3 GA | Drain3 + rlm masks GA |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['rlm']:.3f} | {r['drain3']:.3f} | {r['drain3_masks']:.3f} |")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("rlm", "drain3", "drain3_masks")}
    print(f"| **mean** | **{mean['rlm']:.3f}** | **{mean['drain3']:.3f}** | "
          f"**{mean['drain3_masks']:.3f}** |")
    seconds = {k: sum(r[k] for r in rows) for k in ("rlm_s", "drain3_s")}
    print(f"all 32,000 lines: rlm {seconds['rlm_s']:.2f} s, Drain3 {seconds['drain3_s']:.2f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"systems": rows, "mean": mean, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
