"""Per-kind recall and precision of the PHI scrubber on an annotated JSONL fixture.

Run as: python benchmarks/phi_recall.py [FIXTURE]

FIXTURE defaults to tests/assets/phi_fixture.jsonl; each line is
``{"text": ..., "phi": [[kind, exact substring], ...]}``.

* recall: an annotated substring counts as found when it is gone from the scrubbed
  text and the placeholder of its kind is there.
* precision: replacements of a kind that match an annotated item of that kind in the
  same line, over all replacements of that kind.
* no-PHI precision: share of lines with ``phi == []`` that come back unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
try:
    from medtune.data.phi import PLACEHOLDERS, scrub
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(ROOT / "src"))
    from medtune.data.phi import PLACEHOLDERS, scrub


def evaluate(rows: list[dict]) -> tuple[Counter, Counter, Counter, Counter, int, int]:
    """Return (annotated, found, replaced, correct) per kind and (clean lines, no-PHI lines)."""
    total: Counter = Counter()
    found: Counter = Counter()
    replaced: Counter = Counter()
    correct: Counter = Counter()
    clean = no_phi = 0
    for row in rows:
        out, counts = scrub(row["text"])
        hits: Counter = Counter()
        for kind, value in row["phi"]:
            total[kind] += 1
            if value not in out and PLACEHOLDERS[kind] in out:
                hits[kind] += 1
        found.update(hits)
        replaced.update(counts)
        for kind, n in counts.items():
            correct[kind] += min(n, hits[kind])
        if not row["phi"]:
            no_phi += 1
            clean += out == row["text"]
    return total, found, replaced, correct, clean, no_phi


def _well_formed(row: object) -> bool:
    """A fixture row: {"text": str, "phi": [[kind, substring], ...]}."""
    if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(row.get("phi"), list):
        return False
    return all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in row["phi"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="phi_recall.py", description=__doc__.split("\n\n", 1)[0],
        epilog="Each fixture line: {\"text\": ..., \"phi\": [[kind, exact substring], ...]}.")
    parser.add_argument("fixture", nargs="?", type=Path, default=ROOT / "tests" / "assets" / "phi_fixture.jsonl",
                        help="annotated JSONL (default: tests/assets/phi_fixture.jsonl)")
    path = parser.parse_args(argv[1:]).fixture
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines(): JSON strings may hold U+2028
    except OSError as e:
        print(f"phi_recall.py: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError as e:
            print(f"phi_recall.py: {path} line {n}: not JSON ({e.msg})", file=sys.stderr)
            return 2
        if row is not None and not _well_formed(row):
            print(f"phi_recall.py: {path} line {n}: needs text (a string) and phi (a list of [kind, substring])",
                  file=sys.stderr)
            return 2
        if row is not None:
            rows.append(row)
    total, found, replaced, correct, clean, no_phi = evaluate(rows)
    print(f"{path} ({len(rows)} lines)")
    print(f"{'kind':<9}{'annot':>7}{'found':>7}{'recall':>8}{'replaced':>10}{'precision':>11}")
    for kind in sorted(set(total) | set(replaced)):
        recall = f"{found[kind] / total[kind]:.3f}" if total[kind] else "-"
        prec = f"{correct[kind] / replaced[kind]:.3f}" if replaced[kind] else "-"
        print(f"{kind:<9}{total[kind]:>7}{found[kind]:>7}{recall:>8}{replaced[kind]:>10}{prec:>11}")
    n_tot, n_rep = sum(total.values()), sum(replaced.values())
    recall = f"{sum(found.values()) / n_tot:.3f}" if n_tot else "-"
    prec = f"{sum(correct.values()) / n_rep:.3f}" if n_rep else "-"
    print(f"{'ALL':<9}{n_tot:>7}{sum(found.values()):>7}{recall:>8}{n_rep:>10}{prec:>11}")
    if no_phi:
        print(f"no-PHI lines unchanged: {clean}/{no_phi} ({clean / no_phi:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
