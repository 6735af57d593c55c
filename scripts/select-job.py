"""Put the mixin's default job selector on every selector of the exporter's series in rule files.

    python scripts/select-job.py prometheus/rules/*.yml          # edit the files in place
    python scripts/select-job.py --check prometheus/rules/*.yml  # exit 1 if a selector lacks it

A rule written as ``feedwatch_feed_up == 0 and on (job, instance) up == 1`` becomes
``feedwatch_feed_up{job="feedwatch"} == 0 and on (job, instance) up{job="feedwatch"} == 1``: only
the ``expr:`` values change, comments and layout stay as they are. tests/unit/test_mixin.py
requires the selector on every rule (exporter/alerting/mixin.py explains why); this is the quick
way to add it to a new rule.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make ``exporter`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.alerting import mixin, promql  # noqa: E402

_EXPR = re.compile(r"^(?P<indent>[ \t]*)expr: (?P<rest>.*)$")


def _inject(expr: str) -> str:
    return promql.inject(expr, mixin.DEFAULT_SELECTOR, promql.is_exporter_series, keep=[mixin.ANY_JOB_MATCHER])


def select(text: str) -> str:
    """The rule file's text with the default selector on every exporter series of its exprs."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = _EXPR.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, rest = match["indent"], match["rest"]
        if rest.strip() in ("|", "|-", "|+", ">", ">-"):
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > len(indent)):
                j += 1
            while j > i + 1 and not lines[j - 1].strip():  # trailing blank lines are not the expression's
                j -= 1
            body = _inject("\n".join(lines[i + 1:j]))
            out.append(lines[i])
            out.extend(body.split("\n"))
            i = j
        else:
            if rest.lstrip().startswith(("'", '"')):
                raise SystemExit(f"line {i + 1}: a quoted expr; write it plain or as a block (expr: |)")
            out.append(f"{indent}expr: {_inject(rest)}")
            i += 1
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    stale = []
    for path in args.files:
        text = path.read_text(encoding="utf-8")
        selected = select(text)
        if selected != text:
            stale.append(path)
            if not args.check:
                path.write_text(selected, encoding="utf-8")
                print(f"selected the job in {path}", file=sys.stderr)
    if args.check and stale:
        print("without the job selector: " + ", ".join(map(str, stale)) + " (run scripts/select-job.py on them)",
              file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
