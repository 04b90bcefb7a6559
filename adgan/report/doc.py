"""A report as plain data (sections of paragraphs, notes, tables and figures) and its two renderings:
a self-contained HTML page (figures as base64 ``data:`` URIs, inline CSS, no script, no external
reference) and Markdown with the same tables (figures as PNG files beside it)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

from adgan.report.figures import png_size


@dataclass
class Table:
    """A table of already formatted cells."""

    caption: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    """A PNG figure; ``name`` is its file name (without ``.png``) beside the Markdown report."""

    name: str
    caption: str
    png: bytes


@dataclass
class Section:
    """One report section; ``notes`` say what was left out and why."""

    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocks: list[Table | Figure] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1150px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.88em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.t,th.t{text-align:left}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.4em .8em;margin:.5em 0;font-size:.92em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}nav li{margin:.1em 0}
"""


# Cells that read as numbers ("0.61", "+0.05", "0.61 ± 0.02", "12%", "3/8") are right-aligned.
_NUMBER = re.compile(r"^[+-]?\d[\d.,]*(e[+-]?\d+)?%?( ± \d[\d.]*)?(/\d+)?$")


def _is_number(cell: str) -> bool:
    return bool(_NUMBER.match(cell.strip()))


def _prose(text: str) -> str:
    """A paragraph as HTML: escaped, with Markdown's `code` spans (which the Markdown report renders) as
    <code> rather than shown with their backticks."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(title: str, intro: list[str], sections: list[Section]) -> str:
    """The whole report as one HTML document with every figure embedded."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(title)}</title><style>{CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    out += [f"<p>{_prose(p)}</p>" for p in intro]
    out.append("<nav><ul>" + "".join(f'<li><a href="#{s.id}">{e(s.title)}</a></li>' for s in sections)
               + "</ul></nav>")
    for s in sections:
        out.append(f'<section id="{s.id}"><h2>{e(s.title)}</h2>')
        out += [f"<p>{_prose(p)}</p>" for p in s.paragraphs]
        out += [f'<div class="note">{_prose(n)}</div>' for n in s.notes]
        for block in s.blocks:
            if isinstance(block, Table):
                out.append(_html_table(block))
            else:
                w, h = png_size(block.png)
                data = base64.b64encode(block.png).decode("ascii")
                out.append(f'<figure id="fig-{e(block.name)}"><img src="data:image/png;base64,{data}" '
                           f'width="{w}" height="{h}" alt="{e(block.caption)}">'
                           f"<figcaption>{e(block.caption)}</figcaption></figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_table(t: Table) -> str:
    e = html.escape

    def cls(i: int, cell: str) -> str:
        # The first column names the row: always left-aligned; numbers elsewhere right-aligned.
        return "" if i and (_is_number(cell) or cell in ("", "-")) else ' class="t"'

    head = "".join(f'<th class="t">{e(h)}</th>' for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td{cls(i, c)}>{e(c)}</td>" for i, c in enumerate(row)) + "</tr>"
                   for row in t.rows)
    return (f"<table><caption>{e(t.caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _md_cell(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, intro: list[str], sections: list[Section], fig_dir: str) -> str:
    """The report as Markdown; figures link to ``<fig_dir>/<name>.png``."""
    out = [f"# {title}", ""]
    out += [p + "\n" for p in intro]
    for s in sections:
        out += [f"## {s.title}", ""]
        out += [p + "\n" for p in s.paragraphs]
        out += [f"> **Note:** {n}\n" for n in s.notes]
        for block in s.blocks:
            if isinstance(block, Table):
                out += [f"**{block.caption}**", "",
                        "| " + " | ".join(_md_cell(h) for h in block.headers) + " |",
                        "|" + "|".join("---" for _ in block.headers) + "|"]
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                out.append("")
            else:
                out += [f"![{_md_cell(block.caption)}]({fig_dir}/{block.name}.png)", "",
                        f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"
