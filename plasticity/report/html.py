"""HTML building blocks: escaping, tables, figures and the page shell (inline CSS, one inline script).

Every string is escaped unless it is wrapped in `Markup`, which only this package's own code
creates for HTML it assembled itself. Names from suites and plugins therefore stay text.
"""
from __future__ import annotations

import html
from typing import Iterable, Sequence


class Markup(str):
    """A string of HTML built by the report itself: inserted as is, never escaped again."""


def esc(value: object) -> Markup:
    """Escape any value for HTML text or attribute context (Markup passes through)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    """Concatenate parts, escaping those that are not Markup."""
    return Markup(sep.join(esc(p) for p in parts))


def tag(name: str, content: object = "", **attrs: object) -> Markup:
    """`<name attrs>content</name>`; attribute values are escaped (class_ -> class)."""
    attr = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    return Markup(f"<{name}{attr}>{esc(content)}</{name}>")


def table(headers: Sequence[object], rows: Iterable[Sequence[object]], numeric: Sequence[int] = (),
          header_rows: Sequence[Sequence[tuple[object, int]]] = (), row_classes: Sequence[str] = (),
          class_: str = "data") -> Markup:
    """A table; columns whose index is in `numeric` are right-aligned with tabular figures.

    `header_rows` are extra header rows above `headers`, as (label, colspan) pairs.
    """
    num = set(numeric)
    head = "".join(
        "<tr>" + "".join(f'<th colspan="{span}">{esc(label)}</th>' if span > 1 else f"<th>{esc(label)}</th>"
                         for label, span in hr) + "</tr>" for hr in header_rows)
    head += "<tr>" + "".join(f'<th class="num">{esc(h)}</th>' if i in num else f"<th>{esc(h)}</th>"
                             for i, h in enumerate(headers)) + "</tr>"
    body = []
    classes = list(row_classes)
    for r, row in enumerate(rows):
        cls = f' class="{esc(classes[r])}"' if r < len(classes) and classes[r] else ""
        body.append(f"<tr{cls}>" + "".join(f'<td class="num">{esc(c)}</td>' if i in num else f"<td>{esc(c)}</td>"
                                          for i, c in enumerate(row)) + "</tr>")
    return Markup(f'<div class="scroll"><table class="{esc(class_)}"><thead>{head}</thead>'
                  f'<tbody>{"".join(body)}</tbody></table></div>')


def figure(content: str | None, alt: str, caption: object = "") -> Markup:
    """A figure with a caption: an inline SVG the report drew (`Markup`) or an embedded image
    (a data: URI); nothing when there is no figure."""
    if not content:
        return Markup("")
    cap = tag("figcaption", caption) if caption else ""
    if isinstance(content, Markup) and content.lstrip().startswith("<svg"):
        return Markup(f'<figure aria-label="{esc(alt)}">{content}{cap}</figure>')
    if not content.startswith("data:image/"):
        raise ValueError("report figures must be inline SVG or embedded data: URIs")
    return Markup(f'<figure><img src="{esc(content)}" alt="{esc(alt)}" loading="eager">{cap}</figure>')


def section(anchor: str, title: object, *content: object, level: int = 2) -> Markup:
    """A titled section with an id to link to from the contents."""
    return Markup(f'<section id="{esc(anchor)}"><h{level}>{esc(title)}</h{level}>'
                  + "".join(esc(c) for c in content) + "</section>")


CSS = """
:root { --fg:#1d2433; --muted:#5b6474; --line:#d9dee7; --head:#eef1f6; --zebra:#f8f9fb; --accent:#2f5fa7; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.8em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.4em; margin-top: 2em; padding-bottom: 0.2em; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.1em; margin-top: 1.6em; }
p.lead { color: var(--muted); margin-top: 0; }
.note { color: var(--muted); font-size: 0.9em; }
nav.toc { background: var(--zebra); border: 1px solid var(--line); border-radius: 6px; padding: 8px 16px; }
nav.toc ul { margin: 4px 0; padding-left: 20px; columns: 2; }
a { color: var(--accent); }
.scroll { overflow-x: auto; margin: 8px 0 16px; }
table.data { border-collapse: collapse; font-size: 0.9em; }
table.data th, table.data td { border: 1px solid var(--line); padding: 4px 9px; vertical-align: top; }
table.data th { background: var(--head); text-align: left; font-weight: 600; }
table.data tbody tr:nth-child(even) { background: var(--zebra); }
table.data .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.data tr.best td { font-weight: 600; }
table.data th.num { white-space: normal; }
table.data td:first-child { white-space: nowrap; }
table.claims td:first-child { white-space: normal; min-width: 12em; }
table.data .sub { color: var(--muted); font-size: 0.9em; font-weight: normal; }
table.kv th { width: 14em; }
.pill { display: inline-block; padding: 1px 9px; margin: 2px 6px 2px 0; border-radius: 10px; font-size: 0.88em;
        background: var(--head); }
.pill.complete { background: #dff0dc; } .pill.diverged { background: #f8d9d5; }
.pill.error { background: #fde9c4; } .pill.incomplete { background: #e5e7eb; }
figure { margin: 12px 0 24px; }
figure img, figure svg.fig { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
.flags { border: 1px solid #e0b252; background: #fff8e6; border-radius: 6px; padding: 6px 14px; margin: 10px 0; }
.flags h4 { margin: 4px 0; } .flags ul { margin: 4px 0; padding-left: 20px; }
.busy { color: #a15c00; }
nav.legend { position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,0.96); border: 1px solid var(--line);
             border-radius: 6px; padding: 6px 10px; margin: 10px 0; max-height: 9.5em; overflow-y: auto; }
nav.legend .ltitle { font-weight: 600; margin-right: 8px; }
nav.legend button { font: inherit; font-size: 0.86em; border: 1px solid var(--line); background: #fff;
                    border-radius: 12px;
                    padding: 1px 9px 1px 6px; margin: 2px 3px; cursor: pointer; }
nav.legend button.off { opacity: 0.4; text-decoration: line-through; }
nav.legend .sw { display: inline-block; width: 18px; height: 0; border-top: 3px solid; vertical-align: middle;
                 margin-right: 5px; }
figcaption { color: var(--muted); font-size: 0.88em; margin-top: 4px; }
.figrow { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.figrow figure { margin: 0 0 12px; }
pre { background: var(--zebra); border: 1px solid var(--line); border-radius: 4px; padding: 10px 12px;
      overflow-x: auto; font-size: 0.85em; }
details summary { cursor: pointer; color: var(--accent); }
code { font-size: 0.92em; }
"""


# The legend's behaviour: a click on a variant hides (or shows again) every element of its class
# in every figure. `?hide=NAME` (repeatable) applies the same click on load: a link that opens the
# report with variants hidden, and what the headless-browser check uses. Names are compared as
# text (data-variant), never put into a selector; classes are the report's own plv-N keys.
SCRIPT = """
(function () {
  var buttons = Array.prototype.slice.call(document.querySelectorAll("nav.legend button.vkey"));
  function show(btn, visible) {
    btn.classList.toggle("off", !visible);
    btn.setAttribute("aria-pressed", visible ? "true" : "false");
    document.querySelectorAll("svg ." + btn.dataset.key).forEach(function (el) {
      el.style.display = visible ? "" : "none";
    });
  }
  buttons.forEach(function (btn) {
    btn.addEventListener("click", function () { show(btn, btn.classList.contains("off")); });
  });
  document.querySelectorAll("nav.legend button.vall").forEach(function (all) {
    all.addEventListener("click", function () {
      buttons.forEach(function (btn) { show(btn, all.dataset.show === "1"); });
    });
  });
  var hide = new URLSearchParams(window.location.search).getAll("hide");
  buttons.forEach(function (btn) {
    if (hide.indexOf(btn.dataset.variant) >= 0) { btn.click(); }
  });
})();
"""


def page(title: object, body: object) -> Markup:
    """The whole document: one inline script (the legend), no external resources."""
    return Markup(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Nothing may be fetched: the report must work offline; the only code is SCRIPT.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{esc(body)}</main><script>{SCRIPT}</script></body></html>\n")
