"""The fine-tuning curves figure reads every history shape a fine-tuning job writes."""

from __future__ import annotations

from clue_pipeline.pipelines.finetune.curves import history_frame, plot_finetuning_curves

TASKS = {"next_item": {"monitor": "ndcg@10"}, "profiling": {"monitor": "accuracy"}}


def test_a_profiling_history_is_the_mean_over_attributes_and_a_skipped_one_is_empty():
    per_attribute = {
        "gender": [{"epoch": 0, "accuracy": 0.6}, {"epoch": 1, "accuracy": 0.8}],
        "age": [{"epoch": 0, "accuracy": 0.2}, {"epoch": 1, "accuracy": 0.4}],
    }
    assert history_frame(per_attribute)["accuracy"].round(6).tolist() == [0.4, 0.6]
    assert history_frame({"skipped": "no user attributes"}).empty
    assert history_frame([{"epoch": 0, "loss": 1.0, "history_excluded": False}]).columns == ["loss"]


def test_one_row_per_task_a_line_per_trained_method():
    figure = plot_finetuning_curves(
        TASKS,
        next_item__clue=[{"epoch": 0, "loss": 2.0, "ndcg@10": 0.1}, {"epoch": 1, "loss": 1.5}],
        next_item__pop=[{"epoch": 0, "ndcg@10": 0.05}],  # no training: no loss line
        profiling__clue={"skipped": "no user attributes"},
    )
    (loss, metric), (profiling_loss, _) = [figure.axes[:2], figure.axes[2:]]
    assert [line.get_label() for line in loss.get_lines()] == ["clue"]
    assert [line.get_label() for line in metric.get_lines()] == ["clue", "pop"]
    assert metric.get_title() == "next_item: validation ndcg@10"
    assert not profiling_loss.get_lines()  # the task is drawn, saying it has no epoch
