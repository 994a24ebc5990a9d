"""Tests of ``equidmri bench mnist``: loss and score on hand-made cases, one quick run."""

import numpy as np
import pytest
import torch
from bench_run import run_bench

from equidmri.bench.mnist import MODELS, class_weights, dice_ce_loss, dice_scores


def test_dice_scores_count_overlaps_per_digit_and_skip_absent_digits():
    labels = np.array([0, 1, 1, 2, 2, 2])
    prediction = np.array([1, 1, 0, 2, 2, 3])
    scores = dice_scores(prediction, labels)
    assert scores[0] == pytest.approx(2 * 1 / (2 + 2)) and scores[1] == pytest.approx(2 * 2 / (2 + 3))
    assert np.isnan(scores[2:]).all()


def test_class_weights_are_inverse_frequencies_summing_to_one():
    weights = class_weights(np.array([0, 0, 0, 1]))
    assert weights.sum().item() == pytest.approx(1.0) and weights[1] / weights[0] == pytest.approx(3.0)


def test_loss_is_small_for_confident_correct_logits_and_large_for_wrong_ones():
    labels = torch.randint(0, 10, (1, 3, 3, 2))
    good = torch.nn.functional.one_hot(labels, 10).permute(0, 4, 1, 2, 3).float() * 20
    weights = torch.full((10,), 0.1)
    assert dice_ce_loss(good, labels, weights) < 1e-3
    assert dice_ce_loss(-good, labels, weights) > 1.0


@pytest.mark.slow
def test_quick_run_trains_every_model_in_both_settings(tmp_path):
    result, markdown, _ = run_bench("mnist", ["--quick", "--threads", "2"], tmp_path)
    assert {(r["model"], r["setting"]) for r in result["summary"]} == {
        (m, s) for m in MODELS for s in ("train-without", "train-with")
    }
    for record in result["records"]:
        assert 0.0 <= record["dice_test_rotated"] <= 1.0 and len(record["loss_history"]) == 1
        assert np.isfinite(record["loss_history"][0])
    assert (tmp_path / "results" / "mnist.png").stat().st_size > 10_000
    assert "load_digits" in markdown and "Ranking, trained with rotations, tested with:" in markdown
