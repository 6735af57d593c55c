"""Write deploy/kubernetes/prometheusrule.yaml from prometheus/rules/*.yml (the same rules).

    python deploy/kubernetes/generate.py           # (make kubernetes) rewrite the file
    python deploy/kubernetes/generate.py --check   # exit 1 if the file differs from the rules

exporter/alerting/prometheusrule.py renders it (``feedwatch mixin`` writes one for another job
selector the same way). tests/unit/test_kubernetes.py fails when the committed file drifts
from the rules and validates it against the operator's CRD schema.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from a checkout: make ``exporter`` importable
    sys.path.insert(0, str(ROOT))

from exporter.alerting import prometheusrule  # noqa: E402

RULES_DIR = ROOT / "prometheus" / "rules"
OUTPUT = Path(__file__).resolve().parent / "prometheusrule.yaml"


def render(rules_dir: Path = RULES_DIR) -> str:
    return prometheusrule.render(path.read_text() for path in sorted(rules_dir.glob("*.yml")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run `make kubernetes`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
