"""train.report_to: trackers are checked before training and mirror metrics.jsonl records."""

import importlib.util

import pytest

from medtune.errors import MedtuneError
from medtune.train.trackers import Trackers


def test_unknown_tracker_is_an_error(tmp_path):
    with pytest.raises(MedtuneError, match="unknown tracker 'wandb'"):
        Trackers(["wandb"], tmp_path, {})


def test_tensorboard_logs_or_says_how_to_install(tmp_path):
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(MedtuneError, match="pip install tensorboard"):
            Trackers(["tensorboard"], tmp_path, {})
        return
    t = Trackers(["tensorboard"], tmp_path, {"lr": 1e-4})
    t.log({"step": 1, "loss": 2.5, "lr": 1e-4, "note": "text is skipped"})
    t.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
