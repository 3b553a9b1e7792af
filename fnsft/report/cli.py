"""``fnsft-report OUTPUT_DIR``: rebuild report.html and the model cards of a finished or interrupted run."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional


def report_main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="fnsft-report",
        description="Rebuild <output_dir>/report.html (and the model cards) from a run folder; no model is loaded.")
    p.add_argument("output_dir", help="The run's output_dir (holds pipeline_summary.json).")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.output_dir, "pipeline_summary.json")):
        print(f"fnsft-report: error: {args.output_dir}: no pipeline_summary.json (not an fnsft run folder?)",
              file=sys.stderr)
        return 2
    from fnsft.report import write_report

    print(write_report(args.output_dir))
    return 0


def main() -> None:
    sys.exit(report_main())


if __name__ == "__main__":
    main()
