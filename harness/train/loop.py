"""The training loop: compact and transparent.

Features: accelerate for device placement and mixed precision (bf16 on GPU, fp32
on CPU); gradient accumulation; AdamW (paged 8-bit AdamW for 4-bit bases on GPU)
with a cosine/linear/constant schedule and warmup; gradient clipping; the method's
per-step hook (AdaLoRA's rank allocation after ``optimizer.step()``, before
``zero_grad()``); optional class-weighted loss; length-grouped batches, or padding-free
packed rows for decoder-only heads (``train.packing``); ``torch.compile`` on GPU with the
compiling first step kept out of the throughput (``train.compile``); periodic
checkpoints and exact resume (weights, optimizer, scheduler, step, data position,
RNG); a progress bar with steps, loss and throughput.

Gradient accumulation is counted by the loop itself rather than by
``accelerator.accumulate`` so that every optimizer step consumes a known slice of
the epoch's batch order: a checkpoint then names an exact data position.

Raises: ``torch.cuda.OutOfMemoryError`` / ``MemoryError`` as they come (the cell
runner maps them to status ``oom``); :class:`~harness.train.divergence.TrainingDiverged` at
the first step whose loss is not finite or has exploded (status ``diverged``; the rule is in
:mod:`harness.train.divergence`); ``RuntimeError`` for a checkpoint that does not match the
model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.config import TrainConfig
from harness.heads import HEADS
from harness.methods.build import after_optimizer_step
from harness.methods.registry import MethodSpec
from harness.tasks import Example, collate_packed, collate_train, count_tokens
from harness.train import checkpoint as ckpt
from harness.train import distributed
from harness.train.batching import batch_order, padding_fraction
from harness.train.divergence import TrainingDiverged, check_divergence

log = logging.getLogger("harness.train")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch's order already consumed
    samples: int = 0
    real_tokens: int = 0
    token_slots: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # train.eval_every


@dataclass
class TrainOutcome:
    steps: int
    total_steps: int
    samples_this_run: int
    real_tokens_this_run: int
    train_seconds: float
    padding_fraction: float
    final_loss: float | None
    losses: list[tuple[int, float]]
    resumed_from_step: int | None
    # with train.compile: the first optimizer step of this run (it compiles), kept out of the
    # samples/seconds above; None when the model was not compiled
    compile_s: float | None = None
    eval_losses: list[tuple[int, float]] = field(default_factory=list)


def total_optimizer_steps(num_examples: int, config: TrainConfig) -> int:
    per_epoch = math.ceil(math.ceil(num_examples / config.batch_size) / config.grad_accum)
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(per_epoch * config.epochs))


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        examples: list[Example],
        *,
        head: str,
        pad_id: int,
        config: TrainConfig,
        method: MethodSpec,
        learning_rate: float,
        seed: int,
        checkpoint_dir: Path,
        accelerator: Any,
        quantized: bool = False,
        class_weights: list[float] | None = None,
        on_log: Callable[[int, dict[str, float]], None] | None = None,
        validation: list[Example] | None = None,
        on_step: Callable[[], None] | None = None,
        stop_at_step: int | None = None,
    ) -> None:
        self.model, self.examples, self.head, self.pad_id = model, examples, head, pad_id
        # train.eval_every's examples, longest first (fewer padded slots per batch)
        self.validation = sorted(validation or [], key=lambda e: -e.length)
        self.config, self.method, self.seed = config, method, seed
        self.checkpoint_dir = checkpoint_dir
        self.accelerator = accelerator
        self.device = accelerator.device
        self.on_log = on_log
        self.on_step = on_step  # after every optimizer step (the per-step memory samples)
        self.lengths = [e.length for e in examples]
        self.total_steps = total_optimizer_steps(len(examples), config)
        # a rung: the full budget's schedule trained up to this step, checkpointed there, stopped
        self.end_step = min(stop_at_step, self.total_steps) if stop_at_step is not None else self.total_steps
        self.class_weights = torch.tensor(class_weights, device=self.device) if class_weights else None
        self.ctx = distributed.current()  # this rank (train.distributed), or the only process
        self.fsdp = self.ctx.active and self.ctx.mode == "fsdp"
        if self.fsdp:  # sharded in place before the optimizer sees the parameters
            from harness.train import fsdp

            units = fsdp.shard(self.model, self.device, cpu_offload=config.fsdp_cpu_offload)
            log.info("fsdp: %d blocks sharded over %d ranks", len(units), self.ctx.world_size)
        self.optimizer = self._optimizer(learning_rate, quantized)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            config.scheduler if config.scheduler != "constant" else "constant_with_warmup",
            self.optimizer,
            num_warmup_steps=int(config.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        if not self.fsdp:  # FSDP2 shards the module itself: no wrapper for accelerate to add
            self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)
        self.unwrapped = accelerator.unwrap_model(self.model)  # once: unwrapping walks every module
        self.compiled = config.compile and self.device.type == "cuda"
        if config.compile and not self.compiled:
            log.warning(
                "train.compile: skipped, torch.compile is for GPU runs; this one trains on %s uncompiled",
                self.device.type,
            )
        if self.compiled:
            self.model = torch.compile(self.model)
        attention = getattr(getattr(self.unwrapped, "config", None), "_attn_implementation", "") or ""
        self.flash_attention = attention.startswith("flash")
        self.progress = Progress()
        self._in_step = False
        self._live = False  # between resume and the end of train(): checkpoint_now may save
        self._rng_at_boundary = ckpt.rng_state()
        self._last_saved_step: int | None = None

    def _optimizer(self, learning_rate: float, quantized: bool) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        if self.method.hooks.optimizer is not None:  # the method's own (LoRA-FA)
            return self.method.hooks.optimizer(self.model, groups, learning_rate, self.config)
        choice = self.config.optimizer
        if choice == "auto":
            choice = "paged_adamw_8bit" if quantized and self.device.type == "cuda" else "adamw"
        if choice == "paged_adamw_8bit":
            import bitsandbytes as bnb

            return bnb.optim.PagedAdamW8bit(groups, lr=learning_rate, betas=self.config.adam_betas)
        return torch.optim.AdamW(groups, lr=learning_rate, betas=self.config.adam_betas)

    # -- checkpoints ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        hook = self.method.hooks.checkpoint_state
        return hook(self.unwrapped) if hook is not None else {}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        hook = self.method.hooks.restore_state
        if extra and hook is not None:
            hook(self.unwrapped, extra, self.device)

    def save_checkpoint(self) -> Path:
        weights = optimizer_state = None
        if self.fsdp:  # a collective: every rank gathers, rank 0 writes
            from harness.train import fsdp

            weights = fsdp.full_trainable_state(self.model)
            optimizer_state = fsdp.full_optimizer_state(self.model, self.optimizer)
        if not self.ctx.main:  # every rank holds the same state (DDP) or has gathered it (FSDP): rank 0 writes
            self._last_saved_step = self.progress.step
            return self.checkpoint_dir
        path = ckpt.save_checkpoint(
            self.checkpoint_dir,
            self.progress.step,
            model=self.unwrapped,  # parameter names without the DDP (module.) or compile prefix
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            progress=self.progress.__dict__,
            rng=self._rng_at_boundary,
            extra=self._extra_state(),
            weights=weights,
            optimizer_state=optimizer_state,
        )
        self._last_saved_step = self.progress.step
        log.info("checkpoint saved at step %d: %s", self.progress.step, path)
        return path

    def checkpoint_now(self) -> int | None:
        """Save the state now (from a preemption/time-out signal handler, through the callback
        the cell registers: harness.preemption). Returns the step a requeued job resumes from,
        or None before the loop has started (or resumed). Python runs signal handlers between
        bytecodes; inside the optimizer-step critical section weights and optimizer may
        disagree, so then the last periodic checkpoint on disk is kept instead of a torn one."""
        if not self._live:
            return None
        if self._in_step or self.fsdp:  # FSDP: gathering is a collective the other ranks are not in
            return self._last_saved_step
        if self._last_saved_step != self.progress.step:
            self.save_checkpoint()
        return self.progress.step

    def resume_if_possible(self) -> int | None:
        path = ckpt.readable_checkpoint(self.checkpoint_dir)  # one that does not read back is moved aside
        if path is None:
            return None
        if self.fsdp:
            from harness.train import fsdp

            weights, state, progress = ckpt.read_checkpoint(path)
            fsdp.load_full_state(self.model, self.optimizer, weights, state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            rng, extra = state["rng"], state["extra"]
        else:
            progress, rng, extra = ckpt.load_checkpoint(path, self.unwrapped, self.optimizer, self.scheduler)
        self.progress = Progress(
            **{
                **progress,
                "losses": [tuple(x) for x in progress["losses"]],
                "eval_losses": [tuple(x) for x in progress.get("eval_losses", [])],
            }
        )
        self._restore_extra(extra)
        ckpt.set_rng_state(rng)
        self._rng_at_boundary = rng
        self._last_saved_step = self.progress.step
        log.info("resumed from %s (step %d of %d)", path, self.progress.step, self.total_steps)
        return self.progress.step

    # -- the loop ------------------------------------------------------------------------------
    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        class_ids = batch.pop("class_ids", None)
        if self.class_weights is None:
            return self.model(**batch).loss
        return HEADS[self.head].weighted_loss(self.model, batch, self.class_weights, class_ids)

    def train(self) -> TrainOutcome:
        resumed = self.resume_if_possible()
        self._live = True
        cfg, progress = self.config, self.progress
        start_samples, start_tokens = progress.samples, progress.real_tokens
        self.model.train()
        bar = self._progress_bar()
        started = time.perf_counter()
        compile_s: float | None = None
        try:
            while progress.step < self.end_step:
                order = batch_order(self.lengths, cfg.batch_size, self.seed, progress.epoch, cfg.group_by_length)
                while progress.batch_in_epoch < len(order) and progress.step < self.end_step:
                    micro = order[progress.batch_in_epoch : progress.batch_in_epoch + cfg.grad_accum]
                    loss_sum, real_sum, slot_sum = 0.0, 0, 0
                    for indices in micro:
                        if (
                            len(indices) < self.ctx.world_size
                        ):  # an epoch's last, smaller batch: no share for some ranks
                            continue
                        batch = self._collate([self.examples[i] for i in distributed.shard(indices)])
                        real, slots = count_tokens(batch)
                        real_sum, slot_sum = real_sum + real, slot_sum + slots
                        batch = {k: v.to(self.device) for k, v in batch.items()}
                        if self.config.packing:
                            # transformers finds the examples of a packed row from its position ids only
                            # when no KV cache is passed; with the default use_cache it attends across them
                            batch["use_cache"] = False
                        share = self._share(batch)  # before the loss, which takes the class ids out
                        loss = self._loss(batch) * share / len(micro)
                        if self.fsdp:
                            loss.backward()
                        else:
                            self.accelerator.backward(loss)
                        loss_sum += float(loss.detach())
                    if self.ctx.active:  # the step's loss and tokens over every rank's share
                        summed = distributed.all_sum([loss_sum, real_sum, slot_sum])
                        loss_sum, real_sum, slot_sum = summed[0], int(summed[1]), int(summed[2])
                        loss_sum /= self.ctx.world_size
                    progress.real_tokens += int(real_sum)
                    progress.token_slots += int(slot_sum)
                    # judged before the update: a diverged step's gradient is never applied. Every
                    # rank holds the same summed loss, so all of them stop at the same step.
                    diverged = check_divergence(progress.step + 1, loss_sum, progress.losses)
                    if diverged is not None:
                        if math.isfinite(loss_sum):  # an exploded loss shows in the curve; a NaN is kept out of it
                            progress.losses.append((diverged.step, loss_sum))
                        raise TrainingDiverged(
                            diverged, self._outcome(started, start_samples, start_tokens, resumed, compile_s)
                        )
                    self._optimizer_step(len(micro), sum(len(b) for b in micro))
                    if self.compiled and compile_s is None:  # the first step compiled: time from here
                        compile_s = time.perf_counter() - started
                        started, start_samples, start_tokens = (
                            time.perf_counter(),
                            progress.samples,
                            progress.real_tokens,
                        )
                    progress.losses.append((progress.step, loss_sum))
                    if self.on_step is not None:
                        self.on_step()
                    self._report(bar, loss_sum, started, start_samples)
                    if self._validation_due():
                        progress.eval_losses.append((progress.step, self.validation_loss()))
                    if cfg.checkpoint_every and progress.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                if progress.batch_in_epoch >= len(order):
                    progress.epoch += 1
                    progress.batch_in_epoch = 0
            if self.paused and self._last_saved_step != progress.step:
                self.save_checkpoint()  # the rung's: the run that continues resumes from it
        finally:
            self._live = False
            if bar is not None:
                bar.close()
        return self._outcome(started, start_samples, start_tokens, resumed, compile_s)

    @property
    def paused(self) -> bool:
        """Stopped at a rung (``stop_at_step``) short of the full budget."""
        return self.progress.step < self.total_steps and self.progress.step >= self.end_step

    def _outcome(
        self, started: float, start_samples: int, start_tokens: int, resumed: int | None, compile_s: float | None
    ) -> TrainOutcome:
        """What this run trained so far (all of it, or up to a diverged step)."""
        progress = self.progress
        return TrainOutcome(
            steps=progress.step,
            total_steps=self.total_steps,
            samples_this_run=progress.samples - start_samples,
            real_tokens_this_run=progress.real_tokens - start_tokens,
            train_seconds=time.perf_counter() - started,
            padding_fraction=1.0 - progress.real_tokens / progress.token_slots if progress.token_slots else 0.0,
            final_loss=progress.losses[-1][1] if progress.losses else None,
            losses=progress.losses,
            resumed_from_step=resumed,
            compile_s=compile_s,
            eval_losses=progress.eval_losses,
        )

    def _share(self, batch: dict[str, torch.Tensor]) -> float:
        """This rank's weight in a distributed step: its share of what the head's loss averages over
        (examples, label tokens), times the world size, so that DDP's mean of the ranks' gradients
        is the gradient of the whole batch's loss. 1 in one process."""
        if not self.ctx.active:
            return 1.0
        units = HEADS[self.head].loss_units(batch, self.class_weights, batch.get("class_ids"))
        total = distributed.all_sum([units])[0]
        return units * self.ctx.world_size / total if total else 0.0

    def _validation_due(self) -> bool:
        every, step = self.config.eval_every, self.progress.step
        # rank 0 alone, except under FSDP, whose forward passes gather the weights from every rank
        return bool(
            every
            and self.validation
            and (self.ctx.main or self.fsdp)
            and (step % every == 0 or step == self.total_steps)
        )

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss per example on the validation examples (unweighted, dropout off). It draws
        no random numbers, so a run that measures it trains exactly as one that does not."""
        self.model.eval()
        total, count = 0.0, 0
        try:
            size = self.config.eval_batch_size
            for start in range(0, len(self.validation), size):
                chunk = self.validation[start : start + size]
                batch = collate_train(chunk, self.head, self.pad_id)
                batch.pop("class_ids", None)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                total += float(self.unwrapped(**batch).loss) * len(chunk)  # not through DDP: no collectives
                count += len(chunk)
        finally:
            self.model.train()
        return total / max(count, 1)

    def _collate(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        if self.config.packing:  # plan-time checks allow it only for decoder-only heads
            return collate_packed(examples, flash_attention=self.flash_attention)
        return collate_train(examples, self.head, self.pad_id)

    def _optimizer_step(self, micro_batches: int, samples: int) -> None:
        cfg, progress = self.config, self.progress
        self._in_step = True
        if cfg.max_grad_norm and self.fsdp:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.max_grad_norm)
        elif cfg.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        after_optimizer_step(self.unwrapped, self.method, progress.step)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.batch_in_epoch += micro_batches
        progress.samples += samples
        self._rng_at_boundary = ckpt.rng_state()
        self._in_step = False

    def _progress_bar(self) -> Any:
        if not self.config.progress_bar:
            return None
        import sys

        from tqdm.auto import tqdm

        return tqdm(
            total=self.total_steps,
            initial=self.progress.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 10.0,
        )

    def _report(self, bar: Any, loss: float, started: float, start_samples: int) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        rate = (self.progress.samples - start_samples) / elapsed
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.1f}", refresh=False)
        step = self.progress.step
        if self.config.log_every and (step % self.config.log_every == 0 or step == self.total_steps):
            lr = self.scheduler.get_last_lr()[0]
            log.info("step %d/%d loss %.4f lr %.3g samples/s %.2f", step, self.total_steps, loss, lr, rate)
            if self.on_log is not None:
                self.on_log(step, {"train/loss": loss, "train/lr": lr, "train/samples_per_s": rate})


def expected_padding_fraction(examples: list[Example], config: TrainConfig, seed: int, group_by_length: bool) -> float:
    lengths = [e.length for e in examples]
    return padding_fraction(lengths, batch_order(lengths, config.batch_size, seed, 0, group_by_length))
