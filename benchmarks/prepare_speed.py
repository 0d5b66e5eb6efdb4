"""How long `prepare` takes on every open-QA file in ../shared/data together (~28k rows), with
PHI scrubbing and exact + near-duplicate removal, next to the time it takes only to read and parse the
same files with the standard library (the floor any pipeline pays), as a ratio.

Run as: python benchmarks/prepare_speed.py [--data-dir ../shared/data] [--num-proc 2]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from medtune.config import DataConfig
from medtune.data.prepare import prepare

FILES = ["medquad.part1.jsonl", "medquad.part2.jsonl", "medalpaca_wikidoc_patient_info.jsonl",
         "chatdoctor_genmedgpt5k.jsonl", "mediqa2019_qa.jsonl"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--num-proc", type=int, default=2)
    args = ap.parse_args()
    paths = [Path(args.data_dir) / f for f in FILES]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"missing input files: {', '.join(missing)}")

    t0 = time.perf_counter()
    rows = sum(1 for p in paths for line in p.open(encoding="utf-8") if json.loads(line))
    parse_s = time.perf_counter() - t0

    cfg = DataConfig(num_proc=args.num_proc)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        m = prepare([str(p) for p in paths], out, cfg, seed=0)
        prep_s = time.perf_counter() - t0
    kept = sum(m["counts"].values())
    print(f"rows read {rows}, kept {kept} ({m['rejects_total']} rejected: duplicates, near-duplicates, lengths)")
    print(f"json parse only : {parse_s:6.1f} s")
    print(f"medtune prepare : {prep_s:6.1f} s  ({prep_s / parse_s:.1f}x the bare parse; target <= 60 s)")


if __name__ == "__main__":
    main()
