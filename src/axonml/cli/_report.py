"""Rendering of ``axonml analyze`` results as text, Markdown, JSON or one self-contained HTML file.

The HTML page has inline CSS and inline SVG bar charts (parameter share per
layer, samples per class): no scripts, no external resources.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from ._output import human_bytes

FORMATS = ("html", "json", "markdown", "text")


def _shape(s: Any) -> str:
    return "-" if s is None else str(s)


def _model_rows(m: dict[str, Any]) -> list[list[str]]:
    return [[r["name"], r["type"], f"{r['params']:,}", f"{100 * r['share']:.1f}%", _shape(r["output_shape"])]
            for r in m["layers"]]


def _type_rows(m: dict[str, Any]) -> list[list[str]]:
    return [[t, str(v["layers"]), f"{v['params']:,}", f"{100 * v['share']:.1f}%"] for t, v in m["by_type"].items()]


def _facts(m: dict[str, Any] | None, d: dict[str, Any] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if m is not None:
        mem = m["memory"]
        out += [("model", f"{m['path']} ({m['format']}{', ' + m['model_class'] if m['model_class'] else ''})"),
                ("parameters", f"{m['totals']['parameters']:,} in {m['totals']['layers_with_parameters']} layers"),
                ("parameter memory", human_bytes(mem["param_bytes"])),
                ("training memory (Adam, est.)", human_bytes(mem["training_adam_bytes"]))]
        if m["input_shape"]:
            out.append(("input shape", f"{m['input_shape']} (from {m['input_shape_from']})"))
        if "activation_bytes" in mem:
            out.append(("forward activations", human_bytes(mem["activation_bytes"])))
    if d is not None:
        out += [("data", f"{d['path']} ({d['format']})"), ("samples", f"{d['num_samples']:,}")]
        if d.get("num_classes"):
            out.append(("classes", str(d["num_classes"])))
        if d.get("imbalance_ratio") is not None:
            out.append(("imbalance ratio (max/min)", f"{d['imbalance_ratio']:.2f}"))
        stats = d.get("pixel_stats") or d.get("feature_stats") or {}
        if stats.get("mean"):
            kind = "pixel" if d.get("pixel_stats") else "feature"
            mean = ", ".join(f"{v:.4g}" for v in stats["mean"][:8])
            std = ", ".join(f"{v:.4g}" for v in stats["std"][:8])
            out += [(f"{kind} mean", mean), (f"{kind} std", std),
                    (f"{kind} range", f"{min(stats['min']):.4g} .. {max(stats['max']):.4g}")]
    return out


def _text(result: dict[str, Any], md: bool) -> str:
    m, d, recs = result.get("model"), result.get("data"), result.get("recommendations", [])
    lines: list[str] = ["# axonml analysis", ""] if md else []

    def table(head: list[str], rows: list[list[str]]) -> None:
        if md:
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            lines.extend("| " + " | ".join(r) + " |" for r in rows)
        else:
            widths = [max(len(x) for x in col) for col in zip(head, *rows)]
            for r in [head, *rows]:
                lines.append("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
        lines.append("")

    def heading(title: str) -> None:
        lines.append(f"## {title}" if md else f"{title}\n{'-' * len(title)}")
        if md:
            lines.append("")

    heading("Summary")
    table(["what", "value"], [[k, v] for k, v in _facts(m, d)])
    if m is not None:
        heading("Layers")
        table(["layer", "type", "params", "share", "output shape"], _model_rows(m))
        heading("Parameters by layer type")
        table(["type", "layers", "params", "share"], _type_rows(m))
    if d is not None and d.get("class_counts"):
        heading("Class distribution")
        total = sum(d["class_counts"].values()) or 1
        table(["class", "samples", "share"], [[k, f"{v:,}", f"{100 * v / total:.1f}%"]
                                              for k, v in d["class_counts"].items()])
    heading("Recommendations")
    if recs:
        lines.extend(f"- {r['text']}" for r in recs)
    else:
        lines.append("- none: no measurement crossed a threshold")
    lines.append("")
    return "\n".join(lines)


def _bar_chart(title: str, items: list[tuple[str, float]], fmt: str, color: str) -> str:
    """A horizontal SVG bar chart: one labelled bar per item, scaled to the largest value."""
    bar_h, gap, label_w, chart_w = 18, 6, 180, 420
    height = 30 + len(items) * (bar_h + gap)
    top = max((v for _, v in items), default=0) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{label_w + chart_w + 90}" '
             f'height="{height}" aria-label="{escape(title)}">',
             f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i, (label, v) in enumerate(items):
        y = 28 + i * (bar_h + gap)
        w = max(1.0, chart_w * v / top)
        short = label if len(label) <= 24 else label[:23] + "…"
        parts += [f'<text x="{label_w - 6}" y="{y + 13}" font-size="12" text-anchor="end">{escape(short)}</text>',
                  f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>',
                  f'<text x="{label_w + w + 6:.1f}" y="{y + 13}" font-size="12">{escape(fmt.format(v))}</text>']
    parts.append("</svg>")
    return "".join(parts)


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px}
th{background:#f2f2f2;text-align:left}td.n{text-align:right}.rec{background:#fff8e1;padding:6px 10px;
margin:4px 0;border-left:4px solid #f0a000}.chart{margin:12px 0}"""


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _html(result: dict[str, Any]) -> str:
    m, d, recs = result.get("model"), result.get("data"), result.get("recommendations", [])
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>axonml analysis</title>",
           f"<style>{_CSS}</style></head><body><h1>axonml analysis</h1>",
           "<h2>Summary</h2>", _html_table(["what", "value"], [[k, v] for k, v in _facts(m, d)])]
    if m is not None:
        rows = sorted(m["layers"], key=lambda r: -r["params"])[:20]
        out += ["<h2>Layers</h2>", '<div class="chart" id="chart-params">',
                _bar_chart("Parameter share per layer", [(f"{r['name']} ({r['type']})", 100 * r["share"])
                                                         for r in rows], "{:.1f}%", "#3b7dd8"), "</div>",
                _html_table(["layer", "type", "params", "share", "output shape"], _model_rows(m)),
                "<h2>Parameters by layer type</h2>", _html_table(["type", "layers", "params", "share"], _type_rows(m))]
    if d is not None and d.get("class_counts"):
        counts = d["class_counts"]
        out += ["<h2>Class distribution</h2>", '<div class="chart" id="chart-classes">',
                _bar_chart("Samples per class", [(k, float(v)) for k, v in list(counts.items())[:50]], "{:,.0f}",
                           "#2e9d5b"), "</div>",
                _html_table(["class", "samples"], [[k, f"{v:,}"] for k, v in counts.items()])]
    out.append("<h2>Recommendations</h2>")
    out += [f'<div class="rec">{escape(r["text"])}</div>' for r in recs] or \
        ["<p>None: no measurement crossed a threshold.</p>"]
    out.append("</body></html>\n")
    return "\n".join(out)


def render(result: dict[str, Any], fmt: str) -> str:
    """``result`` (``{"model", "data", "recommendations"}``) as ``html``, ``json``, ``markdown`` or ``text``."""
    if fmt == "json":
        return json.dumps(result, indent=2, default=str) + "\n"
    if fmt == "html":
        return _html(result)
    if fmt in ("markdown", "text"):
        return _text(result, fmt == "markdown")
    raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")
