"""Audit evidence from the Terraform: `generate` writes it, `check` runs the compliance report.

    python3 scripts/evidence/evidence.py generate --out terraform/evidence
    python3 scripts/evidence/evidence.py check

Both read terraform/environments/<env> (staging and production by default), scheduler/ and
the Rust sources (common/, functions/) for the variables each function reads.
Both exit 1 when a control fails, naming the control and what is wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import artifacts  # noqa: E402
import compliance  # noqa: E402
from model import Environment  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["generate", "check"])
    p.add_argument("--terraform", type=Path, default=REPO / "terraform", help="terraform/ directory")
    p.add_argument("--scheduler", type=Path, default=REPO / "scheduler", help="scheduler/ directory")
    p.add_argument("--sources", type=Path, default=REPO, help="directory holding common/ and functions/ (the Rust sources)")
    p.add_argument("--env", action="append", help="environment (repeatable); default: staging and production")
    p.add_argument("--out", type=Path, help="output directory (generate)")
    args = p.parse_args(argv)
    if args.command == "generate" and args.out is None:
        p.error("generate needs --out")

    failed = False
    for env_name in args.env or ["staging", "production"]:
        env = Environment.load(args.terraform, env_name)
        results = compliance.run(env, args.scheduler, args.sources)
        if args.command == "generate":
            artifacts.write_all(env, args.out)
            artifacts.dump_json(args.out / env_name / "artifacts" / "compliance-report.json",
                                {"environment": env_name, "controls": results})
        for r in results:
            if r["status"] == "pass":
                print(f"PASS {env_name} {r['control']}: {r['title']}")
            else:
                failed = True
                for finding in r["findings"]:
                    print(f"FAIL {env_name} {r['control']}: {finding}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
