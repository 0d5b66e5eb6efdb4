"""Optional experiment trackers (`train.report_to`): TensorBoard and MLflow, when installed.

metrics.jsonl in the run folder stays the record medtune itself reads (`medtune runs`, plots); trackers
only mirror the same numbers for people who already watch runs in TensorBoard or MLflow. A tracker
that is asked for but not installed is an error before training, not a silent no-op.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from medtune.errors import MedtuneError

MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


class Trackers:
    def __init__(self, names: list[str], run_dir: Path, params: dict[str, Any]) -> None:
        for name in names:
            if name not in MODULES:
                raise MedtuneError(f"train.report_to: unknown tracker {name!r} (known: {', '.join(MODULES)})")
            if importlib.util.find_spec(MODULES[name]) is None:
                raise MedtuneError(f"train.report_to: {name} is not installed (pip install {name})")
        self._tb = self._mlflow = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if "mlflow" in names:
            import mlflow

            mlflow.start_run(run_name=run_dir.name)
            mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
            self._mlflow = mlflow

    def log(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        values = {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
        if self._mlflow is not None:
            self._mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._mlflow is not None:
            self._mlflow.end_run()
