"""Sources -> cleaned, de-duplicated, mixed, leakage-free train/val/test split with a manifest.

Built on HF `datasets`: rows stream from each source into an Arrow table on disk (memory-mapped), the
cleaning map runs in `num_proc` worker processes, and only small per-row keys are held in memory for
de-duplication and splitting, so a million-row source never has to fit in RAM.

The split is decided by a seeded hash of the normalised question, so one question (and every copy of
it) lands in exactly one split. The safety-policy filter (medtune.data.policy_filter) drops answers that
give personal doses or prescriptions and hedges (or drops) answers that diagnose the asker; the built-in
set is exempt by construction (it is written to the policy). The manifest records counts per source,
rejects by reason with FILE:LINE (never their text), policy rewrites, input hashes and licenses. Every
file is written under a temporary name and renamed, so an interrupted prepare leaves nothing half-written.

Run as: medtune prepare --data NAME_OR_FILE [--data ...] --output DIR
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets

from medtune import __version__, atomic
from medtune.config import DataConfig
from medtune.data import catalog, formats, policy_filter, sources
from medtune.data.clean import assistant_text, clean_conversation, first_user, question_key
from medtune.data.dedup import minhash_batch, near_duplicates
from medtune.errors import MedtuneError

log = logging.getLogger("medtune.prepare")
SPLITS = ("train", "val", "test")
MAX_LISTED_REJECTS = 2000  # the manifest lists this many rejects by location; counts are always complete
MAX_PRINTED_REJECTS = 10
READ_FACTOR = 4  # with max_rows, read at most this many times max_rows good rows from a source
MIN_QUESTIONS_FOR_HELD_OUT = 10  # from this many distinct questions on, test and val (fraction > 0) get rows

FEATURES = datasets.Features({
    "source": datasets.Value("string"),
    "where": datasets.Value("string"),
    "id": datasets.Value("string"),
    "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
    "reject": datasets.Value("string"),
    "min_answer_chars": datasets.Value("int32"),
    "policy_filter": datasets.Value("bool"),
})
POLICY_PREFIX = "policy:"  # reject reasons of the safety-policy filter: "policy:personal_dosing", ...


@dataclass
class SourcePlan:
    """One `--data` entry resolved: where its rows come from and how to read them."""

    name: str
    weight: float
    locations: list[str]
    format: str
    columns: dict[str, str] = field(default_factory=dict)
    license: str = "unknown (check the source's terms)"
    citation: str = ""
    min_answer_chars: int = 20
    max_good_rows: int | None = None
    policy_filter: bool = True


def _looks_like_hub_id(target: str) -> bool:
    """OWNER/NAME and nothing that reads as a local path: no leading / . ~, one slash, no file suffix
    (`my.cvs`), and no existing local folder named OWNER."""
    if not re.fullmatch(r"[A-Za-z0-9][\w-]*/[\w.-]+", target) or target.endswith(sources.FILE_SUFFIXES):
        return False
    owner, name = target.split("/")
    return not Path(owner).is_dir() and not re.search(r"\.[A-Za-z]{2,7}$", name)


def resolve_source(spec: str, cfg: DataConfig) -> SourcePlan:
    """'medquad', 'file.jsonl', 'medquad:0.5' -> a SourcePlan with a detected or catalog format."""
    target, weight = catalog.parse_source(spec)
    path = Path(target)
    entry = None
    if path.exists():
        entry = catalog.entry_for_path(path)
        locations = [str(path)]
        name = path.stem if entry is None else entry.name
    elif target in catalog.CATALOG:
        entry = catalog.lookup(target)
        local = catalog.local_paths(entry)
        if local:
            locations = [str(p) for p in local]
        elif entry.hub_id:
            locations = [entry.hub_id]
        else:
            raise MedtuneError(
                f"dataset '{target}' has no hub copy and none of {list(entry.local_files)} was found in "
                f"{', '.join(map(str, catalog.data_dirs()))}; set MEDTUNE_DATA_DIR or pass the file path")
        name = entry.name
    elif _looks_like_hub_id(target):
        locations, name = [target], target.replace("/", "__")
    elif "/" in target or "\\" in target or path.suffix:
        raise MedtuneError(f"--data {spec}: file not found ({path.resolve()} does not exist)")
    else:
        raise MedtuneError(f"--data {spec}: no such file, and not a dataset name ({', '.join(catalog.CATALOG)})")
    max_good = cfg.max_rows * READ_FACTOR if cfg.max_rows else None
    plan = SourcePlan(name=name, weight=weight, locations=locations, format="",
                      min_answer_chars=cfg.min_answer_chars, max_good_rows=max_good,
                      policy_filter=cfg.policy_filter and not catalog.is_builtin(entry))
    if entry is not None:
        plan.format, plan.license, plan.citation = entry.format, entry.license, entry.citation
        if locations[0] == entry.hub_id:
            plan.columns = dict(entry.columns)  # local copies are normalised to the schema names
        if entry.min_answer_chars is not None:
            plan.min_answer_chars = entry.min_answer_chars
    if not plan.format or entry is None:
        plan.format = _detect(plan, entry)
    return plan


def _detect(plan: SourcePlan, entry: catalog.DatasetEntry | None) -> str:
    """Look at the first readable row's fields; an unknown shape is an error listing expected fields."""
    loc = plan.locations[0]
    split = entry.split if entry else "train"
    errors = []
    for where, row, error in sources.iter_rows(loc, split=split, subset=entry.subset if entry else None):
        if row is None:
            errors.append(f"{where}: {error}")
            if len(errors) >= 1000:
                break
            continue
        fmt = formats.detect_format(set(row))
        if fmt is None:
            raise MedtuneError(f"{where}: cannot tell the format from fields {sorted(row)}; expected one of: "
                               f"{formats.expected_fields_text()}")
        return fmt
    shown = "; ".join(errors[:3]) or "no rows"
    raise MedtuneError(f"{loc}: no readable rows ({shown})")


def _generate(plans: list[SourcePlan]):  # noqa: ANN202 (a generator for datasets.from_generator)
    for plan in plans:
        converter = formats.FORMATS[plan.format]
        good = 0
        for loc in plan.locations:
            for where, row, error in sources.iter_rows(loc):
                rid, conv, reject = "", [], error or ""
                if row is not None:
                    rid = str(row.get("id", "") or "")
                    try:
                        conv = converter(row, plan.columns)
                    except formats.RowError as e:
                        reject = str(e)
                if not reject:
                    good += 1
                yield {"source": plan.name, "where": where, "id": rid, "messages": conv, "reject": reject,
                       "min_answer_chars": plan.min_answer_chars, "policy_filter": plan.policy_filter}
                if plan.max_good_rows and good >= plan.max_good_rows:
                    break


def _clean_batch(batch: dict[str, list], *, phi_scrub: bool, max_answer_chars: int, dedup: bool) -> dict:
    out: dict[str, list] = {"messages": [], "reject": [], "qkey": [], "ckey": [], "phi": [], "sig": [], "policy": []}
    texts = []
    for conv, reject, min_chars, policy_on in zip(batch["messages"], batch["reject"], batch["min_answer_chars"],
                                                  batch["policy_filter"]):
        phi: dict[str, int] = {}
        policy = ""
        if not reject:
            conv, phi, reject = clean_conversation(conv, phi_scrub=phi_scrub, min_answer_chars=min_chars,
                                                   max_answer_chars=max_answer_chars)
        if not reject and policy_on:
            checked, reason = policy_filter.apply(conv)
            if checked is None:
                reject = POLICY_PREFIX + str(reason)
            elif reason:
                conv, policy = checked, "rewritten"
        q, a = first_user(conv), assistant_text(conv)
        out["messages"].append(conv)
        out["reject"].append(reject)
        out["policy"].append(policy)
        out["qkey"].append(question_key(q) if not reject else "")
        out["ckey"].append(question_key(q + "\n" + a) if not reject else "")
        out["phi"].append(json.dumps(phi) if phi else "")
        texts.append(q + "\n" + a if dedup and not reject else "")
    sigs = minhash_batch([t for t in texts if t]) if any(texts) else []
    it = iter(sigs)
    out["sig"] = [next(it) if t else [] for t in texts]
    return out


def _unit(seed: int, key: str) -> float:
    """A seeded, uniform number in [0, 1) for a key: the same key always gets the same number."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _file_sha256(path: str) -> str:
    p = Path(path)
    if not p.exists():
        return "hub"
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare(specs: list[str], out_dir: str | Path, cfg: DataConfig, seed: int, *,
            hold_out_test: bool = True) -> dict[str, Any]:
    """Prepare `specs` into out_dir/{train,val,test}.jsonl + manifest.json; returns the manifest."""
    started = time.time()
    out = Path(out_dir)
    plans = [resolve_source(s, cfg) for s in specs]
    test_fraction = cfg.test_fraction if hold_out_test else 0.0
    cache = Path(tempfile.mkdtemp(prefix="medtune-prepare-"))
    try:
        ds = datasets.Dataset.from_generator(_generate, gen_kwargs={"plans": plans}, features=FEATURES,
                                             cache_dir=str(cache))
        ds = ds.map(_clean_batch, batched=True, batch_size=256, num_proc=cfg.num_proc if len(ds) > 2000 else None,
                    fn_kwargs={"phi_scrub": cfg.phi_scrub, "max_answer_chars": cfg.max_answer_chars,
                               "dedup": cfg.dedup}, desc="cleaning")
        rejects, kept = _select(ds, plans, cfg, seed)
        split_of = _assign_splits(ds, kept, cfg.val_fraction, test_fraction, seed)
        indices = _mix(split_of, ds, plans, seed)
        out.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            _write_jsonl(ds, indices[split], out / f"{split}.jsonl")
        manifest = _manifest(ds, plans, rejects, indices, cfg, seed, val_fraction=cfg.val_fraction,
                             test_fraction=test_fraction, seconds=time.time() - started)
        manifest["notes"] = split_notes(manifest["counts"], len(kept), cfg.test_fraction, hold_out_test, out)
        for note in manifest["notes"]:
            print(f"note: {note}", file=sys.stderr)
        atomic.write_json(out / "manifest.json", manifest, indent=2, ensure_ascii=False)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return manifest


def split_notes(counts: dict[str, int], usable: int, test_fraction: float, hold_out_test: bool,
                out: Path) -> list[str]:
    """Why a split is empty, in words a user can act on (printed by prepare, kept in the manifest)."""
    if counts["test"] or not usable:
        return []
    if not hold_out_test:
        held = f"only val ({counts['val']} rows in {out / 'val.jsonl'})" if counts["val"] else "no rows"
        return [f"no test split: `medtune train` holds out {held}; `medtune prepare` and `medtune run` also hold "
                "out a test split"]
    if test_fraction <= 0:
        return ["no test split: data.test_fraction is 0"]
    return [f"the test split is empty: {usable} usable rows, and a test split is kept from "
            f"{MIN_QUESTIONS_FOR_HELD_OUT} distinct questions on; add rows, or score "
            f"{out / 'val.jsonl'} or a file of your own with `medtune eval`"]


def _select(ds: datasets.Dataset, plans: list[SourcePlan], cfg: DataConfig,
            seed: int) -> tuple[list[tuple[int, str]], list[int]]:
    """Drop rejects and duplicates (first occurrence wins) and cap rows per source; print parse errors."""
    rejects: list[tuple[int, str]] = []
    candidates: list[int] = []
    sigs: list[list[int]] = []
    seen: dict[str, int] = {}
    cols = ds.select_columns(["reject", "ckey", "sig", "where"])
    for start in range(0, len(ds), 4096):
        chunk = cols[start: start + 4096]
        for j, (reject, ckey, sig) in enumerate(zip(chunk["reject"], chunk["ckey"], chunk["sig"])):
            i = start + j
            if reject:
                rejects.append((i, reject))
            elif cfg.dedup and ckey in seen:
                rejects.append((i, f"exact duplicate of {ds[seen[ckey]]['where']}"))
            else:
                seen.setdefault(ckey, i)
                candidates.append(i)
                sigs.append(sig)
    kept = candidates
    if cfg.dedup and candidates:
        kept = []
        for i, dup in zip(candidates, near_duplicates(sigs, cfg.near_dup_threshold)):
            if dup < 0:
                kept.append(i)
            else:
                rejects.append((i, "near-duplicate"))
    if cfg.max_rows:
        sources_col = ds.select_columns(["source", "where"])
        by_source: dict[str, list[int]] = defaultdict(list)
        for i in kept:
            by_source[sources_col[i]["source"]].append(i)
        kept = []
        for rows in by_source.values():
            rows.sort(key=lambda i: _unit(seed, sources_col[i]["where"]))
            kept.extend(rows[: cfg.max_rows])
        kept.sort()
    _print_rejects(ds, rejects)
    return sorted(rejects), kept


def _print_rejects(ds: datasets.Dataset, rejects: list[tuple[int, str]]) -> None:
    """Rows the user must fix (unreadable or missing fields) are named on stderr, FILE:LINE first."""
    broken = [(i, r) for i, r in rejects if not r.startswith(("exact duplicate", "near-duplicate", "answer ",
                                                                  "question too short", POLICY_PREFIX))]
    for i, reason in broken[:MAX_PRINTED_REJECTS]:
        print(f"skipped {ds[i]['where']}: {reason}", file=sys.stderr)
    if len(broken) > MAX_PRINTED_REJECTS:
        print(f"… and {len(broken) - MAX_PRINTED_REJECTS} more unreadable rows (see manifest.json)", file=sys.stderr)


def held_out_minimum(n_questions: int) -> int:
    """Questions a test or val split with a fraction > 0 gets at least. The seeded hash alone leaves a
    30-question file without a test question about one time in 25 (0.9**30)."""
    return 0 if n_questions < MIN_QUESTIONS_FOR_HELD_OUT else 1 if n_questions < 20 else 2


def _assign_splits(ds: datasets.Dataset, kept: list[int], val: float, test: float, seed: int) -> dict[int, str]:
    """A seeded hash of the question picks its split (every copy of a question in the same one); a small
    input's test or val split that the hash left short gets the training questions of lowest hash."""
    qkeys = ds.select_columns(["qkey"])
    split_of = {}
    for i in kept:
        u = _unit(seed, qkeys[i]["qkey"])
        split_of[i] = "test" if u < test else "val" if u < test + val else "train"
    counts = Counter(split_of.values())
    if not any(f > 0 and counts[s] < 2 for s, f in (("test", test), ("val", val))):
        return split_of  # the usual case: no second pass over the keys
    key_of = {i: qkeys[i]["qkey"] for i in kept}
    band = {key_of[i]: s for i, s in split_of.items()}
    want = held_out_minimum(len(band))
    for split, fraction in (("test", test), ("val", val)):
        short = want - sum(1 for s in band.values() if s == split) if fraction > 0 else 0
        for _, key in sorted((_unit(seed, k), k) for k, s in band.items() if s == "train")[:max(short, 0)]:
            band[key] = split
    return {i: band[key_of[i]] for i in kept}


def _mix(split_of: dict[int, str], ds: datasets.Dataset, plans: list[SourcePlan], seed: int) -> dict[str, list[int]]:
    """Weighted mixing of the train split (w<1 subsamples, w>1 repeats); val/test keep every row once."""
    indices: dict[str, list[int]] = {s: [] for s in SPLITS}
    weight = {p.name: p.weight for p in plans}
    src = ds.select_columns(["source"])
    train_by_source: dict[str, list[int]] = defaultdict(list)
    for i, split in split_of.items():
        if split == "train":
            train_by_source[src[i]["source"]].append(i)
        else:
            indices[split].append(i)
    rng = random.Random(seed)
    for name, rows in train_by_source.items():
        w = weight.get(name, 1.0)
        n = int(w * len(rows)) + (rng.random() < (w * len(rows)) % 1)
        picked = [rows[k % len(rows)] for k in range(n)] if w >= 1 else rng.sample(rows, n)
        indices["train"].extend(picked)
    rng.shuffle(indices["train"])
    for s in ("val", "test"):
        indices[s].sort()
    return indices


def _write_jsonl(ds: datasets.Dataset, rows: list[int], path: Path) -> None:
    with atomic.replacing(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for i in rows:
            r = ds[i]
            f.write(json.dumps({"id": r["id"] or r["where"], "source": r["source"], "where": r["where"],
                                "messages": r["messages"]}, ensure_ascii=False) + "\n")


def _manifest(ds: datasets.Dataset, plans: list[SourcePlan], rejects: list[tuple[int, str]],
              indices: dict[str, list[int]], cfg: DataConfig, seed: int, *, val_fraction: float,
              test_fraction: float, seconds: float) -> dict[str, Any]:
    meta = ds.select_columns(["source", "where", "phi", "policy"])
    read = Counter(meta["source"])
    by_reason: dict[str, Counter] = defaultdict(Counter)
    listed = []
    for i, reason in rejects:
        row = meta[i]
        key = "near-duplicate" if reason.startswith("near-dup") else (
            "exact duplicate" if reason.startswith("exact duplicate") else reason.split(" (")[0])
        by_reason[row["source"]][key] += 1
        if len(listed) < MAX_LISTED_REJECTS:
            listed.append({"where": row["where"], "source": row["source"], "reason": reason})
    phi: dict[str, Counter] = defaultdict(Counter)
    for s, p in zip(meta["source"], meta["phi"]):
        if p:
            phi[s].update(json.loads(p))
    rewrites = Counter(s for s, p in zip(meta["source"], meta["policy"]) if p == "rewritten")
    policy_dropped = Counter(reason.removeprefix(POLICY_PREFIX) for _, reason in rejects
                             if reason.startswith(POLICY_PREFIX))
    per_split = {s: Counter(meta.select(indices[s])["source"]) if indices[s] else Counter() for s in SPLITS}
    return {
        "medtune_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "counts": {s: len(indices[s]) for s in SPLITS},
        "seconds": round(seconds, 1),
        "settings": {k: v for k, v in asdict(cfg).items() if k not in ("sources", "system_prompt")},
        "sources": [{
            "name": p.name, "weight": p.weight, "format": p.format, "license": p.license, "citation": p.citation,
            "inputs": [{"location": loc, "sha256": _file_sha256(loc)} for loc in p.locations],
            "rows_read": read.get(p.name, 0),
            "rejects": dict(by_reason.get(p.name, {})),
            "phi_replaced": dict(phi.get(p.name, {})),
            "policy_rewrites": rewrites.get(p.name, 0),
            "splits": {s: per_split[s].get(p.name, 0) for s in SPLITS},
        } for p in plans],
        "rejects": listed,
        "rejects_total": len(rejects),
        "stopped_early": [meta[i]["where"] for i, reason in rejects if reason.endswith(sources.TORN)],
        "policy_filter": {"dropped": dict(policy_dropped), "rewritten": sum(rewrites.values())},
    }


def load_split(folder: str | Path, split: str) -> list[dict[str, Any]]:
    """Rows of a prepared split (small: used for training and evaluation)."""
    path = Path(folder) / f"{split}.jsonl"
    if not path.exists():
        raise MedtuneError(f"{path} not found: run `medtune prepare` first")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
