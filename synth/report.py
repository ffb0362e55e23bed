"""The audit as one self-contained HTML page: inline CSS and SVG charts, no script, no
external asset, so it opens offline and can be mailed or archived as it is.

Every figure in a table carries its exact value in ``data-value`` (JSON) next to the
rounded text a reader sees, and each row names its cell in ``data-cell``, so the page
can be checked against ``synth audit --json`` mechanically.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from synth.audit import num, pct

REAL, SYNTHETIC, EDITED, TARGET = "#8da0cb", "#fc8d62", "#e5c494", "#222"

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.sub { color: #666; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .8rem; min-width: 7.5rem; }
.card b { display: block; font-size: 1.3rem; }
.card span { color: #666; font-size: .8rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: 13px; }
th, td { padding: .25rem .55rem; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f6f6f6; font-weight: 600; }
td:first-child, th:first-child, .t { text-align: left; }
.legend span { display: inline-block; margin-right: 1rem; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
.warn { color: #b00; }
"""


def _td(value: Any, text: str | None = None, field: str = "") -> str:
    shown = text if text is not None else ("-" if value is None else str(value))
    return (
        f'<td data-field="{escape(field)}" data-value="{escape(json.dumps(value))}">'
        f"{escape(shown)}</td>"
    )


def _legend(*items: tuple[str, str]) -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:{c}"></i>{escape(n)}</span>' for n, c in items)
        + "</div>"
    )


def _balance_chart(cells: list[dict[str, Any]]) -> str:
    """Per cell: rows before (real) and after (real + accepted synthetic), and the
    target as a tick."""
    label_w, bar_w, row_h = 260, 560, 30
    top = max([1, *(max(c["after"], c["target"] or 0) for c in cells)])
    scale = bar_w / top
    h = row_h * len(cells) + 10
    parts = [
        f'<svg role="img" aria-label="class balance" width="{label_w + bar_w + 110}"'
        f' height="{h}" data-chart="balance">'
    ]
    for i, c in enumerate(cells):
        y = 5 + i * row_h
        name = escape(f"{c['slice']}/{c['label']}")
        parts.append(f'<text x="{label_w - 6}" y="{y + 17}" text-anchor="end">{name}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{c["before"] * scale:.1f}" height="10"'
            f' fill="{REAL}" data-cell="{name}" data-before="{c["before"]}"/>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 14}" width="{c["after"] * scale:.1f}" height="10"'
            f' fill="{SYNTHETIC}" data-cell="{name}" data-after="{c["after"]}"/>'
        )
        if c["target"] is not None:
            x = label_w + c["target"] * scale
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 26}" stroke="{TARGET}"'
                f' stroke-width="2" data-cell="{name}" data-target="{c["target"]}"/>'
            )
        parts.append(
            f'<text x="{label_w + max(c["after"], c["target"] or 0) * scale + 6:.1f}"'
            f' y="{y + 17}">{c["before"]} → {c["after"]}'
            + (f" / {c['target']}" if c["target"] is not None else "")
            + "</text>"
        )
    parts.append("</svg>")
    return _legend(
        ("before: real rows", REAL),
        ("after: real + accepted synthetic", SYNTHETIC),
        ("target", TARGET),
    ) + "".join(parts)


def _funnel_chart(stages: list[dict[str, Any]]) -> str:
    label_w, bar_w, row_h = 140, 600, 24
    top = max([1, *(s["rows"] for s in stages)])
    parts = [
        f'<svg role="img" aria-label="filter funnel" width="{label_w + bar_w + 120}"'
        f' height="{row_h * len(stages) + 10}" data-chart="funnel">'
    ]
    for i, s in enumerate(stages):
        y = 5 + i * row_h
        w = s["rows"] / top * bar_w
        note = f" (-{s['removed']})" if s["removed"] else ""
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(s["stage"])}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="16" fill="{SYNTHETIC}"'
            f' data-stage="{escape(s["stage"])}" data-rows="{s["rows"]}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{s["rows"]}{note}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _share_chart(slices: list[dict[str, Any]]) -> str:
    label_w, bar_w, row_h = 140, 560, 26
    parts = [
        f'<svg role="img" aria-label="synthetic share per slice"'
        f' width="{label_w + bar_w + 80}" height="{row_h * len(slices) + 10}"'
        ' data-chart="share">'
    ]
    for i, s in enumerate(slices):
        y = 5 + i * row_h
        x = float(label_w)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(s["slice"])}</text>'
        )
        for key, colour in (("real", REAL), ("synthetic", SYNTHETIC), ("edited", EDITED)):
            w = (s[key] / s["rows"] * bar_w) if s["rows"] else 0.0
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="18" fill="{colour}"'
                f' data-slice="{escape(s["slice"])}" data-{key}="{s[key]}"/>'
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}">{pct(s["generated_share"])}</text>')
    parts.append("</svg>")
    return _legend(("real", REAL), ("synthetic", SYNTHETIC), ("edited", EDITED)) + "".join(parts)


def _calibration(section: dict[str, Any] | None) -> str:
    """The similarity filters' thresholds: value, the rule that set it, and the seeds'
    score distribution it came from (each seed's nearest other seed, or its best match
    in an eval set)."""
    if not section:
        return "<p>No calibration in this report.</p>"
    intro = (
        f"<p>Thresholds calibrated on {section['seeds']} seeds: each is the higher of the"
        " filter's floor and a quantile of the seeds' own scores, capped; the columns q50"
        " to max are those scores.</p>"
    )
    if section["error"]:
        return intro + f'<p class="warn">{escape(section["error"])}</p>'
    rows = [
        '<table data-table="calibration"><tr><th>filter</th><th class="t">threshold</th>'
        "<th>value</th><th>rule</th><th>seeds</th><th>q50</th><th>q90</th><th>q95</th>"
        '<th>q99</th><th>max</th><th class="t">why</th></tr>'
    ]
    notes = []
    for f in section["filters"]:
        for t in f["thresholds"]:
            q = t["scores"]["quantiles"]
            rows.append(
                f'<tr data-filter="{escape(f["filter"])}" data-threshold="{escape(t["name"])}">'
                f'<td>{escape(f["filter"])}</td><td class="t">{escape(t["name"])}</td>'
                + _td(t["value"], num(t["value"], 2), "value")
                + f"<td>{escape(t['rule'])}</td>"
                + _td(t["scores"]["count"], field="scores.count")
                + "".join(
                    _td(q.get(k), num(q.get(k), 2), f"scores.quantiles.{k}")
                    for k in ("0.5", "0.9", "0.95", "0.99")
                )
                + _td(t["scores"]["max"], num(t["scores"]["max"], 2), "scores.max")
                + f'<td class="t">{escape(t["why"])}</td></tr>'
            )
        notes += [f"<li>{escape(f['filter'])}: {escape(f['measure'])}</li>"]
        notes += [f"<li>{escape(f['filter'])}: {escape(n)}</li>" for n in f["notes"]]
    rows.append("</table>")
    return intro + "".join(rows) + (f"<ul>{''.join(notes)}</ul>" if notes else "")


def _card(value: str, label: str, key: str, raw: Any) -> str:
    return (
        f'<div class="card" data-total="{escape(key)}" data-value="{escape(json.dumps(raw))}">'
        f"<b>{escape(value)}</b><span>{escape(label)}</span></div>"
    )


def render_html(report: dict[str, Any]) -> str:
    """The audit (``audit_store``'s result) as one HTML document."""
    t = report["totals"]
    cells = report["cells"]
    ag = t["agreement"]
    cards = [
        _card(str(t["rows"]), "rows in the dataset", "rows", t["rows"]),
        _card(str(t["real"]), "real", "real", t["real"]),
        _card(str(t["synthetic"]), "synthetic", "synthetic", t["synthetic"]),
        _card(str(t["edited"]), "edited", "edited", t["edited"]),
        _card(
            pct(t["generated_share"]),
            "written by a model (edited included)",
            "generated_share",
            t["generated_share"],
        ),
        _card(str(t["generated"]), "generated", "generated", t["generated"]),
        _card(
            f"${num(t['cost_per_accepted'], 5)}",
            # The demo's and a test's cost is the simulator's tokens: no bill.
            "cost per accepted row" + (" (simulated)" if t.get("simulated_cost_usd") else ""),
            "cost_per_accepted",
            t["cost_per_accepted"],
        ),
        _card(
            num(t["tokens_per_accepted"], 0),
            "tokens per accepted row",
            "tokens_per_accepted",
            t["tokens_per_accepted"],
        ),
        _card(
            f"{t['fresh_tokens']} / {t['cached_tokens']}",
            f"prompt tokens fresh / cached (cached: ${num(t['cached_usd'], 4)})",
            "cached_tokens",
            t["cached_tokens"],
        ),
        _card(
            f"{t['review']['reviewed']}/{t['review']['sampled']}",
            "reviewed / sampled",
            "reviewed",
            t["review"]["reviewed"],
        ),
        _card(
            num(ag["kappa"]) if ag else "-",
            "judge-human kappa",
            "kappa",
            ag["kappa"] if ag else None,
        ),
        _card(
            str(t["contamination_hits"]),
            "contamination hits",
            "contamination_hits",
            t["contamination_hits"],
        ),
    ]
    composition = [
        '<table data-table="cells"><tr><th>cell</th><th>real</th>'
        "<th>synthetic</th><th>edited</th><th>real %</th><th>synthetic %</th><th>edited %</th>"
        "<th>target</th>"
        "<th>before</th><th>after</th><th>generated</th><th>accepted</th></tr>"
    ]
    for c in cells:
        name = f"{c['slice']}/{c['label']}"
        composition.append(
            f'<tr data-cell="{escape(name)}"><td>{escape(name)}</td>'
            + _td(c["real"], field="real")
            + _td(c["synthetic"], field="synthetic")
            + _td(c["edited"], field="edited")
            + _td(c["real_share"], pct(c["real_share"]), "real_share")
            + _td(c["synthetic_share"], pct(c["synthetic_share"]), "synthetic_share")
            + _td(c["edited_share"], pct(c["edited_share"]), "edited_share")
            + _td(c["target"], field="target")
            + _td(c["before"], field="before")
            + _td(c["after"], field="after")
            + _td(c["generated"], field="generated")
            + _td(c["accepted"], field="accepted")
            + "</tr>"
        )
    composition.append("</table>")

    quality = [
        '<table data-table="quality"><tr><th>cell</th><th>sampled</th>'
        "<th>reviewed</th><th>approved</th><th>rejected</th><th>edited</th>"
        "<th>kappa</th><th>contamination</th><th>distinct-2</th>"
        "<th>mean NN ROUGE-L</th><th>tokens / accepted</th><th>$ / accepted</th></tr>"
    ]
    for c in cells:
        name = f"{c['slice']}/{c['label']}"
        rv = c["review"]
        div = c["diversity"]["synthetic"] or {}
        kappa = c["agreement"]["kappa"] if c["agreement"] else None
        quality.append(
            f'<tr data-cell="{escape(name)}"><td>{escape(name)}</td>'
            + _td(rv["sampled"], field="review.sampled")
            + _td(rv["reviewed"], field="review.reviewed")
            + _td(rv["approved"], field="review.approved")
            + _td(rv["rejected"], field="review.rejected")
            + _td(rv["edited"], field="review.edited")
            + _td(kappa, num(kappa), "agreement.kappa")
            + _td(c["contamination_hits"], field="contamination_hits")
            + _td(
                div.get("distinct_2"), num(div.get("distinct_2")), "diversity.synthetic.distinct_2"
            )
            + _td(
                div.get("mean_nn_rouge_l"),
                num(div.get("mean_nn_rouge_l")),
                "diversity.synthetic.mean_nn_rouge_l",
            )
            + _td(c["tokens_per_accepted"], num(c["tokens_per_accepted"], 0), "tokens_per_accepted")
            + _td(c["cost_per_accepted"], num(c["cost_per_accepted"], 6), "cost_per_accepted")
            + "</tr>"
        )
    quality.append("</table>")

    reasons = [
        '<table data-table="reasons"><tr><th>filter</th><th class="t">reason</th><th>rows</th></tr>'
    ]
    for r in report["reasons"]:
        reasons.append(
            f'<tr data-reason="{escape(r["filter"])}:{escape(r["reason"])}">'
            f'<td>{escape(r["filter"])}</td><td class="t">{escape(r["reason"])}</td>'
            + _td(r["count"], field="count")
            + "</tr>"
        )
    reasons.append("</table>")
    hits = "".join(
        f"<li><code>{escape(h['example_id'])}</code> {escape(h['slice'])}/"
        f"{escape(h['label'])}: {escape(h['reason'])}</li>"
        for h in report["contamination"][:50]
    )
    warn = (
        '<p class="warn">Judge and reviewers agree less than the 0.7 kappa bar.</p>'
        if ag and ag["low"]
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>synth audit: {escape(report["project"])}</title>
<style>{CSS}</style></head>
<body>
<h1>Audit of {escape(report["project"])}</h1>
<p class="sub">Real and synthetic rows, how they were filtered, reviewed and paid for.
Every figure is read from the provenance store.</p>
<div class="cards">{"".join(cards)}</div>
<h2>Class balance: before and after, against target</h2>
{_balance_chart(cells)}
<h2>Filter funnel</h2>
{_funnel_chart(report["funnel"])}
<h2>Synthetic share per slice</h2>
{_share_chart(report["slices"])}
<h2>Composition per cell</h2>
{"".join(composition)}
<h2>Review, agreement, contamination, diversity and cost per cell</h2>
{warn}
{"".join(quality)}
<h2>Why rows were rejected</h2>
{"".join(reasons) if report["reasons"] else "<p>No row was rejected.</p>"}
<h2>Contamination hits</h2>
{f"<ul>{hits}</ul>" if hits else "<p>No generated row matched an eval set.</p>"}
<h2>Similarity thresholds and why</h2>
{_calibration(report.get("calibration"))}
</body></html>
"""
