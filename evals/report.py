"""Reports: the terminal summary table and a self-contained HTML page.

The HTML report has no external assets (inline CSS, a few lines of inline JavaScript for
filtering, inline SVG charts), so it can be attached to a CI run or mailed as one file.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from evals.results import AttemptResult, CaseResult, EvalRun

__all__ = ["render_html", "summary_table", "write_html"]


_MODE_NOTES = {
    "wiring": (
        "wiring: the models' turns are scripted or replayed, so these numbers check the "
        "runtime (routing plumbing, access, approvals, masking, tools), not answer quality; "
        "rubrics are not judged; tokens are estimates and nothing is billed"
    ),
    "quality": "quality: the skills' real models answered; judge scores need --judge-model",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _cost(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


def summary_table(run: EvalRun) -> Table:
    """One row per skill plus a total: pass rate, route, trajectory, judge, latency, cost."""
    table = Table(
        title=f"Evaluation — {run.mode_label}"
        + (f" (judge: {run.judge_model})" if run.judge_model else ""),
        caption=_MODE_NOTES.get(run.mode),
    )
    for column in ("skill", "cases", "pass rate"):
        table.add_column(column, justify="left" if column == "skill" else "right")
    if run.repeat > 1:
        table.add_column(f"pass@{run.repeat}", justify="right")
    for column in ("route", "trajectory", "judge", "p50 ms", "p95 ms", "tokens", "cost"):
        table.add_column(column, justify="right")
    summaries = [*run.summaries(), run.overall()]
    for index, s in enumerate(summaries):
        known = f" ({s.known_issues} known)" if s.known_issues else ""
        row = [s.skill, f"{s.cases}{known}", f"{_pct(s.pass_rate)} ({s.passed})"]
        if run.repeat > 1:
            row.append(_pct(s.pass_at_k))
        row += [
            _pct(s.route_accuracy),
            _pct(s.trajectory_match),
            "-" if s.judge_score is None else f"{s.judge_score:.2f}",
            f"{s.latency_p50_ms:.0f}",
            f"{s.latency_p95_ms:.0f}",
            f"{s.input_tokens + s.output_tokens:,}",
            _cost(s.cost_usd),
        ]
        table.add_row(*row, end_section=index == len(summaries) - 2)
    return table


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1d1d1f}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:2rem 0 .6rem}
.meta{color:#666}.charts{display:flex;gap:2rem;flex-wrap:wrap}
table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.3rem .6rem;text-align:right;
border-bottom:1px solid #e5e5e5}th:first-child,td:first-child{text-align:left}
details{border:1px solid #e0e0e0;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
details.fail{border-left:5px solid #d93025}details.pass{border-left:5px solid #1e8e3e}
details.known{border-left:5px solid #f9ab00}summary{cursor:pointer}
.badge{display:inline-block;min-width:3.2rem;text-align:center;border-radius:4px;
color:#fff;font-size:.8rem;margin-right:.5rem}.b-pass{background:#1e8e3e}
.b-fail{background:#d93025}.b-known{background:#f9ab00}
pre{background:#f6f8fa;padding:.5rem;white-space:pre-wrap;word-break:break-word;margin:.3rem 0}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.ok{color:#1e8e3e}
.bad{color:#d93025}.skip{color:#888}ul.checks{margin:.2rem 0;padding-left:1.2rem}
.controls{margin:.5rem 0}.mode{padding:.4rem .7rem;border-radius:6px;margin:.4rem 0}
.mode-wiring{background:#fff4d6}.mode-quality{background:#e6f0ff}
"""

_JS = """
function filterCases(){const only=document.getElementById('onlyFailed').checked;
const q=document.getElementById('search').value.toLowerCase();
document.querySelectorAll('details.case').forEach(d=>{
const show=(!only||!d.classList.contains('pass'))&&d.textContent.toLowerCase().includes(q);
d.style.display=show?'':'none';});}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _bar_chart(title: str, items: Sequence[tuple[str, float, str]], *, maximum: float) -> str:
    """A horizontal bar chart as inline SVG: (label, value, shown text) per bar."""
    row, label_w, bar_w = 22, 110, 260
    height = row * len(items) + 30
    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{label_w + bar_w + 90}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="12">',
        f'<text x="0" y="14" font-weight="600">{_e(title)}</text>',
    ]
    for index, (label, value, text) in enumerate(items):
        y = 24 + index * row
        width = 0 if maximum <= 0 else max(1.0, bar_w * value / maximum)
        parts.append(f'<text x="0" y="{y + 13}">{_e(label)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="16" fill="#4a7bd0"/>'
        )
        parts.append(f'<text x="{label_w + width + 6:.1f}" y="{y + 13}">{_e(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _summary_rows(run: EvalRun) -> str:
    rows = []
    for s in [*run.summaries(), run.overall()]:
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_e(v)}</td>"
                for v in (
                    s.skill,
                    s.cases,
                    _pct(s.pass_rate),
                    _pct(s.pass_at_k),
                    _pct(s.route_accuracy),
                    _pct(s.trajectory_match),
                    "-" if s.judge_score is None else f"{s.judge_score:.2f}",
                    f"{s.latency_p50_ms:.0f}",
                    f"{s.latency_p95_ms:.0f}",
                    f"{s.input_tokens + s.output_tokens:,}",
                    _cost(s.cost_usd),
                )
            )
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "skill", "cases", "pass rate", f"pass@{run.repeat}", "route", "trajectory",
            "judge", "p50 ms", "p95 ms", "tokens", "cost",
        )
    )  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _attempt_html(attempt: AttemptResult, index: int, total: int) -> str:
    checks = []
    for check in attempt.checks:
        if check.skipped:
            mark, cls = "-", "skip"
        elif check.passed:
            mark, cls = "✓", "ok"
        else:
            mark, cls = "✗", "bad"
        detail = f" — {_e(check.detail)}" if check.detail else ""
        checks.append(f'<li class="{cls}">{mark} {_e(check.name)}{detail}</li>')
    calls = "\n".join(
        f"{c['name']}({json.dumps(c['args'], ensure_ascii=False, sort_keys=True)})"
        + ("" if c["status"] == "ok" else f" [{c['status']}]")
        for c in attempt.calls
    )
    title = f"<h4>attempt {index + 1}</h4>" if total > 1 else ""
    if attempt.conversation:
        lines = "\n\n".join(
            f"person: {turn['user']}\nswitchboard: {turn['assistant']}"
            for turn in attempt.conversation
        )
        title += f"<b>simulated conversation ({attempt.turns} message(s))</b><pre>{_e(lines)}</pre>"
    return (
        f"{title}<div>outcome <b>{_e(attempt.outcome)}</b>, routed to "
        f"<b>{_e(attempt.route or '-')}</b>, {attempt.latency_ms:.0f} ms, "
        f"{attempt.input_tokens + attempt.output_tokens} tokens</div>"
        f"<div class='cols'><div><b>actual trajectory</b><pre>{_e(calls or '(no calls)')}</pre>"
        f"</div><div><b>answer</b><pre>{_e(attempt.answer or '(empty)')}</pre></div></div>"
        f"<b>checks</b><ul class='checks'>{''.join(checks)}</ul>"
    )


def _case_html(case: CaseResult) -> str:
    if case.passed:
        state, label = "pass", "pass"
    elif case.known_issue is not None:
        state, label = "known", "known"
    else:
        state, label = "fail", "fail"
    where = f"{case.dataset}:{case.line}" if case.line else case.dataset
    expected = "\n".join(case.expected_trajectory) or "(no calls)"
    mode = f" ({case.trajectory_mode.replace('_', '-')})" if case.trajectory_mode else ""
    known = f"<div><b>known issue:</b> {_e(case.known_issue)}</div>" if case.known_issue else ""
    expected_block = (
        f"<b>expected trajectory{_e(mode)}</b><pre>{_e(expected)}</pre>"
        if case.trajectory_mode
        else ""
    )
    attempts = "".join(_attempt_html(a, i, len(case.attempts)) for i, a in enumerate(case.attempts))
    return (
        f'<details class="case {state}" id="{_e(case.key)}"'
        f"{' open' if state == 'fail' else ''}>"
        f'<summary><span class="badge b-{state}">{label}</span><b>{_e(case.key)}</b> '
        f'<span class="meta">{_e(case.description)} · {_e(where)}</span></summary>'
        f"<div class='meta'>mode {_e(case.mode)}</div>"
        f"<b>input</b><pre>{_e(case.message)}</pre>{known}"
        f"<div>expected route: <b>{_e(case.expected_route or '(not checked)')}</b></div>"
        f"{expected_block}{attempts}</details>"
    )


def render_html(run: EvalRun) -> str:
    """The whole report as one HTML document."""
    summaries = run.summaries()
    pass_chart = _bar_chart(
        "Pass rate by skill",
        [(s.skill, s.pass_rate, f"{s.pass_rate:.0%} of {s.cases}") for s in summaries],
        maximum=1.0,
    )
    slowest = max([s.latency_p95_ms for s in summaries] or [0.0])
    latency_chart = _bar_chart(
        "Latency p95 by skill (ms)",
        [
            (s.skill, s.latency_p95_ms, f"p50 {s.latency_p50_ms:.0f} · p95 {s.latency_p95_ms:.0f}")
            for s in summaries
        ],
        maximum=slowest,
    )
    overall = run.overall()
    failing = [c for c in run.cases if not c.passed]
    ordered = failing + [c for c in run.cases if c.passed]
    cases = "".join(_case_html(c) for c in ordered)
    judge = f", judge {run.judge_model}" if run.judge_model else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Switchboard evaluation — {_e(run.model)}</title><style>{_CSS}</style>"
        f"<script>{_JS}</script></head><body>"
        f"<h1>Switchboard evaluation</h1>"
        f"<div class='mode mode-{_e(run.mode)}'><b>{_e(run.mode_label)}</b>"
        f"{' — ' + _e(_MODE_NOTES[run.mode]) if run.mode in _MODE_NOTES else ''}</div>"
        f"<div class='meta'>model {_e(run.model)}{_e(judge)} · "
        f"{_e(run.started_at)} · repeat {run.repeat} · {len(run.cases)} cases · "
        f"{overall.pass_rate:.0%} passed · {run.duration_s:.1f} s</div>"
        f"<h2>Summary</h2>{_summary_rows(run)}"
        f"<div class='charts'>{pass_chart}{latency_chart}</div>"
        f"<h2>Cases</h2><div class='controls'><label><input type='checkbox' id='onlyFailed' "
        f"onchange='filterCases()'> only failing</label> <input id='search' "
        f"placeholder='filter…' oninput='filterCases()'></div>{cases}</body></html>"
    )


def write_html(run: EvalRun, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(run), encoding="utf-8")
