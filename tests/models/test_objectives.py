"""The objectives registry: shapes, gradient paths, and a few steps of the one loop lower each loss."""

import math

import pytest
import torch

from clue_pipeline.augment import validate_view_policy
from clue_pipeline.models.clue import SimSiam
from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.heads import item_table
from clue_pipeline.models.item_pretraining import NextItemPretrainer, sample_per_row
from clue_pipeline.models.objectives import (
    OBJECTIVES,
    ObjectiveConfig,
    SequencePretrainer,
    bag_of_items_loss,
    info_nce_loss,
    vicreg_terms,
)
from clue_pipeline.tasks.pretraining import (
    ClueSettings,
    HealthConfig,
    PretrainJob,
    SimSiamConfig,
    build_pretraining,
)
from clue_pipeline.training import TrainConfig, fit
from tests.models.test_clue import MAX_LEN, NUM_ITEMS, tokens_batch

ENCODER = EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=16, heads=2, dropout=0.2)
MODES = [
    ("simsiam", 0.0),
    ("infonce", 0.0),
    ("vicreg", 0.0),
    ("simsiam", 0.5),
    ("infonce", 0.5),
    ("vicreg", 0.5),
]


def make(name: str, masked_item_weight: float = 0.0, **heads) -> SequencePretrainer:
    torch.manual_seed(0)
    objective = ObjectiveConfig(
        name=name, masked_item_weight=masked_item_weight, next_item_weight=0.0
    )
    return SequencePretrainer(build_encoder(ENCODER), objective, proj_dim=16, pred_dim=8, **heads)


def test_registry_names_the_three_objectives_and_refuses_others():
    assert set(OBJECTIVES) == {"simsiam", "infonce", "vicreg"}
    with pytest.raises(ValueError, match=r"pretrain.objective.name = 'byol'.*infonce"):
        ObjectiveConfig(name="byol")
    with pytest.raises(ValueError, match="temperature"):
        ObjectiveConfig(name="infonce", temperature=0.0)


@pytest.mark.parametrize("name, weight", MODES)
def test_forward_gives_a_scalar_loss_and_the_encoder_gets_gradients(name, weight):
    model = make(name, weight)
    tokens = tokens_batch()
    out = model(tokens, tokens, tokens, torch.Generator().manual_seed(0))
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert 0.0 <= float(out.metrics["z_std"]) <= 1.0
    assert ("masked_item_loss" in out.metrics) == (weight > 0)
    out.loss.backward()
    assert model.encoder.item_embedding.weight.grad.abs().sum() > 0
    assert model.projector[0].weight.grad.abs().sum() > 0


def test_simsiam_keeps_stop_gradient_and_predictor_the_others_drop_them():
    tokens = tokens_batch()
    simsiam = make("simsiam").views_forward(tokens, tokens)
    assert not simsiam.z1.requires_grad and simsiam.p1.requires_grad
    for name in ("infonce", "vicreg"):
        model = make(name)
        assert isinstance(model.predictor, torch.nn.Identity)
        out = model.views_forward(tokens, tokens)
        assert out.z1.requires_grad, f"{name}: gradients must flow through both branches"
    # vicreg regularises the variance itself: no BatchNorm at the projector's output
    assert isinstance(make("vicreg").projector[-1], torch.nn.Identity)
    assert isinstance(make("simsiam").projector[-1], torch.nn.BatchNorm1d)


def test_simsiam_objective_is_todays_simsiam_bit_for_bit():
    torch.manual_seed(0)
    reference = SimSiam(build_encoder(ENCODER), proj_dim=16, pred_dim=8)
    model = make("simsiam")
    tokens = tokens_batch()
    torch.manual_seed(1)
    p1, p2, z1, z2 = reference(tokens, tokens)
    torch.manual_seed(1)
    loss = model(tokens, tokens).loss
    expected = -0.5 * (
        torch.nn.functional.cosine_similarity(p1, z2).mean()
        + torch.nn.functional.cosine_similarity(p2, z1).mean()
    )
    assert torch.equal(loss, expected)


def test_output_bn_without_affine_has_no_scale_or_shift():
    plain = make("simsiam", output_bn_affine=False).projector[-1]
    assert isinstance(plain, torch.nn.BatchNorm1d) and plain.weight is None


def test_info_nce_is_low_for_matched_pairs_and_high_for_shuffled_ones():
    z = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    matched = info_nce_loss(z, z, temperature=0.1)
    shuffled = info_nce_loss(z, z.roll(1, dims=0), temperature=0.1)
    assert matched < 0.5 < shuffled


def test_vicreg_terms_punish_a_collapsed_or_correlated_space():
    generator = torch.Generator().manual_seed(0)
    spread = torch.randn(256, 8, generator=generator) * 2.0
    invariance, variance, covariance = vicreg_terms(spread, spread)
    assert invariance == 0 and variance < 1e-3 and covariance < 2.0
    point = torch.ones(256, 8) + 1e-3 * torch.randn(256, 8, generator=generator)
    assert vicreg_terms(point, point)[1] > 0.9  # std ~0: the hinge is at its maximum
    line = torch.randn(256, 1, generator=generator).repeat(1, 8) * 2.0
    assert vicreg_terms(line, line)[2] > 10 * covariance


def fit_clue(tokens: torch.Tensor, objective: ObjectiveConfig, views: dict):
    """Six epochs of CLUE pre-training through the one loop, with the health monitor."""
    job = PretrainJob(
        method="clue",
        tokens=tokens.numpy(),
        encoder=ENCODER,
        train=TrainConfig(epochs=6, batch_size=64, lr=3e-3, seed=0, device="cpu"),
        settings=ClueSettings(
            validate_view_policy(views), SimSiamConfig(proj_dim=16, pred_dim=8), objective
        ),
        health=HealthConfig(users=64, min_effective_rank=None),
    )
    task = build_pretraining(job)
    return fit(task.model, task.dataset, task.step_fn, job.train, None, task.epoch_metrics_fn)


@pytest.mark.parametrize("name, weight", MODES)
def test_a_few_steps_of_the_one_loop_lower_each_objective(name, weight):
    result = fit_clue(
        tokens_batch(rows=128, seed=3),
        ObjectiveConfig(name=name, masked_item_weight=weight, next_item_weight=0.0),
        {"strategies": ["mask"], "mask_ratio": 0.3},
    )
    losses = [entry["loss"] for entry in result.history]
    assert losses[-1] < losses[0], f"{name} (+{weight} masked items): {losses}"
    last = result.history[-1]
    for key in ("effective_rank", "top2_share", "alignment", "uniformity", "projection_std"):
        assert key in last, key
    assert 1.0 <= last["effective_rank"] <= 16.0 and 0.0 < last["top2_share"] <= 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_each_objective_trains_on_cuda(name):
    tokens = tokens_batch(rows=128, seed=3).numpy()
    job = PretrainJob(
        method="clue",
        tokens=tokens,
        encoder=ENCODER,
        train=TrainConfig(epochs=2, batch_size=64, seed=0, device="cuda"),
        settings=ClueSettings(
            validate_view_policy({"strategies": ["dropout"]}),
            SimSiamConfig(proj_dim=16, pred_dim=8),
            ObjectiveConfig(name=name, masked_item_weight=0.5, next_item_weight=0.0),
        ),
        health=HealthConfig(users=64, min_effective_rank=None),
    )
    task = build_pretraining(job)
    result = fit(task.model, task.dataset, task.step_fn, job.train, None, task.epoch_metrics_fn)
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in result.history)
    assert next(task.model.parameters()).device.type == "cuda"


def test_fixed_predictor_lr_is_dropped_only_where_there_is_no_predictor():
    from clue_pipeline.tasks.pretraining import heads_present

    def job(method: str, name: str, fixed: list[str]) -> PretrainJob:
        return PretrainJob(
            method=method,
            tokens=tokens_batch(rows=64).numpy(),
            encoder=ENCODER,
            train=TrainConfig(epochs=1, batch_size=32, device="cpu", fixed_lr_params=fixed),
            settings=ClueSettings(
                validate_view_policy({"strategies": ["dropout"]}),
                SimSiamConfig(proj_dim=16, pred_dim=8),
                ObjectiveConfig(name=name, next_item_weight=0.0),
            )
            if method == "clue"
            else None,
        )

    assert heads_present(job("clue", "simsiam", ["predictor"])).train.fixed_lr_params == [
        "predictor"
    ]
    assert heads_present(job("clue", "vicreg", ["predictor"])).train.fixed_lr_params == []
    assert heads_present(job("mip", "simsiam", ["predictor", "x"])).train.fixed_lr_params == ["x"]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_without_a_projector_the_loss_reads_the_user_vectors_themselves(name):
    model = make(name, projector=False)
    assert isinstance(model.projector, torch.nn.Identity)
    tokens = tokens_batch()
    out = model.views_forward(tokens, tokens)
    assert torch.equal(out.z1.detach(), out.user1.detach())  # z is the [UR] vector
    loss = model(tokens, tokens).loss
    loss.backward()
    assert model.encoder.item_embedding.weight.grad.abs().sum() > 0
    if name == "simsiam":  # the predictor maps the user vector back to its own width
        assert model.predictor[-1].out_features == ENCODER.hidden


@pytest.mark.parametrize("name", ["infonce", "vicreg"])
def test_a_few_steps_without_a_projector_lower_the_loss(name):
    job = PretrainJob(
        method="clue",
        tokens=tokens_batch(rows=128, seed=3).numpy(),
        encoder=ENCODER,
        train=TrainConfig(epochs=6, batch_size=64, lr=3e-3, seed=0, device="cpu"),
        settings=ClueSettings(
            validate_view_policy({"strategies": ["mask"], "mask_ratio": 0.3}),
            SimSiamConfig(proj_dim=16, pred_dim=8, projector=False),
            ObjectiveConfig(name=name, next_item_weight=0.0),
        ),
        health=HealthConfig(users=128, min_effective_rank=None),
    )
    task = build_pretraining(job)
    assert isinstance(task.model.projector, torch.nn.Identity)
    result = fit(task.model, task.dataset, task.step_fn, job.train, None, task.epoch_metrics_fn)
    losses = [entry["loss"] for entry in result.history]
    assert losses[-1] < losses[0], f"{name} without a projector: {losses}"
    assert 1.0 <= result.history[-1]["effective_rank"] <= ENCODER.hidden


def test_next_item_term_scores_each_item_against_its_successor_only():
    torch.manual_seed(0)
    encoder = build_encoder(ENCODER)
    ur = ENCODER.tokens.user
    # left-padded rows ending in [UR]: pairs (3 -> 5), (5 -> 7) and (2 -> 9); a one-item row
    # and the last item of each row (successor held out) give none
    tokens = torch.tensor([[0, 3, 5, 7, ur], [0, 0, 0, 4, ur], [0, 0, 2, 9, ur]])
    states = encoder.eval()(tokens).states
    picked = states[[0, 0, 2], [1, 2, 2]]
    expected = torch.nn.functional.cross_entropy(
        picked @ item_table(encoder).T, torch.tensor([5, 7, 9]) - 1
    )
    loss = NextItemPretrainer(encoder)(tokens)
    assert torch.allclose(loss, expected, atol=1e-5)
    # a mixed batch, encoded in length groups, gives the one padded pass's loss
    mixed = tokens_batch(rows=32, seed=5)
    padded_states = encoder(mixed).states[:, :-1]
    items = (mixed > 0) & (mixed <= NUM_ITEMS)
    pairs = items[:, :-1] & items[:, 1:]
    padded = torch.nn.functional.cross_entropy(
        padded_states[pairs] @ item_table(encoder).T, mixed[:, 1:][pairs] - 1
    )
    assert torch.allclose(NextItemPretrainer(encoder)(mixed), padded, atol=1e-5)
    lonely = NextItemPretrainer(encoder)(torch.tensor([[0, 0, 4, ur], [0, 0, 6, ur]]))
    assert float(lonely.detach()) == 0.0 and lonely.requires_grad


def test_next_item_share_supervises_that_share_of_each_rows_pairs():
    candidates = torch.tensor(
        [[True] * 10, [False] * 8 + [True] * 2, [False] * 10, [True, False] * 5]
    )
    chosen = sample_per_row(candidates, 0.3, torch.Generator().manual_seed(0))
    assert chosen.sum(1).tolist() == [3, 1, 0, 2]  # round(0.3 n), at least one where n > 0
    assert not (chosen & ~candidates).any()
    other = sample_per_row(candidates, 0.3, torch.Generator().manual_seed(1))
    assert not torch.equal(chosen, other)  # drawn afresh, not always the same positions
    torch.manual_seed(0)
    encoder = build_encoder(ENCODER).eval()
    tokens = tokens_batch(rows=32, seed=5)
    full = NextItemPretrainer(encoder)(tokens).detach()
    half = NextItemPretrainer(encoder, share=0.5)(tokens, torch.Generator().manual_seed(0)).detach()
    assert float(half) != float(full) and abs(float(half) - float(full)) < 0.5
    with pytest.raises(ValueError, match="needs a generator"):
        NextItemPretrainer(encoder, share=0.5)(tokens)
    with pytest.raises(ValueError, match="next_item_share = 0"):
        ObjectiveConfig(next_item_weight=1.0, next_item_share=0.0)
    for sees_all in (
        EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=16, heads=2, kind="filter"),
        EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=16, heads=2, causal=False),
    ):
        with pytest.raises(ValueError, match="sees the whole row"):
            NextItemPretrainer(build_encoder(sees_all))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_joint_next_item_term_is_added_logged_and_lowered_by_the_loop(name):
    model = SequencePretrainer(
        build_encoder(ENCODER),
        ObjectiveConfig(name=name, next_item_weight=0.7),
        proj_dim=16,
        pred_dim=8,
    )
    tokens = tokens_batch()
    out = model(tokens, tokens, tokens, torch.Generator().manual_seed(0))
    assert "next_item_loss" in out.metrics and "masked_item_loss" not in out.metrics
    assert torch.isclose(
        out.loss, out.metrics["view_loss"] + 0.7 * out.metrics["next_item_loss"], atol=1e-5
    )
    with pytest.raises(ValueError, match="next_item_weight|loss weights"):
        ObjectiveConfig(name=name, next_item_weight=-1.0)
    # runs of consecutive items: each item's successor is learnable
    tokens = tokens_batch(rows=128, seed=3)
    starts = torch.randint(1, NUM_ITEMS + 1, (128, 1), generator=torch.Generator().manual_seed(3))
    runs = (starts + torch.arange(MAX_LEN + 1)) % NUM_ITEMS + 1
    tokens = torch.where((tokens > 0) & (tokens <= NUM_ITEMS), runs, tokens)
    result = fit_clue(
        tokens, ObjectiveConfig(name=name, next_item_weight=1.0), {"strategies": ["dropout"]}
    )
    item_losses = [entry["next_item_loss"] for entry in result.history]
    assert item_losses[-1] < item_losses[0], item_losses


def test_view_weight_scales_the_view_term_and_zero_needs_an_item_term():
    tokens = tokens_batch()
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    alone = SequencePretrainer(
        build_encoder(ENCODER),
        ObjectiveConfig(next_item_weight=1.0, view_weight=0.0),
        proj_dim=16,
        pred_dim=8,
    )
    out = alone(tokens, tokens, tokens, generator)
    assert torch.isclose(out.loss, out.metrics["next_item_loss"], atol=1e-6)
    assert float(out.metrics["view_loss"]) != 0.0  # still measured, only not trained
    with pytest.raises(ValueError, match="view_weight = 0.*nothing to train"):
        ObjectiveConfig(view_weight=0.0, next_item_weight=0.0)
    with pytest.raises(ValueError, match="loss weights"):
        ObjectiveConfig(view_weight=-0.5)


def test_bag_term_is_the_mean_cross_entropy_of_each_sequence_item_counted_once():
    users = torch.randn(2, 4)
    table = torch.randn(NUM_ITEMS, 4)
    mask, ur = NUM_ITEMS + 1, NUM_ITEMS + 2
    tokens = torch.tensor([[0, 0, 3, 5, 3, ur], [0, 7, mask, 2, 9, ur]])
    log_probs = torch.log_softmax(users @ table.T, dim=1)
    expected = -0.5 * (
        (log_probs[0, 2] + log_probs[0, 4]) / 2
        + (log_probs[1, 6] + log_probs[1, 1] + log_probs[1, 8]) / 3
    )
    torch.testing.assert_close(bag_of_items_loss(users, table, tokens), expected)


def test_tfidf_bag_targets_weigh_each_item_by_its_rarity_over_the_pretraining_rows():
    users, table = torch.randn(2, 4), torch.randn(NUM_ITEMS, 4)
    tokens = torch.tensor([[0, 0, 3, 5, 3, NUM_ITEMS + 2], [0, 0, 0, 3, 9, NUM_ITEMS + 2]])
    log_probs = torch.log_softmax(users @ table.T, dim=1)
    model = SequencePretrainer(
        build_encoder(ENCODER), ObjectiveConfig(bag_weight=1.0, bag_targets="tfidf"), 16, 8
    )
    model.weigh_bag_items(tokens)
    idf = model.bag_item_weights  # smoothed IDF over the two rows: log(3 / (1 + df)) + 1
    assert idf.shape == (NUM_ITEMS,)
    once, never = math.log(1.5) + 1, math.log(3.0) + 1  # items 5, 9 read once; item 1 never
    torch.testing.assert_close(idf[[2, 4, 8, 0]], torch.tensor([1.0, once, once, never]))
    w3, w5, w9 = idf[2], idf[4], idf[8]
    expected = -0.5 * (
        (w3 * log_probs[0, 2] + w5 * log_probs[0, 4]) / (w3 + w5)
        + (w3 * log_probs[1, 2] + w9 * log_probs[1, 8]) / (w3 + w9)
    )
    torch.testing.assert_close(bag_of_items_loss(users, table, tokens, idf), expected)
    uniform = SequencePretrainer(build_encoder(ENCODER), ObjectiveConfig(bag_weight=1.0), 16, 8)
    uniform.weigh_bag_items(tokens)
    assert uniform.bag_item_weights.numel() == 0  # uniform: the plain mean
    assert "bag_item_weights" not in model.state_dict()  # rebuilt from the rows, not saved
    with pytest.raises(ValueError, match="pretrain.objective.bag_targets = 'bm25'"):
        ObjectiveConfig(bag_targets="bm25")


def test_the_bag_term_is_added_logged_and_teaches_the_user_vector_its_items():
    tokens = tokens_batch(rows=128, seed=3)
    objective = ObjectiveConfig(next_item_weight=0.0, bag_weight=0.5)
    model = SequencePretrainer(build_encoder(ENCODER), objective, proj_dim=16, pred_dim=8)
    out = model(tokens, tokens, tokens, torch.Generator().manual_seed(0))
    assert torch.isclose(
        out.loss, out.metrics["view_loss"] + 0.5 * out.metrics["bag_loss"], atol=1e-5
    )
    # two kinds of users, each reading one half of the catalogue: a bag worth learning
    half = NUM_ITEMS // 2
    kind = (torch.arange(128) % 2)[:, None]
    items = (tokens - 1) % half + 1 + half * kind
    grouped = torch.where((tokens > 0) & (tokens <= NUM_ITEMS), items, tokens)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    bag_losses = []
    for step in range(40):
        out = model(grouped, grouped, grouped, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        bag_losses.append(float(out.metrics["bag_loss"]))
    # from log(N) towards log(N / 2), the half each kind of user reads
    assert bag_losses[-1] < bag_losses[0] - 0.3, bag_losses
    assert ObjectiveConfig(view_weight=0.0, next_item_weight=0.0, bag_weight=1.0).bag_weight == 1
    with pytest.raises(ValueError, match="loss weights"):
        ObjectiveConfig(bag_weight=-1.0)
