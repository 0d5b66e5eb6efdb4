"""Experiment tracking: run folders are the record of every experiment; this package reads them back.

`runs` lists, tabulates and diffs run folders; `sweep` runs a grid of config overrides, one run folder per
combination. There is deliberately no database: the folders are the source of truth.
"""

from medtune.track.record import RunRecord
from medtune.track.runs import best_run, diff_runs, find_runs, format_diff, load_run, runs_table
from medtune.track.sweep import combinations, parse_grid, run_name, sweep

__all__ = ["RunRecord", "best_run", "combinations", "diff_runs", "find_runs", "format_diff", "load_run",
           "parse_grid", "run_name", "runs_table", "sweep"]
