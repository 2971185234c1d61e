#!/usr/bin/env python3
"""Checks Envoy access-log lines (JSON, one per line, on stdin) against the audit schema.

Usage: check-audit.py docs/audit.schema.json < access.log
Exits 1 naming the first line and field that do not match.
"""
import json
import sys

import jsonschema


def main() -> int:
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    checked = 0
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        record = json.loads(line)
        errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            path = "/".join(str(p) for p in e.absolute_path) or "(root)"
            print(f"line {number}: {path}: {e.message}\n{line.strip()}", file=sys.stderr)
            return 1
        checked += 1
    print(f"{checked} audit records match {sys.argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
