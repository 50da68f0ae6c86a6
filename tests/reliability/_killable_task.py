"""The tiny SimSiam task of the training tests, telling the test each worker's pid and step.

Each rank writes ``<progress_dir>/rank<R>`` = "pid steps" after every step, so the test can
SIGKILL one worker of a running group at a known point.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from clue_pipeline.training import TrainingTask
from tests.training._resume_script import build_task as tiny_task


def build_task(progress_dir: str, step_delay_s: float = 0.0, **kwargs) -> TrainingTask:
    task = tiny_task(**kwargs)
    path = Path(progress_dir) / f"rank{os.environ.get('RANK', '0')}"
    path.parent.mkdir(parents=True, exist_ok=True)
    inner, steps = task.step_fn, {"n": 0}

    def step_fn(model, batch, generator):
        steps["n"] += 1
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()} {steps['n']}")
        os.replace(tmp, path)
        if step_delay_s:
            time.sleep(step_delay_s)
        return inner(model, batch, generator)

    task.step_fn = step_fn
    return task
