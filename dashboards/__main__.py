"""``python -m dashboards``: regenerate the dashboards' JSON, the alert rules and the Kubernetes manifests.

``--check`` writes nothing and fails when a committed file differs from what the code generates.
``--set NAME=VALUE`` / ``--params FILE`` override alert thresholds (see dashboards/params.py);
``--rules-out DIR`` writes only the rule files, to DIR (for custom thresholds outside the repo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards.generate import REPO, render_all, render_rules
from dashboards.params import load_overrides, resolve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if committed files are stale; write nothing")
    ap.add_argument("--params", type=Path, help="YAML mapping of alert parameter overrides")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override one parameter")
    ap.add_argument("--rules-out", type=Path, help="write only the rule files, into this directory")
    args = ap.parse_args(argv)
    try:
        params = resolve(load_overrides(args.params, args.set))
    except (KeyError, ValueError) as exc:
        print(f"python -m dashboards: {exc}", file=sys.stderr)
        return 2
    if args.rules_out is not None:
        args.rules_out.mkdir(parents=True, exist_ok=True)
        for name, text in render_rules(params).items():
            (args.rules_out / name).write_text(text)
        print(f"wrote {len(render_rules(params))} rule files to {args.rules_out}")
        return 0
    files = render_all(params)
    stale = [rel for rel, text in files.items() if not (REPO / rel).is_file() or (REPO / rel).read_text() != text]
    if args.check:
        for rel in stale:
            print(f"stale: {rel} (run `python -m dashboards`)", file=sys.stderr)
        return 1 if stale else 0
    for rel in stale:
        path = REPO / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel])
    print(f"{len(files)} files, {len(stale)} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
