"""Fine-tuning heads: tied item scoring, supervised positions only, linear-probe freezing."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.heads import ClassifierModel, NextItemModel, balanced_class_weights

NUM_ITEMS = 25
MAX_LEN = 8


def encoder(kind: str = "transformer"):
    torch.manual_seed(0)
    config = EncoderConfig(
        num_items=NUM_ITEMS, kind=kind, max_len=MAX_LEN, hidden=16, heads=2, dropout=0.1
    )
    return build_encoder(config)


def next_item_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences [x1..xn, UR]; target at position t is x_{t+1} (0 at padding and at [UR])."""
    rows = [[3, 4, 5, 6, 7], [9, 1], [2, 8, 2, 8, 2, 8, 2, 25]]
    tokens = torch.zeros(len(rows), MAX_LEN + 1, dtype=torch.long)
    targets = torch.zeros_like(tokens)
    for r, items in enumerate(rows):  # fixture only
        tokens[r, MAX_LEN - len(items) + 1 : MAX_LEN] = torch.tensor(items[:-1])
        targets[r, MAX_LEN - len(items) + 1 : MAX_LEN] = torch.tensor(items[1:])
    tokens[:, -1] = NUM_ITEMS + 2
    return tokens, targets


def test_next_item_loss_is_cross_entropy_over_supervised_positions_with_tied_table():
    model = NextItemModel(encoder()).eval()
    tokens, targets = next_item_batch()
    states = model.encoder(tokens).states
    table = model.encoder.item_embedding.weight[1 : NUM_ITEMS + 1]
    keep = targets > 0
    expected = F.cross_entropy(states[keep] @ table.T, targets[keep] - 1)
    torch.testing.assert_close(model.loss(tokens, targets), expected)
    assert model.item_matrix().data_ptr() == table.data_ptr()  # tied, not a copy


def test_user_scores_cover_items_only_from_the_ur_state():
    model = NextItemModel(encoder()).eval()
    tokens, _ = next_item_batch()
    scores = model.user_scores(tokens)
    assert scores.shape == (3, NUM_ITEMS)
    user = model.user_vectors(tokens)
    torch.testing.assert_close(user, model.encoder(tokens).states[:, -1])
    torch.testing.assert_close(scores[:, 4], user @ model.encoder.item_embedding.weight[5])


@pytest.mark.parametrize("kind", ["transformer", "gru", "cnn", "caser"])
def test_next_item_training_learns_a_fixed_batch(kind):
    model = NextItemModel(encoder(kind))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens, targets = next_item_batch()
    first = model.loss(tokens, targets).item()
    for _ in range(30):
        loss = model.loss(tokens, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_mismatched_targets_shape_is_rejected():
    model = NextItemModel(encoder())
    tokens, targets = next_item_batch()
    with pytest.raises(ValueError, match="targets"):
        model.loss(tokens, targets[:, :-1])


def test_classifier_loss_and_logits():
    model = ClassifierModel(encoder(), num_classes=4).eval()
    tokens, _ = next_item_batch()
    labels = torch.tensor([0, 3, 1])
    logits = model.logits(tokens)
    assert logits.shape == (3, 4)
    torch.testing.assert_close(model.loss(tokens, labels), F.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="num_classes"):
        ClassifierModel(encoder(), num_classes=1)


def test_balanced_class_weights_make_each_present_class_weigh_alike():
    weight = balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    torch.testing.assert_close(weight, torch.tensor([4 / 6, 4 / 2, 0.0]))
    assert float(weight[0] * 3 + weight[1] * 1) == pytest.approx(4.0)  # the mean weight is 1
    with pytest.raises(ValueError, match="no training labels"):
        balanced_class_weights(np.array([], dtype=np.int64), 3)


def test_classifier_loss_weighs_classes_when_told():
    model = ClassifierModel(encoder(), num_classes=4).eval()
    tokens, _ = next_item_batch()
    labels = torch.tensor([0, 3, 1])
    weight = torch.tensor([1.0, 5.0, 1.0, 0.5])
    model.weigh_classes(weight)
    logits = model.logits(tokens)
    expected = F.cross_entropy(logits, labels, weight=weight)
    torch.testing.assert_close(model.loss(tokens, labels), expected)
    assert not torch.allclose(expected, F.cross_entropy(logits, labels))
    assert "class_weight" not in model.state_dict()
    model.weigh_classes(None)
    torch.testing.assert_close(model.loss(tokens, labels), F.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="class weights of shape"):
        model.weigh_classes(torch.ones(3))


def test_mean_items_readout_averages_the_item_states_whatever_the_padding():
    model = ClassifierModel(encoder(), num_classes=3, readout="mean_items").eval()
    tokens, _ = next_item_batch()
    states = model.encoder(tokens).states
    real = tokens[:, :-1] != 0
    expected = (states[:, :-1] * real[..., None]).sum(1) / real.sum(1, keepdim=True)
    torch.testing.assert_close(model.user_vectors(tokens), expected)
    assert not torch.allclose(expected, states[:, -1])  # not the [UR] state
    narrow = tokens[:, -6:]  # less left padding: the first two rows keep all their items
    torch.testing.assert_close(model.user_vectors(narrow)[:2], expected[:2])
    with pytest.raises(ValueError, match="readout"):
        ClassifierModel(encoder(), num_classes=3, readout="mean")


def test_ur_and_mean_items_readout_is_both_vectors_side_by_side():
    both = ClassifierModel(encoder(), num_classes=3, readout="ur_and_mean_items").eval()
    tokens, _ = next_item_batch()
    hidden = both.encoder.config.hidden
    assert tuple(both.classifier.weight.shape) == (3, 2 * hidden)
    vectors = both.user_vectors(tokens)
    torch.testing.assert_close(vectors[:, :hidden], both.encoder(tokens).user)
    items = ClassifierModel(both.encoder, num_classes=3, readout="mean_items").eval()
    torch.testing.assert_close(vectors[:, hidden:], items.user_vectors(tokens))
    assert both.logits(tokens).shape == (len(tokens), 3)


@pytest.mark.parametrize("head", ["classifier", "next_item"])
def test_frozen_encoder_is_a_linear_probe(head):
    enc = encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    tokens, targets = next_item_batch()
    if head == "classifier":
        model = ClassifierModel(enc, num_classes=3, freeze_encoder=True)
        labels = torch.tensor([0, 1, 2])
    else:
        model = NextItemModel(enc, freeze_encoder=True)
        labels = targets
    model.train()
    assert not model.encoder.training  # no dropout in the frozen encoder
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(not p.requires_grad for p in enc.parameters())
    optimizer = torch.optim.Adam(trainable, lr=1e-1)
    first = model.loss(tokens, labels)
    first.backward()
    optimizer.step()
    assert model.loss(tokens, labels).item() < first.item()
    for key, value in enc.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(model.user_vectors(tokens), model.user_vectors(tokens))


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunked_item_cross_entropy_matches_full_softmax_and_its_gradients(chunk_size):
    from clue_pipeline.models.heads import item_cross_entropy

    torch.manual_seed(0)
    states = torch.randn(23, 8, requires_grad=True)
    table = torch.randn(50, 8, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    expected = F.cross_entropy(states @ table.T, targets)
    (2 * expected).backward()
    want = states.grad.clone(), table.grad.clone()
    states.grad = table.grad = None
    got = item_cross_entropy(states, table, targets, chunk_size)
    (2 * got).backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(states.grad, want[0])
    torch.testing.assert_close(table.grad, want[1])
    with pytest.raises(ValueError, match="no supervised"):
        item_cross_entropy(states[:0], table, targets[:0])


def test_chunked_item_cross_entropy_under_bf16_autocast_keeps_fp32_accuracy():
    from clue_pipeline.models.heads import item_cross_entropy

    torch.manual_seed(0)
    states, table = torch.randn(40, 16), torch.randn(300, 16)
    targets = torch.randint(0, 300, (40,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = item_cross_entropy(states, table, targets, 16)
    torch.testing.assert_close(got.float(), F.cross_entropy(states @ table.T, targets))


def test_bf16_products_stay_close_to_the_fp32_loss_and_gradients():
    from clue_pipeline.models.heads import item_cross_entropy

    torch.manual_seed(2)
    states = torch.randn(37, 16, requires_grad=True)
    table = (0.5 * torch.randn(400, 16)).requires_grad_()
    targets = torch.randint(0, 400, (37,))
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        loss = item_cross_entropy(states, table, targets, 8, 0.1, matmul_dtype=dtype)
        loss.backward()
        results.append((loss.detach(), states.grad.clone(), table.grad.clone()))
        assert loss.dtype == torch.float32 and states.grad.dtype == torch.float32
        states.grad = table.grad = None
    (loss32, gs32, gt32), (loss16, gs16, gt16) = results
    torch.testing.assert_close(loss16, loss32, rtol=1e-2, atol=1e-2)
    for got, want in ((gs16, gs32), (gt16, gt32)):
        assert (got - want).norm() / want.norm() < 0.02
    with pytest.raises(ValueError, match="matmul_dtype"):
        item_cross_entropy(states, table, targets, matmul_dtype=torch.float16)
    with pytest.raises(ValueError, match="softmax_matmul"):
        NextItemModel(encoder(), softmax_matmul="half")


@pytest.mark.parametrize("smoothing", [0.1, 0.4])
def test_label_smoothing_matches_torch_and_its_gradients(smoothing):
    from clue_pipeline.models.heads import item_cross_entropy

    torch.manual_seed(1)
    states = torch.randn(19, 8, requires_grad=True)
    table = torch.randn(40, 8, requires_grad=True)
    targets = torch.randint(0, 40, (19,))
    expected = F.cross_entropy(states @ table.T, targets, label_smoothing=smoothing)
    expected.backward()
    want = states.grad.clone(), table.grad.clone()
    states.grad = table.grad = None
    got = item_cross_entropy(states, table, targets, 5, label_smoothing=smoothing)
    got.backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(states.grad, want[0])
    torch.testing.assert_close(table.grad, want[1])
    with pytest.raises(ValueError, match="label_smoothing"):
        item_cross_entropy(states, table, targets, label_smoothing=1.0)


def test_last_item_readout_scores_and_trains_from_the_last_item_state():
    model = NextItemModel(encoder(), readout="last_item").eval()
    tokens, targets = next_item_batch()
    states = model.encoder(tokens).states
    table = model.item_matrix()
    torch.testing.assert_close(model.user_scores(tokens), states[:, -2] @ table.T)
    torch.testing.assert_close(model.user_vectors(tokens), states[:, -1])  # [UR] stays
    # Prefix rows: only the [UR] column is supervised; the target moves to the last item.
    prefix_targets = torch.zeros_like(targets)
    prefix_targets[:, -1] = torch.tensor([7, 1, 25])
    expected = F.cross_entropy(states[:, -2] @ table.T, prefix_targets[:, -1] - 1)
    torch.testing.assert_close(model.loss(tokens, prefix_targets), expected)
    # User rows: every item position already predicts its successor; [UR]'s target is dropped.
    user_targets = targets.clone()
    user_targets[:, -1] = torch.tensor([7, 1, 25])
    keep = targets > 0
    expected = F.cross_entropy(states[keep] @ table.T, targets[keep] - 1)
    torch.testing.assert_close(model.loss(tokens, user_targets), expected)
    with pytest.raises(ValueError, match="readout"):
        NextItemModel(encoder(), readout="first")


def test_filter_encoder_learns_next_items_from_prefix_rows_only():
    from clue_pipeline.tasks.finetuning import finetune_next_item, prefix_rows, user_rows
    from clue_pipeline.training.loop import TrainConfig

    torch.manual_seed(0)
    config = EncoderConfig(num_items=NUM_ITEMS, kind="filter", max_len=MAX_LEN, hidden=16)
    model = NextItemModel(build_encoder(config), readout="last_item")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens, targets = next_item_batch()
    first = model.loss(tokens, targets)
    for _ in range(5):
        optimizer.zero_grad()
        model.loss(tokens, targets).backward()
        optimizer.step()
    assert model.loss(tokens, targets).item() < first.item()
    with pytest.raises(ValueError, match="next_item.rows: prefix"):
        finetune_next_item(
            user_rows(tokens.numpy(), targets.numpy()),
            None,
            build_encoder(config),
            TrainConfig(epochs=1, batch_size=2),
        )
    assert (
        prefix_rows(np.arange(1, 6), np.array([0]), np.array([5]), MAX_LEN, 27).layout == "prefix"
    )


def test_dropout_contrast_adds_an_infonce_term_only_in_training():
    tokens, targets = next_item_batch()
    plain = NextItemModel(encoder()).train()
    contrast = NextItemModel(encoder(), contrastive_weight=0.5, contrastive_temperature=0.2)
    contrast.train()
    torch.manual_seed(3)
    base = plain.loss(tokens, targets)
    torch.manual_seed(3)
    with_term = contrast.loss(tokens, targets)
    assert with_term.item() > base.item()  # same first pass, plus a positive InfoNCE term
    with_term.backward()
    assert contrast.encoder.item_embedding.weight.grad[3].abs().sum() > 0
    contrast.eval(), plain.eval()
    torch.testing.assert_close(contrast.loss(tokens, targets), plain.loss(tokens, targets))


def test_position_share_scores_a_drawn_subset_in_training_only():
    torch.manual_seed(0)
    tokens, targets = next_item_batch()
    full = NextItemModel(encoder())
    sampled = NextItemModel(encoder(), position_share=0.3)
    sampled.load_state_dict(full.state_dict())
    for model in (full, sampled):
        model.eval()  # no dropout: the two differ only in the positions they score
    assert torch.allclose(full.loss(tokens, targets), sampled.loss(tokens, targets))
    sampled.train(), full.train()
    sampled.encoder.eval(), full.encoder.eval()
    losses = {
        round(sampled.loss(tokens, targets, torch.Generator().manual_seed(s)).item(), 6)
        for s in range(4)
    }
    assert len(losses) > 1  # a fresh subset per draw
    assert full.loss(tokens, targets).item() not in losses
    with pytest.raises(ValueError, match="needs a generator"):
        sampled.loss(tokens, targets)


def test_position_share_outside_zero_one_is_refused():
    from clue_pipeline.config.finetuning import NextItemHead

    with pytest.raises(ValueError, match="finetune.next_item.position_share"):
        NextItemHead(position_share=0.0)
