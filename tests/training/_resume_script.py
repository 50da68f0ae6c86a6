"""A tiny SimSiam-shaped task for the training tests, runnable as a script to be killed and resumed.

The model has what the real heads have on the paths the loop must get right: dropout (draws from
torch's global RNG), BatchNorm1d (running buffers, and batch statistics that distributed training
must synchronise) and views drawn from the loop's generator.

    python tests/training/_resume_script.py --checkpoint-dir D --progress-file P --output O [--resume]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clue_pipeline.training import TrainConfig, TrainingTask, TrainResult, fit

MASK_TOKEN = 1


class TinySiamese(nn.Module):
    """Mean-pooled embeddings -> projector (Linear-BN-ReLU-Linear-BN) -> predictor.

    Linear layers feeding a BatchNorm have no bias, as in SimSiam: BN cancels a bias, so its
    gradient is rounding noise that Adam would blow up into lr-sized random steps.
    """

    def __init__(self, vocab: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.projector = nn.Sequential(
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(hidden, hidden // 2, bias=False),
            nn.BatchNorm1d(hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, hidden),
        )

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = self.projector(self.dropout(self.embedding(torch.cat([view_a, view_b])).mean(1)))
        p = self.predictor(z)
        z_a, z_b = z.chunk(2)
        p_a, p_b = p.chunk(2)
        return p_a, p_b, z_a.detach(), z_b.detach()


def simsiam_step(
    model: nn.Module, batch: torch.Tensor, generator: torch.Generator, mask_ratio: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Two masked views (random from the loop's generator, or none when mask_ratio is 0)."""
    if mask_ratio > 0:
        draws = torch.rand(batch.shape, generator=generator, device=batch.device)
        view_a = batch.masked_fill(draws < mask_ratio, MASK_TOKEN)
        view_b = batch.masked_fill(draws > 1 - mask_ratio, MASK_TOKEN)
    else:
        view_a, view_b = batch, batch.flip(1)
    p_a, p_b, z_a, z_b = model(view_a, view_b)
    loss = -0.5 * (
        F.cosine_similarity(p_a, z_b, dim=-1).mean() + F.cosine_similarity(p_b, z_a, dim=-1).mean()
    )
    z_std = F.normalize(z_a, dim=-1).std(0).mean()
    return loss, {"z_std": z_std}


def build_task(
    rows: int = 512,
    seq_len: int = 10,
    vocab: int = 40,
    hidden: int = 16,
    dropout: float = 0.2,
    mask_ratio: float = 0.2,
    seed: int = 0,
    progress_file: str | None = None,
    step_delay_s: float = 0.0,
    validation_rows: int = 0,
) -> TrainingTask:
    """Data and initial weights from ``seed``, so every process builds the same task."""
    data_generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, vocab, (rows, seq_len), generator=data_generator)
    torch.manual_seed(seed)
    model = TinySiamese(vocab, hidden, dropout)
    counter = {"steps": 0}

    def step_fn(model: nn.Module, batch: torch.Tensor, generator: torch.Generator):
        counter["steps"] += 1
        if progress_file is not None:
            _write_progress(Path(progress_file), counter["steps"])
        if step_delay_s:
            time.sleep(step_delay_s)
        return simsiam_step(model, batch, generator, mask_ratio)

    def validate_fn(model: nn.Module) -> dict[str, float]:
        """Eval-mode loss on fixed rows: uses the BN running statistics the training left behind."""
        device = next(model.parameters()).device
        fixed = torch.Generator(device=device).manual_seed(seed)
        loss, _ = simsiam_step(model, tokens[:validation_rows].to(device), fixed, mask_ratio)
        return {"neg_loss": -loss.item()}

    return TrainingTask(
        model=model,
        dataset=tokens,
        step_fn=step_fn,
        validate_fn=validate_fn if validation_rows else None,
    )


def train(
    checkpoint_dir: str | None,
    resume: bool,
    progress_file: str | None = None,
    step_delay_s: float = 0.0,
    epochs: int = 8,
    checkpoint_every_steps: int = 20,
) -> tuple[nn.Module, TrainResult]:
    task = build_task(progress_file=progress_file, step_delay_s=step_delay_s)
    config = TrainConfig(
        epochs=epochs,
        batch_size=16,
        seed=3,
        device="cpu",
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_steps=checkpoint_every_steps,
        resume=resume,
        grad_clip=5.0,
    )
    result = fit(task.model, task.dataset, task.step_fn, config)
    return task.model, result


def _write_progress(path: Path, steps: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(steps))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--progress-file", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--step-delay-s", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, result = train(args.checkpoint_dir, args.resume, args.progress_file, args.step_delay_s)
    torch.save(
        {"model": model.state_dict(), "step_losses": result.step_losses, "steps": result.steps},
        args.output,
    )


if __name__ == "__main__":
    main()
