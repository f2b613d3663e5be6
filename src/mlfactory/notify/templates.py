"""Jinja templates of every message, in plain text and HTML.

HTML templates are autoescaped: every value (pipeline names, error messages, metric names)
reaches the mail as text, never as markup. The templates live here rather than in files so
they ship with the module and need no package data.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

_LAYOUT = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ headline }}</title></head>
<body style="font-family: system-ui, sans-serif; color: #222; max-width: 48rem;">
<h2 style="margin: 0 0 1rem;">{{ headline }}</h2>
{% block body %}{% endblock %}
{% block links %}
{% if link %}
<p><a href="{{ link }}">Open the status page</a></p>
{% endif %}
{% endblock %}
</body></html>
"""

_MACROS = """\
{% macro table(header, rows) %}
<table style="border-collapse: collapse; margin: .5rem 0 1rem;">
{% if header %}
<tr>{% for cell in header %}<th style="{{ cell_style }} background: #f5f5f5;">{{ cell }}</th>{% endfor %}</tr>
{% endif %}
{% for row in rows %}
<tr>{% for cell in row %}<td style="{{ cell_style }}">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endmacro %}
"""

_RUN_ENDED_HTML = """\
{% extends "layout.html" %}
{% from "macros.html" import table with context %}
{% block body %}
{% if run.status == "failed" %}
<div style="border-left: .3rem solid #c62828; background: #fdecea; padding: .2rem 1rem;">
<p><strong>Step {{ run.failed_step or "(none recorded)" }} failed</strong></p>
<pre style="white-space: pre-wrap;">{{ run.error or "no error recorded" }}</pre>
</div>
{% endif %}
{{ table(none, [
    ("Pipeline", run.pipeline), ("Run", run.run_id), ("Status", run.status),
    ("Started", started), ("Duration", duration)]) }}
{% if metrics %}
<h3>Metrics</h3>
{{ table(("metric", "value"), metrics | map("number_row") | list) }}
{% endif %}
{% if summary %}
<h3>Summary</h3>
{{ table(none, summary | map("value_row") | list) }}
{% endif %}
<h3>How to see the run</h3>
<p><code>mlfactory runs --id {{ run.run_id }}</code></p>
{% endblock %}
"""

_RUN_ENDED_TEXT = """\
{{ headline }}

Pipeline: {{ run.pipeline }}
Run:      {{ run.run_id }}
Status:   {{ run.status }}
Started:  {{ started }}
Duration: {{ duration }}
{% if run.status == "failed" %}

Failed step: {{ run.failed_step or "(none recorded)" }}
Error:
{{ (run.error or "no error recorded") | indent(2, true) }}
{% endif %}
{% if metrics %}

Metrics:
{% for name, value in metrics %}
  {{ name }}: {{ value | number }}
{% endfor %}
{% endif %}
{% if summary %}

Summary:
{% for name, value in summary %}
  {{ name }}: {{ value | value }}
{% endfor %}
{% endif %}

How to see the run:
  mlfactory runs --id {{ run.run_id }}
{% if link %}
  {{ link }}
{% endif %}
"""

_PROMOTION_HTML = """\
{% extends "layout.html" %}
{% from "macros.html" import table with context %}
{% block body %}
<p>Model <strong>{{ change.model_name }}</strong>: the champion moves from
{{ ("version " ~ change.old_version) if change.old_version else "no champion" }}
to version {{ change.new_version }}.</p>
{% if change.pipeline %}
<p>Pipeline {{ change.pipeline }}{% if change.run_id is not none %}, run {{ change.run_id }}
(<code>mlfactory runs --id {{ change.run_id }}</code>){% endif %}.</p>
{% endif %}
{{ table(("metric", "old champion", "new champion", "change"), rows | map("metric_row") | list) }}
{% endblock %}
"""

_PROMOTION_TEXT = """\
{{ headline }}

Model:        {{ change.model_name }}
Old champion: {{ ("version " ~ change.old_version) if change.old_version else "none" }}
New champion: version {{ change.new_version }}
{% if change.pipeline %}
Pipeline:     {{ change.pipeline }}
{% endif %}
{% if change.run_id is not none %}
Run:          {{ change.run_id }} (mlfactory runs --id {{ change.run_id }})
{% endif %}

Metrics (old -> new, change):
{% for name, old, new, delta in rows %}
  {{ name }}: {{ old | number }} -> {{ new | number }} ({{ delta | signed }})
{% endfor %}
{% if link %}

Status page: {{ link }}
{% endif %}
"""

_DRIFT_HTML = """\
{% extends "layout.html" %}
{% from "macros.html" import table with context %}
{% block body %}
<p>Severity: <strong>{{ alert.severity }}</strong>. Pipeline {{ alert.pipeline }}
{%- if alert.model_name %}, model {{ alert.model_name }}
{%- if alert.model_version %} version {{ alert.model_version }}{% endif %}{% endif %}.</p>
<p>Groups over their threshold:</p>
{{ table(("group", "score", "threshold"),
         groups | map("group_row") | list) }}
{% endblock %}
"""

_DRIFT_TEXT = """\
{{ headline }}

Severity: {{ alert.severity }}
Pipeline: {{ alert.pipeline }}
{% if alert.model_name %}
Model:    {{ alert.model_name }}{% if alert.model_version %} version {{ alert.model_version }}{% endif %}

{% endif %}

Groups over their threshold (score / threshold):
{% for group in groups %}
  {{ group.name }}: {{ group.score | number }} / {{ group.threshold | number }}
{% endfor %}
{% if link %}

Status page: {{ link }}
{% endif %}
"""

_TEMPLATES = {
    "layout.html": _LAYOUT,
    "macros.html": _MACROS,
    "run_ended.html": _RUN_ENDED_HTML,
    "run_ended.txt": _RUN_ENDED_TEXT,
    "promotion.html": _PROMOTION_HTML,
    "promotion.txt": _PROMOTION_TEXT,
    "drift.html": _DRIFT_HTML,
    "drift.txt": _DRIFT_TEXT,
}


def number(value: Any) -> str:
    """A metric as people read it: four significant digits, '-' when missing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4g}"


def value(item: Any) -> str:
    """A summary value: strings as they are, anything else as compact JSON."""
    return item if isinstance(item, str) else json.dumps(item, default=str, ensure_ascii=False)


def _environment() -> Environment:
    env = Environment(
        loader=DictLoader(_TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        number=number,
        signed=signed,
        value=value,
        number_row=lambda row: (row[0], number(row[1])),
        value_row=lambda row: (row[0], value(row[1])),
        metric_row=lambda row: (row[0], number(row[1]), number(row[2]), signed(row[3])),
        group_row=lambda group: (group.name, number(group.score), number(group.threshold)),
    )
    env.globals["cell_style"] = "border: 1px solid #ccc; padding: .3rem .6rem; text-align: left;"
    return env


_env = _environment()


def render(name: str, **context: Any) -> tuple[str, str]:
    """The plain-text and HTML bodies of the message ``name``."""
    return (
        _env.get_template(f"{name}.txt").render(context),
        _env.get_template(f"{name}.html").render(context),
    )
