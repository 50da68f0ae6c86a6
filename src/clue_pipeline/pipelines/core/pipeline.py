"""`core`: the chain a large corpus can afford, as one pipeline.

CLUE pre-trained on the next-item corpus; CLUE and CLUE-Zero fine-tuned for next items and
tested; every user embedded and indexed. No rival pre-training, no profiling or cold-start
models (their tables are still built, cheaply). `kedro run --env scale --pipelines core` runs
it on 160,000 users (benchmarks/results/scale_chain.md).
"""

from importlib import import_module

from kedro.pipeline import Pipeline

from clue_pipeline.pipeline_registry import PHASES, in_phase

# stage -> the arguments that narrow its create_pipeline
CORE_SCOPE = {
    "pretrain": {"corpora": ("next_item",), "methods": ("clue",)},
    "finetune": {"tasks": ("next_item",), "methods": ("clue", "clue_zero")},
    "evaluate": {
        "tasks": ("next_item",),
        "methods": ("clue", "clue_zero"),
        "corpora": ("next_item",),
        "pretrain_methods": ("clue",),
    },
    "embed": {"encoders": ("next_item__clue_encoder",)},
}


def create_pipeline(**kwargs) -> Pipeline:
    """The stages of the chain, each narrowed to `CORE_SCOPE`."""
    stages = [stage for stages in PHASES.values() for stage in stages]
    return sum(
        (
            in_phase(
                stage,
                import_module(f"clue_pipeline.pipelines.{stage}").create_pipeline(
                    **CORE_SCOPE.get(stage, {})
                ),
            )
            for stage in stages
        ),
        Pipeline([]),
    )
