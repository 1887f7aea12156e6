"""index.html: every figure with both models' predictions; relative links only."""
from __future__ import annotations

from typing import Any

from ..provenance import provenance_html
from ...core.names import href
from ...core.roles import ROLE_LABELS, ROLES

_GALLERY_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em}
.totals{color:#555}
.grid{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;padding:.5em;background:#fff;border:1px solid #ddd;border-radius:4px;max-width:100%}
figure img{display:block;max-width:100%;height:auto}
figcaption{font-size:.85em;margin-top:.4em;line-height:1.4}
.name{font-weight:600;word-break:break-all}
.failed li{color:#a00;word-break:break-all}
.provenance{font-size:.85em;color:#444}
.provenance table{border-collapse:collapse}
.provenance th,.provenance td{text-align:left;padding:.1em .8em .1em 0;word-break:break-all}
"""


def _describe(model: str, prediction_: dict[str, Any] | None) -> str:
    if not prediction_:
        return f"{model}: (not recorded)"
    return f"{model}: {prediction_['name']} ({prediction_['probability']:.0%}, class {prediction_['class']})"


def _figure_media(href: str, alt: str) -> str:
    """How the gallery shows a figure: an image (PNG, SVG), or an embedded PDF with a link."""
    if href.lower().endswith(".pdf"):
        return (f'<object data="{href}" type="application/pdf" width="640" height="480">'
                f'<a href="{href}">{alt} (PDF)</a></object><br><a href="{href}">open the PDF</a>')
    return f'<a href="{href}"><img src="{href}" alt="{alt}"></a>'


def _figure_html(record: dict[str, Any]) -> str:
    from html import escape

    link = escape(href(record["output"]), quote=True)
    name = escape(record["input"])
    lines = [f'<span class="name">{name}</span>',
             *(escape(_describe(ROLE_LABELS[role], record.get(role))) for role in ROLES)]
    return (f'<figure>{_figure_media(link, escape(record["input"], quote=True))}'
            f'<figcaption>{"<br>".join(lines)}</figcaption></figure>')


def gallery_html(summary: dict[str, Any]) -> str:
    """index.html: every figure with both models' predictions; relative links, no external resources."""
    from html import escape

    images = summary["images"]
    totals = summary["totals"]
    figures = [_figure_html(r) for r in images if r.get("output")]
    failed = [f"<li>{escape(r['input'])}: {escape(r.get('error') or '')}</li>"
              for r in images if r["status"] == "failed"]
    title = f"ncviz batch: {escape(summary['input_dir'])}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>", f"<style>{_GALLERY_CSS}</style>", "</head>", "<body>",
        f"<h1>{title}</h1>", *provenance_html(summary.get("provenance")),
        (f'<p class="totals">{totals["images"]} images: {totals["written"]} written, {totals["skipped"]} skipped, '
         f'{totals["failed"]} failed; layout {escape(summary["settings"]["layout"])}</p>'),
        '<div class="grid">', *figures, "</div>",
    ]
    if failed:
        parts += ["<h2>Failed</h2>", '<ul class="failed">', *failed, "</ul>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
