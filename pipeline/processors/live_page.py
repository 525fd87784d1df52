"""The live view page (`GET /live`): one self-contained HTML document, inline CSS and JS.

Its markup, CSS and JS are Jinja2 templates shipped in `pipeline/processors/templates/`
(`live.html.j2` around `live_body.html.j2`, `live.css`, `live.js`); they are rendered once, at
import, because the Content-Security-Policy names the inline script and style by their hashes.

It makes no request but `live.json` (relative, so it also works behind a path prefix): no CDN,
no fonts, no images; the Content-Security-Policy sent with it allows exactly that (scripts and
styles by hash, fetches to its own origin). Every 2 s it fetches the view and redraws the site
table (value + inline SVG sparkline per metric), the fleet totals and the alerts; the header
says when the last refresh succeeded (browser time) and which event-time minute the data is as
of. Under them, "Inputs (this worker)" (`live_inputs`): the worker's input topic-partitions and
per-topic counts, rows the view flags drawn in the warning style with their hint. Cells carry
`data-metric` / `data-value` and rows `data-site` / `data-alert-id` / `data-topic` (+
`data-partition`), so tests read numbers, not formatted text. Every string from the data (ids
come from Kafka) is set as `textContent`, never parsed as HTML.
"""

from __future__ import annotations

import base64
import hashlib

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

REFRESH_MS = 2000

_TEMPLATES = Environment(
    loader=PackageLoader("pipeline.processors", "templates"),
    autoescape=select_autoescape(("html", "html.j2"), ("css", "js"), default=True),
    keep_trailing_newline=True,
)

#: The inline style and script, exactly as sent (their hashes are in the CSP).
STYLE = _TEMPLATES.get_template("live.css").render()
SCRIPT = _TEMPLATES.get_template("live.js").render(refresh_ms=REFRESH_MS)
#: The page's body markup (header, tables, footer) without the script.
BODY = _TEMPLATES.get_template("live_body.html.j2").render()


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {_hash(SCRIPT)}",
        f"style-src {_hash(STYLE)}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

# Markup(): the three parts are our own templates, already rendered; nothing from data is in them.
PAGE = _TEMPLATES.get_template("live.html.j2").render(
    style=Markup(STYLE), body=Markup(BODY), script=Markup(SCRIPT)
)
