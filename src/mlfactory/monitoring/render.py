"""The drift report as a self-contained HTML page, and both files written to a directory.

The page has no script and loads nothing: styles are inline and every value from the report
(column names, category values, context labels) goes through Jinja's autoescaping.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, StrictUndefined

from mlfactory.monitoring.columns import ColumnDrift
from mlfactory.monitoring.report import DriftReport

TOP_VALUES = 8
"""Categorical columns show this many of their most common values."""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.none { background: #e7f6e7; } .warning { background: #fff4cc; }
.alert { background: #ffd9b3; } .critical { background: #ffc2c2; }
.drifted { font-weight: bold; color: #a00; }
ul { margin: 0; padding-left: 1.1rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% if report.context %}
<table>
{% for key, value in report.context.items() %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>
{% endif %}
<h2>Verdict</h2>
<table>
<tr><th>Data set drift</th>
<td class="{{ 'drifted' if report.dataset_drift else '' }}">{{ 'yes' if report.dataset_drift else 'no' }}</td></tr>
<tr><th>Drifting columns</th>
<td>{{ report.drifted_columns | length }} of {{ report.columns | length }}
({{ '%.0f' % (100 * report.drifted_share) }} %, threshold {{ '%.0f' % (100 * report.drift_share) }} %)</td></tr>
<tr><th>Severity</th><td class="{{ report.severity.value }}">{{ report.severity.value }}</td></tr>
<tr><th>Rows</th><td>reference {{ report.reference_rows }}, current {{ report.current_rows }}</td></tr>
</table>
<h2>Feature groups (PSI)</h2>
<table>
<tr><th>Group</th><th>PSI</th><th>Severity</th><th>Columns</th></tr>
{% for group in report.groups %}
<tr class="{{ group.severity.value }}"><td>{{ group.group }}</td><td class="num">{{ '%.4f' % group.psi }}</td>
<td>{{ group.severity.value }}</td>
<td><ul>{% for column, value in group.columns.items() %}<li>{{ column }}: {{ '%.4f' % value }}</li>{% endfor %}</ul></td></tr>
{% endfor %}
</table>
<h2>Columns</h2>
<table>
<tr><th>Column</th><th>Kind</th><th>Test</th><th>Score</th><th>Threshold</th><th>Drift</th><th>Reference / current</th></tr>
{% for column in report.columns %}
<tr><td>{{ column.column }}</td><td>{{ column.kind }}</td><td>{{ column.test }}</td>
<td class="num">{{ '%.4g' % column.score }}</td><td class="num">{{ column.threshold }}</td>
<td class="{{ 'drifted' if column.drifted else '' }}">{{ 'yes' if column.drifted else 'no' }}</td>
<td><ul>{% for key, pair in top_rows(column) %}<li>{{ key }}: {{ '%.4g' % pair[0] }} / {{ '%.4g' % pair[1] }}</li>{% endfor %}</ul></td></tr>
{% endfor %}
</table>
</body>
</html>
"""

PAGE = Environment(
    autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
).from_string(TEMPLATE)


def top_rows(column: ColumnDrift) -> list[tuple[str, tuple[float, float]]]:
    """All figures of a numeric column; the most common values of a categorical one."""
    rows = list(column.summary.items())
    if column.kind == "numeric":
        return rows
    return sorted(rows, key=lambda row: -max(row[1]))[:TOP_VALUES]


def render_html(report: DriftReport, title: str = "Drift report") -> str:
    return PAGE.render(report=report, title=title, top_rows=top_rows)


def write_report(
    report: DriftReport, directory: Path, stem: str = "drift_report", title: str = "Drift report"
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.html`` into ``directory`` (created if needed) and
    return their paths (JSON first)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{stem}.json"
    html_path = directory / f"{stem}.html"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False), "utf-8")
    html_path.write_text(render_html(report, title), "utf-8")
    return json_path, html_path
