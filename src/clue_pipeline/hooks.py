"""Kedro hooks of the project."""

import logging
import os

import torch
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class ThreadBudgetHook:
    """Sizes torch's intra-op thread pool to the cores this process may use.

    ``CLUE_NUM_THREADS`` overrides; otherwise the CPU affinity mask decides, so a shared
    2-core machine is not oversubscribed by torch's default of one thread per visible core.
    """

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        threads = int(os.environ.get("CLUE_NUM_THREADS", "0")) or len(os.sched_getaffinity(0))
        torch.set_num_threads(max(1, threads))
        logger.info("torch uses %d threads", torch.get_num_threads())
