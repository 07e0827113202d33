"""Open a report in headless Chromium: take a screenshot and collect what went wrong.

Used by `scripts/check_report.py` and the tests, to make sure the HTML renders in a real
browser with no console errors. Chromium runs with a throwaway profile, no network (every host
resolves to nothing) and a time limit.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

DEFAULT_CHROMIUM = "/usr/bin/chromium"
_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
]
# Chromium's log line for a page's console message: [pid:tid:time:INFO:CONSOLE(12)] "text", source: ...
_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


class ChromiumNotFound(RuntimeError):
    """No Chromium binary to run the check with."""


def find_chromium() -> str:
    """The Chromium binary: $PLASTICITY_CHROMIUM, /usr/bin/chromium, or one on PATH."""
    candidates = [os.environ.get("PLASTICITY_CHROMIUM"), DEFAULT_CHROMIUM,
                  shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ChromiumNotFound(
        f"Chromium not found (looked for $PLASTICITY_CHROMIUM, {DEFAULT_CHROMIUM}, chromium, "
        "chromium-browser, google-chrome on PATH); install it (e.g. `apt-get install chromium`) "
        "or set PLASTICITY_CHROMIUM to its path.")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run Chromium in its own process group so a timeout ends it and all of its children."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"Chromium did not finish within {timeout:.0f} s: {' '.join(args[:1])}") from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _chromium(binary: str, url: str, extra: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="plasticity-chromium-") as profile:
        args = [binary, *_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url]
        return _run(args, timeout)


def console_messages(stderr: str) -> list[str]:
    """The page's console messages found in Chromium's stderr log."""
    return [m.group(1).strip() for line in stderr.splitlines() if (m := _CONSOLE.search(line))]


def check_in_browser(html_path: Path, screenshot_path: Path, *, window: tuple[int, int] = (1400, 4000),
                     timeout: float = 90.0, hide: tuple[str, ...] = ()) -> list[str]:
    """Render `html_path`, save a PNG screenshot, and return the problems found (empty = fine).

    Problems: any console message (the report's one script logs nothing, so any is unexpected), a page
    whose DOM lacks the document's title (did not render), a reference to an external
    resource, a failed screenshot. `hide` opens the page with those variants hidden (`?hide=`).
    Raises `ChromiumNotFound` without Chromium.
    """
    binary = find_chromium()
    html_path = Path(html_path).resolve()
    screenshot_path = Path(screenshot_path).resolve()
    screenshot_path.parent.mkdir(parents=True, exist_ok=True)
    screenshot_path.unlink(missing_ok=True)
    url = html_path.as_uri() + ("?" + urllib.parse.urlencode([("hide", v) for v in hide]) if hide else "")
    text = html_path.read_text(encoding="utf-8", errors="replace")
    problems = [f"external resource referenced: {m.group(0)}" for m in _EXTERNAL.finditer(text)]

    dom = _chromium(binary, url, ["--dump-dom"], timeout)
    problems += [f"console: {m}" for m in console_messages(dom.stderr)]
    title = re.search(r"<title>(.*?)</title>", text, re.DOTALL)
    expected = html.unescape(title.group(1)).strip() if title else ""
    rendered = re.search(r"<title>(.*?)</title>", dom.stdout, re.DOTALL)
    if dom.returncode != 0 or not rendered or html.unescape(rendered.group(1)).strip() != expected:
        problems.append(f"page did not render (exit {dom.returncode}; title {expected!r} not in the DOM)")

    shot = _chromium(binary, url, [f"--screenshot={screenshot_path}", f"--window-size={window[0]},{window[1]}"],
                     timeout)
    # The screenshot run logs the same console messages again; report only new ones.
    problems += [f"console: {m}" for m in console_messages(shot.stderr) if f"console: {m}" not in problems]
    if not screenshot_path.is_file() or screenshot_path.stat().st_size == 0:
        problems.append(f"no screenshot written (exit {shot.returncode})")
    return problems


class _VariantElements(HTMLParser):
    """Legend buttons (key, name, pressed state) and, per variant key, the inline SVGs holding its
    elements and how many of those elements are hidden (style display: none)."""

    def __init__(self) -> None:
        super().__init__()
        self.buttons: list[dict[str, str]] = []
        self.svg_count = 0
        self._svg_depth = 0
        self.svgs: dict[str, set[int]] = {}
        self.total: dict[str, int] = {}
        self.hidden: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "button" and "vkey" in classes:
            self.buttons.append({"key": a.get("data-key", ""), "variant": a.get("data-variant", ""),
                                 "off": "off" in classes})
        if tag == "svg":
            if self._svg_depth == 0:
                self.svg_count += 1
            self._svg_depth += 1
        if self._svg_depth and "plv" in classes:
            style = a.get("style", "").replace(" ", "")
            for key in (c for c in classes if c != "plv"):
                self.svgs.setdefault(key, set()).add(self.svg_count)
                self.total[key] = self.total.get(key, 0) + 1
                self.hidden[key] = self.hidden.get(key, 0) + ("display:none" in style)

    def handle_endtag(self, tag):
        if tag == "svg" and self._svg_depth:
            self._svg_depth -= 1


def _variant_elements(text: str) -> _VariantElements:
    parser = _VariantElements()
    parser.feed(text)
    return parser


def check_legend_toggle(html_path: Path, variant: str | None = None, *, timeout: float = 90.0) -> list[str]:
    """Hide one variant through the legend and check it vanished from every figure, and only it.

    Opens the report with `?hide=<variant>`, which the page's script applies on load by clicking
    that legend entry (the code path of a user's click), and reads the resulting DOM. `variant`
    defaults to the one drawn in the most figures. Returns the problems found (empty = fine).
    """
    binary = find_chromium()
    html_path = Path(html_path).resolve()
    before = _variant_elements(html_path.read_text(encoding="utf-8", errors="replace"))
    names = {b["variant"]: b["key"] for b in before.buttons}
    if not names:
        return ["no legend entries in the report"]
    if variant is None:
        variant = max(names, key=lambda v: len(before.svgs.get(names[v], ())))
    if variant not in names:
        return [f"no legend entry for variant {variant!r}"]
    key = names[variant]
    if not before.svgs.get(key):
        return [f"variant {variant!r} has no elements in any figure"]
    if before.hidden.get(key):
        return [f"variant {variant!r} is hidden before any click"]
    url = html_path.as_uri() + "?" + urllib.parse.urlencode({"hide": variant})
    dom = _chromium(binary, url, ["--dump-dom"], timeout)
    problems = [f"console: {m}" for m in console_messages(dom.stderr)]
    after = _variant_elements(dom.stdout)
    if after.total.get(key, 0) != before.total[key] or after.svgs.get(key) != before.svgs[key]:
        problems.append(f"{variant!r}: {before.total[key]} elements in {len(before.svgs[key])} figures before, "
                        f"{after.total.get(key, 0)} in {len(after.svgs.get(key, ()))} after the click")
    if after.hidden.get(key, 0) != before.total[key]:
        problems.append(f"{variant!r}: {after.hidden.get(key, 0)} of {before.total[key]} elements hidden after "
                        f"the click (in {len(before.svgs[key])} figures)")
    others = {k: n for k, n in after.hidden.items() if k != key and n}
    if others:
        problems.append(f"other variants hidden too: {sorted(others)}")
    button = next((b for b in after.buttons if b["key"] == key), None)
    if button is None or not button["off"]:
        problems.append(f"the legend entry of {variant!r} is not marked hidden")
    return problems
