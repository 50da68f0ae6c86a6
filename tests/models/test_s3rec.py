"""S3-Rec pre-training: the four objectives on real batches, learning, attributes, devices."""

import numpy as np
import pytest
import torch

from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.s3rec import S3RecConfig, S3RecPretrainer, attribute_matrix
from clue_pipeline.tasks.pretraining import PretrainJob, S3RecSettings, build_pretraining, run_job
from clue_pipeline.training.loop import TrainConfig

NUM_ITEMS = 20
UR = NUM_ITEMS + 2


def tokens() -> torch.Tensor:
    rows = [[0, 0, 1, 2, 3, 4, UR], [5, 6, 7, 8, 9, 10, UR], [0, 0, 0, 0, 11, 12, UR]]
    return torch.tensor(rows)


def attributes() -> torch.Tensor:
    pairs = torch.tensor([[t, t % 3] for t in range(1, NUM_ITEMS + 1)] + [[4, 3]])
    return attribute_matrix(pairs, NUM_ITEMS + 3, 4)


def model(num_attributes: int = 4) -> S3RecPretrainer:
    torch.manual_seed(0)
    encoder = build_encoder(
        EncoderConfig(num_items=NUM_ITEMS, max_len=6, hidden=16, heads=2, causal=False)
    )
    table = attributes() if num_attributes else torch.zeros((NUM_ITEMS + 3, 0), dtype=bool)
    return S3RecPretrainer(encoder, table, S3RecConfig())


def test_attribute_matrix_is_multi_hot_by_token():
    matrix = attributes()
    assert matrix.shape == (NUM_ITEMS + 3, 4)
    assert matrix[4].tolist() == [False, True, False, True] and not matrix[0].any()


@pytest.mark.parametrize("num_attributes", [4, 0])
def test_four_objectives_are_finite_and_weighted(num_attributes):
    m = model(num_attributes).train()
    total, parts = m(tokens(), torch.Generator().manual_seed(0))
    assert set(parts) == {"aap", "mip", "map", "sp"}
    assert all(torch.isfinite(v) for v in parts.values())
    weighted = 0.2 * parts["aap"] + parts["mip"] + parts["map"] + 0.5 * parts["sp"]
    torch.testing.assert_close(total.detach(), weighted)
    if num_attributes == 0:
        assert parts["aap"] == 0 and parts["map"] == 0  # MIP and SP only
    total.backward()
    assert m.encoder.item_embedding.weight.grad.abs().sum() > 0


def _steps(device: str) -> tuple[float, float]:
    m = model().to(device).train()
    optimizer = torch.optim.Adam(m.parameters(), lr=1e-2)
    batch = tokens().to(device)
    losses = []
    for step in range(40):
        generator = torch.Generator(device=device).manual_seed(step % 4)
        loss, _ = m(batch, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses[:4])), float(np.mean(losses[-4:]))


def test_a_few_steps_lower_the_loss_on_cpu():
    first, last = _steps("cpu")
    assert last < 0.8 * first


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_few_steps_lower_the_loss_on_cuda():
    first, last = _steps("cuda")
    assert last < 0.8 * first


def test_job_pretrains_bidirectionally_and_exports_the_causal_encoder():
    config = EncoderConfig(num_items=NUM_ITEMS, max_len=6, hidden=16, heads=2)
    pairs = np.array([[t, t % 3] for t in range(1, NUM_ITEMS + 1)])
    job = PretrainJob(
        method="s3rec",
        tokens=tokens().numpy(),
        encoder=config,
        train=TrainConfig(epochs=2, batch_size=2, progress=False, device="cpu"),
        settings=S3RecSettings(attribute_pairs=pairs, num_attributes=3),
    )
    assert build_pretraining(job).model.encoder.config.causal is False
    checkpoint, result = run_job(job)
    assert checkpoint["config"]["causal"] is True
    assert len(result.history) == 2 and {"aap", "sp"} <= set(result.history[0])
