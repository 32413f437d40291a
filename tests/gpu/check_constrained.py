#!/usr/bin/env python3
"""tests/gpu/check_constrained.py FILE... — each FILE is the `sgl run --json`
output of tests/gpu/constrained.sgl on one device; exit 1 unless every
generated value satisfies its constraint."""
import json
import re
import sys

bad = 0
for path in sys.argv[1:]:
    try:
        v = json.loads(open(path).read().strip().splitlines()[-1])["vars"]
        ok = [re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", v["phone"]) is not None,
              v["yn"] in ("yes", "no"),
              re.fullmatch(r"[0-9]{4}", v["digits"]) is not None]
        o = json.loads(v["obj"])
        ok.append(isinstance(o, dict) and set(o) == {"a", "b"} and type(o["a"]) is int and 0 <= o["a"] <= 999 and o["b"] in ("x", "y"))
    except Exception as e:  # a missing var, a run that failed: a failure
        ok, v = [False], repr(e)
    print("%s: %s %s" % (path, "ok" if all(ok) else "FAILED", json.dumps(v)))
    bad += not all(ok)
sys.exit(1 if bad else 0)
