"""Tracing stage, HTML form: one self-contained report file for a run's :class:`Trace`.

:func:`render_report` turns a trace into a single HTML page with inline CSS, inline JavaScript
and an inline SVG plan graph (laid out here: one row per topological generation of the step
graph) — no CDN, no network. The page shows the run totals, the plan graph (failed steps
outlined in red), per-step time and cost (or token) bars, and the whole tree as nested
``<details>`` elements: LM calls open to their messages and response, REPL iterations to their
reasoning, code and output; failures are highlighted. Its script opens ``#expand=<node id>``
(and the node's ancestors) on load, and any script error is written into ``#js-errors``, so a
headless browser's ``--dump-dom`` shows both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import networkx as nx
from markupsafe import Markup, escape

from rlm_dsl.runtime.observe.nodes import Node, Stats
from rlm_dsl.runtime.observe.trace import Trace

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 230, 46, 24, 34, 12
MAX_TEXT = 20_000  # characters of one prompt / response kept in the page (the store has all)
# Inline style and script only: the page can load nothing from anywhere.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:16px 24px;color:#1d2330;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}
.muted{color:#667085}.totals span{margin-right:18px}
#js-errors{color:#b42318;font-weight:bold}
table.bars{border-collapse:collapse;width:100%}
.bars td,.bars th{padding:3px 8px;border-bottom:1px solid #eaecf0;text-align:left;font-size:13px}
.bar{height:10px;background:#4f7cff;border-radius:2px;min-width:1px}
.bar.cost{background:#12b76a}.num{text-align:right;font-variant-numeric:tabular-nums}
details{margin:2px 0 2px 16px}summary{cursor:pointer;padding:1px 0}
summary .stats{color:#667085;font-size:12px;margin-left:8px}
.failed>summary,.failure{color:#b42318}.failed>summary{font-weight:bold}
tr.failed td:first-child{color:#b42318;font-weight:bold}
pre{background:#f6f7f9;border:1px solid #eaecf0;padding:6px 8px;white-space:pre-wrap;
 word-break:break-word;max-height:360px;overflow:auto;margin:4px 0}
.label{font-size:11px;text-transform:uppercase;color:#667085;margin-top:6px}
svg text{font:12px system-ui,sans-serif}
svg .box{fill:#f2f5ff;stroke:#4f7cff;stroke-width:1.5}
svg .box.failed{fill:#fef3f2;stroke:#b42318;stroke-width:2.5}
svg line{stroke:#98a2b3;stroke-width:1.4}
"""

SCRIPT = """
window.addEventListener('error', function (e) {
  var box = document.getElementById('js-errors');
  box.hidden = false;
  box.textContent += 'error: ' + e.message + '\\n';
});
function openNode(id) {
  var el = document.getElementById(id);
  if (!el) { throw new Error('no node ' + id); }
  for (var n = el; n; n = n.parentElement) { if (n.tagName === 'DETAILS') { n.open = true; } }
  el.scrollIntoView();
  el.classList.add('focus');
}
function expandFromHash() {
  var m = /expand=([^&]+)/.exec(decodeURIComponent(location.hash));
  if (m) { openNode(m[1]); }
}
document.getElementById('expand-all').addEventListener('click', function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
});
window.addEventListener('hashchange', expandFromHash);
expandFromHash();
document.body.setAttribute('data-ready', '1');
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<title>rlm run {{ run_id }}</title><style>{{ css }}</style></head>
<body>
<pre id="js-errors" hidden></pre>
<h1>{{ trace.root.label }}</h1>
<div class="totals" id="totals" data-calls="{{ s.calls }}" data-tokens="{{ s.tokens }}">
 <span>status <b>{{ trace.run.get('status') or '—' }}</b></span>
 <span><b>{{ s.calls }}</b> LM calls</span>
 <span><b>{{ s.prompt_tokens }}</b> prompt +
 <b>{{ s.completion_tokens }}</b> completion tokens</span>
 <span>cost <b>{{ money(s.cost_usd) }}</b></span><span><b>{{ s.cached }}</b> cached</span>
 <span class="{{ 'failure' if s.errors or s.failures else '' }}"><b>{{ s.errors }}</b> call errors,
 <b>{{ s.failures }}</b> failures</span>
</div>
<h2>Plan</h2>
{{ svg }}
<h2>Steps</h2>
<table class="bars"><tr><th>step</th><th>status</th><th class="num">calls</th>
<th class="num">tokens</th><th class="num">cost</th><th class="num">time (s)</th>
<th style="width:22%">time</th><th style="width:22%">{{ 'cost' if priced else 'tokens' }}</th></tr>
{% for row in rows %}<tr id="bar-{{ row.id }}" class="{{ 'failed' if row.failed else '' }}"
 data-step="{{ row.id }}" data-calls="{{ row.s.calls }}" data-tokens="{{ row.s.tokens }}">
<td><a href="#expand={{ row.id }}">{{ row.id }}</a></td><td>{{ row.status or '' }}</td>
<td class="num">{{ row.s.calls }}</td><td class="num">{{ row.s.tokens }}</td>
<td class="num">{{ money(row.s.cost_usd) }}</td><td class="num">{{ secs(row.elapsed) }}</td>
<td><div class="bar" style="width:{{ row.time_pct }}%"></div></td>
<td><div class="bar cost" style="width:{{ row.cost_pct }}%"></div></td></tr>
{% endfor %}</table>
<h2>Tree <button id="expand-all" type="button">expand all</button></h2>
{% macro node(n) -%}
<details id="{{ n.id }}" class="{{ n.kind }}{{ ' failed' if n.failed else '' }}">
<summary>{{ n.label }}<span class="stats">{{ stats(n) }}</span></summary>
{% for f in n.detail.get('failures') or [] %}<div class="failure">failure (chunk
 {{ f.chunk_id }}, {{ f.attempts }} attempts): {{ f.error }}</div>
{% if f.raw_response %}<pre>{{ clip(f.raw_response) }}</pre>{% endif %}{% endfor %}
{% if n.kind == 'call' %}<div class="label">model {{ n.detail.model }}</div>
{% for m in n.detail.messages %}<div class="label">{{ m.role }}</div>
<pre class="prompt">{{ clip(m.content) }}</pre>{% endfor %}
{% if n.detail.error %}<div class="label">error</div>
<pre class="failure">{{ n.detail.error }}</pre>{% endif %}
<div class="label">response</div><pre class="response">{{ clip(n.detail.response or '') }}</pre>
{% elif n.kind in ('iteration', 'subcall') %}
{% if n.detail.reasoning %}<div class="label">reasoning</div>
<pre>{{ n.detail.reasoning }}</pre>{% endif %}
<div class="label">{{ 'request' if n.kind == 'subcall' else 'code' }}</div>
<pre class="code">{{ clip(n.detail.code) }}</pre>
<div class="label">output</div><pre>{{ clip(n.detail.output or '') }}</pre>
{% if n.detail.error %}<div class="label">error</div>
<pre class="failure">{{ n.detail.error }}</pre>{% endif %}
{% endif %}
{% for c in n.children %}{{ node(c) }}{% endfor %}
</details>
{%- endmacro %}
{% for c in trace.root.children %}{{ node(c) }}{% endfor %}
<script>{{ script }}</script>
</body></html>
"""


def render_report(trace: Trace) -> str:
    """The report for ``trace`` as one HTML document."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals.update(money=_money, secs=_secs, stats=_stats_text, clip=_clip_text)
    return env.from_string(TEMPLATE).render(
        trace=trace, s=trace.root.stats, run_id=trace.root.id, css=Markup(CSS), csp=CSP,
        script=Markup(SCRIPT), svg=Markup(plan_svg(trace)), rows=_bar_rows(trace),
        priced=trace.root.stats.cost_usd is not None,
    )


def write_report(trace: Trace, path: str | Path) -> Path:
    """Write :func:`render_report` of ``trace`` to ``path`` (UTF-8)."""
    target = Path(path)
    target.write_text(render_report(trace), encoding="utf-8")
    return target


def plan_svg(trace: Trace) -> str:
    """The step graph as inline SVG: one row per topological generation, edges as arrows."""
    nodes = {n.id: n for n in trace.step_nodes()}
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(e for e in trace.edges if e[0] in nodes and e[1] in nodes)
    if not nx.is_directed_acyclic_graph(graph):
        graph.remove_edges_from(list(graph.edges))
    layers = [sorted(layer) for layer in nx.topological_generations(graph)]
    place: dict[str, tuple[int, int]] = {}
    for row, layer in enumerate(layers):
        for col, step in enumerate(layer):
            place[step] = (PAD + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + max((len(layer) for layer in layers), default=1) * (BOX_W + GAP_X)
    height = PAD * 2 + max(len(layers), 1) * (BOX_H + GAP_Y)
    parts = [f'<svg id="plan-graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#98a2b3"/>'
             '</marker></defs>']
    for a, b in graph.edges:
        (x1, y1), (x2, y2) = place[a], place[b]
        parts.append(f'<line x1="{x1 + BOX_W // 2}" y1="{y1 + BOX_H}" x2="{x2 + BOX_W // 2}" '
                     f'y2="{y2}" marker-end="url(#arrow)"/>')
    for step, (x, y) in place.items():
        node = nodes[step]
        cls = "box failed" if node.failed else "box"
        parts.append(
            f'<a href="#expand={_esc(node.id)}"><g class="step-node" data-step="{_esc(step)}">'
            f'<rect class="{cls}" x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{x + 8}" y="{y + 18}">{_esc(_clip(step))}</text>'
            f'<text x="{x + 8}" y="{y + 36}" fill="#667085">{_esc(_stats_text(node, True))}'
            "</text></g></a>")
    parts.append("</svg>")
    return "".join(parts)


def _bar_rows(trace: Trace) -> list[dict[str, Any]]:
    steps = trace.step_nodes()
    priced = trace.root.stats.cost_usd is not None
    top_time = max((n.detail.get("elapsed_s") or 0.0 for n in steps), default=0.0) or 1.0
    weight = (lambda s: s.cost_usd or 0.0) if priced else (lambda s: float(s.tokens))
    top_cost = max((weight(n.stats) for n in steps), default=0.0) or 1.0
    return [{
        "id": n.id, "s": n.stats, "status": n.detail.get("status"), "failed": n.failed,
        "elapsed": n.detail.get("elapsed_s"),
        "time_pct": round(100 * (n.detail.get("elapsed_s") or 0.0) / top_time, 1),
        "cost_pct": round(100 * weight(n.stats) / top_cost, 1),
    } for n in steps]


def _stats_text(node: Node, short: bool = False) -> str:
    s: Stats = node.stats
    parts = [f"{s.calls} calls", f"{s.tokens} tok"]
    if not short:
        parts.append(f"{s.latency_s:.2f}s")
    if s.cost_usd is not None:
        parts.append(_money(s.cost_usd))
    if s.cached and not short:
        parts.append(f"{s.cached} cached")
    if s.errors or s.failures:
        parts.append(f"{s.errors + s.failures} failed")
    return " · ".join(parts)


def _clip_text(text: str | None) -> str:
    text = text or ""
    if len(text) <= MAX_TEXT:
        return text
    return f"{text[:MAX_TEXT]}\n… ({len(text) - MAX_TEXT:,} more characters in the store)"


def _money(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _esc(text: str) -> str:
    return str(escape(text))


def _clip(text: str, n: int = 26) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
