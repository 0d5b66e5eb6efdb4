"""The data verbs: `medtune prepare` (clean, scrub PHI, de-duplicate, mix and split rows into a folder, and
say what was rejected and why) and `medtune datasets` (the catalog names that --data accepts, and where each is).
"""

from __future__ import annotations

import argparse

from medtune.cli_config import load_args_config
from medtune.data.catalog import CATALOG, local_paths
from medtune.errors import MedtuneError


def cmd_prepare(args: argparse.Namespace) -> None:
    from medtune.data.prepare import prepare

    cfg = load_args_config(args)
    out = cfg.output or "data/prepared"
    manifest = prepare(cfg.data.sources, out, cfg.data, cfg.seed)
    c = manifest["counts"]
    print(f"prepared {c['train']} train / {c['val']} val / {c['test']} test rows in {manifest['seconds']} s")
    for s in manifest["sources"]:
        rejects = ", ".join(f"{k}: {v}" for k, v in s["rejects"].items()) or "none"
        print(f"  {s['name']:<28} read {s['rows_read']:>7}  kept {sum(s['splits'].values()):>7}  rejects: {rejects}")
    print(f"wrote {out}/train.jsonl, val.jsonl, test.jsonl and manifest.json")
    if sum(c.values()) == 0:
        raise MedtuneError("no usable rows: every row was rejected (see the messages above and manifest.json)")
    if manifest.get("stopped_early"):  # a torn file: the rows before the break are prepared, the rest is missing
        raise MedtuneError(f"{manifest['stopped_early'][0]}: the file breaks off here and the rest of it was not "
                           "read; the rows before the break were prepared. Fix or re-download the file and run "
                           "prepare again")


def cmd_datasets(args: argparse.Namespace) -> None:
    for e in CATALOG.values():
        where = "local" if local_paths(e) else (e.hub_id or "local file needed")
        print(f"{e.name:<28} {e.format:<7} {where:<45} {e.license}")
        if args.verbose:
            print(f"{'':<28} {e.description}; {e.citation}")
