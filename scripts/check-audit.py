#!/usr/bin/env python3
"""Checks Envoy access-log lines (JSON, one per line, on stdin) against the audit schema.

Usage: check-audit.py docs/audit.schema.json < access.log
A record printed as JSON text (auditFormat: json) is checked as its parsed value, against the
schema's `contentSchema` (which JSON Schema itself only annotates). Exits 1 naming the first
line and field that do not match.
"""
import json
import sys

import jsonschema
from jsonschema.exceptions import best_match


def main() -> int:
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    record_validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/record", "$defs": schema["$defs"]})
    checked = 0
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        record = json.loads(line)
        error = best_match(validator.iter_errors(record))
        prefix = ""
        if error is None and isinstance(record.get("warden"), str):
            prefix = "warden/"
            try:
                text = json.loads(record["warden"])
            except ValueError as e:
                print(f"line {number}: warden: not JSON text: {e}\n{line.strip()}", file=sys.stderr)
                return 1
            error = best_match(record_validator.iter_errors(text))
        if error is not None:
            e = error
            path = prefix + ("/".join(str(p) for p in e.absolute_path) or "(root)")
            print(f"line {number}: {path}: {e.message}\n{line.strip()}", file=sys.stderr)
            return 1
        checked += 1
    print(f"{checked} audit records match {sys.argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
