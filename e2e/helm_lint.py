#!/usr/bin/env python3
"""Lints the operator's Helm chart with Helm's own library (helm-sdkpy), which
renders every template with the chart's values; exits non-zero on any error.

Usage: helm_lint.py CHART_DIR
"""

import asyncio
import json
import sys

from helm_sdkpy import Configuration, Lint


def main():
    chart = sys.argv[1]
    result = asyncio.run(Lint(Configuration()).run(chart))
    print(json.dumps(result, indent=2, default=str))
    # Helm's severities: 1 info, 2 warning, 3 error.
    messages = result.get("Messages") or []
    errors = [m for m in messages if m.get("Severity", 0) >= 2] + (result.get("Errors") or [])
    if errors:
        print(f"helm lint: {len(errors)} errors", file=sys.stderr)
        sys.exit(1)
    print(f"helm lint: {chart} ok")


if __name__ == "__main__":
    main()
