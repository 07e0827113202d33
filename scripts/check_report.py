#!/usr/bin/env python3
"""Render a plasticity report in headless Chromium, save a screenshot, fail on console errors,
and check that a click on a legend entry hides that variant in every figure.

    python scripts/check_report.py reports/quick                  # build index.html, then check it
    python scripts/check_report.py reports/quick/index.html --no-build
    python scripts/check_report.py reports/quick --hide "bp + sgd"  # also screenshot with it hidden

Exit status: 0 when the page rendered cleanly, 1 when problems were found, 2 without Chromium.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plasticity.report import build_report
from plasticity.report.browser import ChromiumNotFound, check_in_browser, check_legend_toggle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", type=Path, help="a suite folder or an index.html")
    parser.add_argument("--screenshot", type=Path, help="PNG to write (default: next to the report)")
    parser.add_argument("--no-build", action="store_true", help="check the existing index.html as it is")
    parser.add_argument("--height", type=int, default=4000, help="window height in pixels (default 4000)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per Chromium run")
    parser.add_argument("--hide", metavar="VARIANT",
                        help="variant whose legend click is checked (default: the one in most figures)")
    args = parser.parse_args(argv)

    if args.target is None:
        parser.error("give a suite folder or an index.html")
    target = args.target

    if target.is_dir():
        html_path = target / "index.html" if args.no_build else build_report(target)
    else:
        html_path = target
    if not html_path.is_file():
        print(f"no report at {html_path}", file=sys.stderr)
        return 1
    shot = args.screenshot or html_path.with_name(html_path.stem + ".png")
    try:
        problems = check_in_browser(html_path, shot, window=(1400, args.height), timeout=args.timeout)
        problems += [f"legend: {p}" for p in check_legend_toggle(html_path, args.hide, timeout=args.timeout)]
        if args.hide:  # what the reader sees with that variant switched off
            hidden_shot = shot.with_name(shot.stem + "-hidden" + shot.suffix)
            problems += check_in_browser(html_path, hidden_shot, window=(1400, args.height), timeout=args.timeout,
                                         hide=(args.hide,))
            print(f"screenshot with {args.hide!r} hidden: {hidden_shot}")
    except ChromiumNotFound as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"report:     {html_path}\nscreenshot: {shot}")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print("ok: rendered without console errors; a legend click hides its variant in every figure"
          if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
