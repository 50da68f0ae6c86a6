"""The report's objectives section: read from stored results, verdicts matched to objectives."""

from __future__ import annotations

import json

from clue_pipeline.experiments import objectives_section


def _objective_row(cell: str, rank: float, probe: float, curve: list[float]) -> dict:
    return {
        "cell": cell,
        "change": f"{cell} change",
        "health": {"effective_rank": rank, "top2_share": 0.5, "uniformity": -1.0},
        "probe": {"test_ndcg@10": probe, "test_hr@10": 2 * probe},
        "rank_curve": curve,
    }


def _write(path, payload):
    path.write_text(json.dumps(payload))


def test_section_tables_health_probe_and_the_matching_objectives_transfer(tmp_path):
    results, figures = tmp_path / "results", tmp_path / "figures"
    results.mkdir()
    figures.mkdir()
    rows = [
        _objective_row("zero", 44.7, 0.0073, []),
        _objective_row("simsiam", 1.0, 0.0054, [30.0, 2.0, 1.0]),
        _objective_row("simsiam_joint", 9.5, 0.0110, [30.0, 8.0, 9.5]),
        _objective_row("simsiam_next", 21.0, 0.0148, [30.0, 20.0, 21.0]),
    ]
    _write(
        results / "objectives_beauty.json",
        {"dataset": "beauty", "epochs": 20, "users": 100, "results": rows},
    )
    comparison = {"dataset": "beauty", "task": "next_item", "against": "clue_zero"}
    _write(
        results / "transfer.json",  # the default objective's study
        {
            "comparisons": [
                {
                    **comparison,
                    "users": 0.1,
                    "metric": "ndcg@10",
                    "diff": 0.0182,
                    "p": 0.001,
                    "verdict": "better",
                }
            ]
        },
    )
    _write(
        results / "transfer_simsiam.json",
        {
            "comparisons": [
                {
                    **comparison,
                    "users": 0.1,
                    "metric": "ndcg@10",
                    "diff": -0.0004,
                    "p": 0.64,
                    "verdict": "level",
                },
                {
                    **comparison,
                    "users": 0.1,
                    "metric": "recall@10",
                    "diff": 0.1,
                    "p": 0.01,
                    "verdict": "better",
                },
                {
                    **comparison,
                    "users": 0.1,
                    "metric": "mrr@10",
                    "diff": 0.001,
                    "p": 0.5,
                    "verdict": "level",
                },
            ]
        },
    )
    _write(
        results / "transfer_joint.json",
        {
            "comparisons": [
                {
                    **comparison,
                    "users": 0.1,
                    "metric": "ndcg@10",
                    "diff": 0.0021,
                    "p": 0.03,
                    "verdict": "better",
                },
            ]
        },
    )
    _write(
        results / "transfer_epochs200.json",  # a fine-tuning setting, not an objective
        {
            "comparisons": [
                {
                    **comparison,
                    "users": 1.0,
                    "metric": "ndcg@10",
                    "diff": 0.0025,
                    "p": 0.04,
                    "verdict": "better",
                },
            ]
        },
    )
    text = objectives_section.section(results, figures)
    lines = {
        line.split(" | ")[0].strip("| "): line
        for line in text.splitlines()
        if " change | " in line  # the objectives table's rows
    }
    # each objective gets the verdicts of the transfer run that pre-trained with it: the
    # task's headline metric, and another metric only where it is not level
    assert "10% ndcg@10: -0.0004 (p 0.640, level)" in lines["simsiam"]
    assert "10% recall@10: +0.1000 (p 0.010, better)" in lines["simsiam"]
    assert "mrr@10" not in lines["simsiam"]
    assert "10% ndcg@10: +0.0021 (p 0.030, better)" in lines["simsiam_joint"]
    assert "10% ndcg@10: +0.0182 (p 0.001, better)" in lines["simsiam_next"]
    assert "+0.0182" not in lines["simsiam"]
    assert "+0.0025" not in lines["simsiam_next"]  # a fine-tuning variant keeps out of it
    assert "| simsiam_next, fine-tuned up to 200 epochs | beauty | next_item | 100% |" in text
    assert lines["zero"].endswith("| not run |")
    assert "| 44.7 |" in lines["zero"] and "| 0.0110 | 0.0220 |" in lines["simsiam_joint"]
    assert "| simsiam_joint | beauty | next_item | 10% | ndcg@10 | clue_zero |" in text
    assert (figures / objectives_section.RANK_FIGURE).stat().st_size > 0


def test_section_is_empty_without_objectives_results(tmp_path):
    assert objectives_section.section(tmp_path, tmp_path) == ""


def _comparison(task: str, users: float, metric: str, diff: float, p: float, verdict: str):
    dataset = "beauty" if task == "next_item" else "ml-1m"
    return {
        "dataset": dataset,
        "task": task,
        "users": users,
        "metric": metric,
        "against": "clue_zero",
        "diff": diff,
        "p": p,
        "verdict": verdict,
    }


def test_targets_table_marks_each_target_and_lists_every_objective_that_tried_it():
    objectives = {
        "beauty": {
            "results": [
                _objective_row("mip", 10.6, 0.0124, []),
                _objective_row("simsiam", 1.0, 0.0054, []),
                _objective_row("simsiam_next", 21.0, 0.0148, []),
            ]
        },
        "ml-1m": {"results": [_objective_row("simsiam_next", 19.5, 0.03, [])]},
    }
    transfers = {
        "transfer": {
            "comparisons": [
                _comparison("next_item", 0.1, "ndcg@10", 0.018, 0.001, "better"),
                _comparison("next_item", 1.0, "ndcg@10", 0.002, 0.054, "level"),
                _comparison("profiling", 0.1, "occupation/accuracy", 0.013, 0.003, "better"),
                _comparison("profiling", 0.05, "gender/accuracy", -0.01, 0.02, "worse"),
            ]
        },
        "transfer_simsiam": {
            "comparisons": [_comparison("next_item", 1.0, "ndcg@10", 0.0019, 0.047, "better")]
        },
        "transfer_epochs200": {
            "comparisons": [_comparison("next_item", 1.0, "ndcg@10", 0.0025, 0.04, "better")]
        },
    }
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in objectives_section.targets_table(objectives, transfers)[2:]
    }
    assert rows["effective rank >= 20 of 64, beauty"].endswith(
        "| 21.0 | met | simsiam_next 21.0, mip 10.6, simsiam 1.0 |"
    )
    assert "| 19.5 | **missed** |" in rows["effective rank >= 20 of 64, ml-1m"]
    probe = rows["frozen probe beats masked items' (beauty next-item HR@10, one seed)"]
    assert "| 0.0296 against 0.0248 | met |" in probe
    hundred = rows["fine-tuned beats CLUE-Zero, beauty next_item ndcg@10, 100% of the users"]
    assert "| +0.0020, p 0.054, level | **missed** |" in hundred
    assert "simsiam +0.0019 (p 0.047, better)" in hundred  # what else tried it
    # a fine-tuning setting that tried it is listed, but does not stand for the default
    assert "simsiam_next, fine-tuned up to 200 epochs +0.0025 (p 0.040, better)" in hundred
    ten = rows["fine-tuned beats CLUE-Zero, beauty next_item ndcg@10, 10% of the users"]
    assert "| met | simsiam_next +0.0180 (p 0.001, better) |" in ten
    user = next(
        line for key, line in rows.items() if key.startswith("fine-tuned beats CLUE-Zero on")
    )
    assert "ml-1m occupation/accuracy at 10%: +0.0130 (p 0.003, better) | met |" in user
    assert "simsiam_next 1 better, 1 worse of 2" in user


def test_targets_table_says_not_measured_without_results():
    rows = objectives_section.targets_table({}, {})[2:]
    assert len(rows) == 6
    assert all("| not measured |" in row for row in rows)


def test_a_target_is_met_only_after_holms_correction():
    from clue_pipeline.experiments.objectives_section import _p, _verdict

    corrected = {"diff": 0.024, "p": 0.002, "p_holm": 0.102, "verdict": "better"}
    corrected["verdict_holm"] = "not shown"
    assert _verdict(corrected) == "not shown"
    assert _p(corrected) == "p 0.002, p_holm 0.102, not shown"
