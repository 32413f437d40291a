#!/usr/bin/env python3
"""Independent check of JSON Schema grammars (tests/unit/test_constrain_schema.c).

Usage: schema_validate.py SCHEMAS WALKS
  SCHEMAS: one JSON Schema a line.
  WALKS:   lines "INDEX<TAB>TEXT" (TEXT with \\\\, \\x0a, \\x09 escaped), texts that
           random walks through the grammar of schema INDEX produced.
Every TEXT must parse as JSON and validate under its schema with the
`jsonschema` package (format checks on; numbers read as exact decimals, so
bounds are compared exactly). Prints each failure; exit 1 if any.
Run with the venv `make venv` builds (tests/tools/requirements-schema.txt).
"""
import decimal
import json
import sys

import jsonschema


def unescape(t):
    out, i = [], 0
    while i < len(t):
        if t[i] == "\\" and t[i + 1:i + 2] == "\\":
            out.append("\\")
            i += 2
        elif t.startswith("\\x0a", i):
            out.append("\n")
            i += 4
        elif t.startswith("\\x09", i):
            out.append("\t")
            i += 4
        else:
            out.append(t[i])
            i += 1
    return "".join(out)


def main():
    schemas = [json.loads(line, parse_float=decimal.Decimal)
               for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    bad = 0
    n = 0
    for line in open(sys.argv[2], encoding="utf-8"):
        line = line.rstrip("\n")
        if not line:
            continue
        idx, text = line.split("\t", 1)
        text = unescape(text)
        schema = schemas[int(idx)]
        n += 1
        try:
            value = json.loads(text, parse_float=decimal.Decimal)
        except ValueError as e:
            print(f"NOT JSON (schema {idx}): {text!r}: {e}")
            bad += 1
            continue
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        v = cls(schema, format_checker=cls.FORMAT_CHECKER)
        errs = list(v.iter_errors(value))
        if errs:
            print(f"INVALID (schema {idx}): {text!r}: {errs[0].message}")
            bad += 1
    print(f"schema_validate: {n} texts, {bad} rejected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
