"""The training loop: AdamW with linear warm-up, gradient clipping, EMA weights, checkpoints.

One optimiser step (``Trainer.step``):

1. take the next global batch from the seeded :class:`~invdiff.training.data.BatchStream`
   (this rank's share of it) and augment it with parameters drawn for the whole global batch;
2. per-example objective ``model.loss(x, generator).objective`` (the VDM bound in bits/dim, whose
   gradient also trains the noise schedule, Kingma et al. 2021, Sec. 3 and App. I.2), mean over
   the batch, backward (DDP averages gradients over ranks);
3. clip the global gradient norm, AdamW step, warm-up scheduler step;
4. EMA update ``theta_ema <- d theta_ema + (1 - d) theta`` with ``d = min(decay, (1+n)/(10+n))``.

Every ``ckpt_every`` steps (and when the run stops) the EMA model is exported as the prior file
and the full state goes to the resume file (:mod:`invdiff.training.state`); resuming restores
weights, EMA, optimiser, scheduler, generator states and data position, so a resumed run is
bit-for-bit the uninterrupted one on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from invdiff.manifest import sha256_file
from invdiff.training import distributed as tdist
from invdiff.training.augment import apply_augment, sample_augment
from invdiff.training.config import (
    TrainConfig,
    check_run_outputs,
    config_mismatch,
    config_to_dict,
    describe_mismatch,
    log_path,
    lr_factor,
    resume_path,
)
from invdiff.training.data import BatchStream, ImageSets, load_image_sets
from invdiff.training.display import JsonlLog, RunDisplay
from invdiff.training.state import (
    ExportFn,
    ResumeState,
    atomic_write,
    load_module_state,
    load_resume,
    rank_rng_states,
    save_resume,
    set_rank_rng_states,
)

#: Seed of the generator used for every validation pass (same noise and times each time).
VAL_SEED = 20211200


class _LossModule(nn.Module):
    """Wraps ``model.loss`` as ``forward`` so DDP and ``torch.compile`` see one module call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        out = self.model.loss(x, generator)
        return out.objective, out.total


class Trainer:
    """A training run of ``model`` (anything with ``.loss(x, generator)`` returning per-example
    ``objective`` and ``total`` bits/dim) on the data of ``config``.

    Args:
        config: the run.
        model: the freshly initialised model (ignored weights if resuming).
        export: ``export(path, ema_model, metadata)`` writes the prior file
            (:func:`invdiff.priors.checkpoint.save_prior` for VDMs).
        images: preloaded data (default: :func:`load_image_sets` of ``config.data``).

    Raises:
        OutputExistsError: a fresh run (neither ``resume`` nor ``overwrite``) would write over
            an earlier run's prior, resume file or log (:func:`check_run_outputs`).
    """

    def __init__(self, config: TrainConfig, model: nn.Module, export: ExportFn,
                 images: ImageSets | None = None):
        check_run_outputs(config.output, config.resume, config.overwrite)
        self.config, self.export = config, export
        self.info = tdist.setup(config.device)
        self.device = self.info.device
        self.images = images if images is not None else load_image_sets(config.data)
        self.output = Path(config.output)
        self.model = model.to(self.device).train()
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, config.weight_decay), lr=config.lr, betas=config.betas
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, config.warmup_steps, config.cooldown_steps, config.max_steps),
        )
        # augmentation: identical on all ranks (drawn for the global batch); loss noise and the
        # global generators (dropout): per rank
        torch.manual_seed(config.seed * 65_537 + 3 + self.info.rank)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(config.seed * 65_537 + 3 + self.info.rank)
        self.gen_augment = torch.Generator().manual_seed(config.seed + 1)
        self.gen_loss = torch.Generator(self.device).manual_seed(
            config.seed * 65_537 + 2 + self.info.rank
        )
        self.stream = BatchStream(len(self.images.train), config.batch_size, config.seed,
                                  self.info.rank, self.info.world_size)
        self.step_count = 0
        self.images_seen = 0
        self.last_val: float | None = None
        if config.resume:
            self._load(resume_path(self.output))
        loss_module: nn.Module = _LossModule(self.model)
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            loss_module = DistributedDataParallel(loss_module, device_ids=ids)
        if config.compile:
            _compile_in_place(self.model, loss_module)
        self.loss_module = loss_module
        # overwrite: an old log is replaced at the first checkpoint, never appended to
        self.log = JsonlLog(log_path(self.output), enabled=self.info.is_main,
                            replace=config.overwrite)
        if config.resume:  # rows written after the checkpoint we resume from are replayed
            self.log.drop_after(self.step_count)

    # -- one step ----------------------------------------------------------------------------
    def _batch(self) -> Tensor:
        gidx, lidx = self.stream.next_indices()
        x = self.images.train[lidx].to(self.device, torch.float32)
        aug = self.config.augment
        if aug.enabled:
            params = sample_augment(len(gidx), aug, self.gen_augment)
            local = len(lidx)
            r = self.info.rank
            x = apply_augment(x, params[r * local : (r + 1) * local], aug.interpolation)
        return x

    def step(self) -> tuple[Tensor, Tensor, Tensor]:
        """One optimiser step; returns detached ``(loss, bpd, grad_norm)`` of this rank."""
        x = self._batch()
        with self._autocast():
            objective, total = self.loss_module(x, self.gen_loss)
        loss = objective.float().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        self.optimizer.step()
        self.scheduler.step()
        self._update_ema()
        self.step_count += 1
        self.images_seen += self.config.batch_size
        return loss.detach(), total.detach().float().mean(), grad_norm.detach()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @torch.no_grad()
    def _update_ema(self) -> None:
        n = self.step_count
        d = min(self.config.ema_decay, (1.0 + n) / (10.0 + n))
        for pe, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            pe.lerp_(p.detach(), 1.0 - d)
        for be, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            be.copy_(b)

    # -- validation, checkpoints ---------------------------------------------------------------
    def validate(self) -> float | None:
        """Mean bits/dim of the EMA model on the first ``val_size`` held-out images (fp32)."""
        val = self.images.val[: self.config.val_size]
        if len(val) == 0:
            return None
        g = torch.Generator(self.device).manual_seed(VAL_SEED)
        totals = []
        for i in range(0, len(val), self.config.val_batch_size):
            x = val[i : i + self.config.val_batch_size].to(self.device, torch.float32)
            with torch.no_grad():
                totals.append(self.ema.loss(x, g).total.detach().float())
        return float(torch.cat(totals).mean())

    def checkpoint(self) -> None:
        """Export the EMA prior and write the resume file (rank 0), atomically."""
        own = rank_rng_states({"loss": self.gen_loss}, self.device)
        rng = {f"{k}_rank{r}": v for k in sorted(own)
               for r, v in enumerate(tdist.all_gather(own[k], self.info))}
        rng["gen_augment"] = self.gen_augment.get_state()
        if self.info.is_main:
            meta = {"step": self.step_count, "images_seen": self.images_seen,
                    "val_bpd": self.last_val, "train_config": config_to_dict(self.config)}
            with atomic_write(self.output) as tmp:
                self.export(tmp, self.ema, meta)
            save_resume(resume_path(self.output), self._state(rng))
            self.log.commit()  # (overwrite) the new run's log replaces the old one now
        tdist.barrier(self.info)

    def _state(self, rng: dict[str, Tensor]) -> ResumeState:
        return ResumeState(
            model=self.model.state_dict(),
            ema=self.ema.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=rng,
            meta={"step": self.step_count, "images_seen": self.images_seen,
                  "val_bpd": self.last_val, "data": self.stream.state_dict(),
                  "world_size": self.info.world_size, "config": config_to_dict(self.config)},
        )

    def _load(self, path: Path) -> None:
        state = load_resume(path)
        if self.config.init_sha256 is None:  # the start weights are in the state, not re-read
            self.config = dataclasses.replace(
                self.config, init_sha256=state.meta["config"].get("init_sha256"))
        diff = config_mismatch(state.meta["config"], self.config)
        if diff:
            raise ValueError(f"cannot resume {path}: settings changed since it was written: "
                             f"{describe_mismatch(state.meta['config'], self.config, diff)}; "
                             "repeat the run's settings, or start afresh with --overwrite")
        if state.meta["world_size"] != self.info.world_size:
            raise ValueError(f"cannot resume {path}: written by {state.meta['world_size']} "
                             f"ranks, now {self.info.world_size} (the noise streams differ)")
        load_module_state(self.model, state.model, "model")
        load_module_state(self.ema, state.ema, "EMA model")
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        # the next step's rate from this run's schedule (a cooldown may be set on resume)
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * factor
        self.stream.load_state_dict(state.meta["data"])
        self.step_count = int(state.meta["step"])
        self.images_seen = int(state.meta["images_seen"])
        self.last_val = state.meta.get("val_bpd")
        set_rank_rng_states(state.rng, {"loss": self.gen_loss}, self.device,
                            suffix=f"_rank{self.info.rank}")
        if "gen_augment" not in state.rng:
            raise ValueError(f"resume file {path} has no augmentation generator state")
        self.gen_augment.set_state(state.rng["gen_augment"])

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train until ``max_steps`` or ``max_minutes``; return the prior file's path.

        Raises:
            TrainingInterrupted: SIGINT/SIGTERM stopped the run (after finishing the step and
                writing the prior and resume file).
        """
        cfg, info = self.config, self.info
        display = RunDisplay(self.step_count, cfg.max_steps, cfg.max_minutes,
                             enabled=info.is_main and cfg.progress)
        params = sum(p.numel() for p in self.model.parameters())
        display.message(
            f"training on {self.device} x{info.world_size}: {len(self.images.train)} images, "
            f"{len(self.images.val)} held out, batch {cfg.batch_size}, step {self.step_count}, "
            f"model {params / 1e6:.2f} M parameters"
        )
        if cfg.val_every and len(self.images.val) == 0:
            display.message("no held-out images, so no validation bits/dim: pass validation "
                            "data (--val-data) or several volumes")
        if self.step_count >= cfg.max_steps:
            display.message(f"already at step {self.step_count} (>= {cfg.max_steps} steps): "
                            "nothing to train; raise the step count to continue")
            display.close()
            tdist.teardown(info)
            return self.output
        t0 = time.monotonic()
        acc = torch.zeros(3, device=self.device)
        window_t, window_n = time.monotonic(), 0
        last_ckpt = self.step_count
        interrupted = False
        stop = _StopFlag()
        try:
            with stop.installed():
                while self.step_count < cfg.max_steps:
                    loss, bpd, gn = self.step()
                    acc += torch.stack([loss, bpd, gn.float()])
                    window_n += 1
                    s = self.step_count
                    out_of_time = (cfg.max_minutes is not None
                                   and time.monotonic() - t0 > cfg.max_minutes * 60.0)
                    # both reasons agreed across ranks (their clocks differ by a step or so)
                    out_of_time, interrupted = tdist.any_ranks([out_of_time, stop.requested],
                                                               info)
                    stopping = out_of_time or interrupted
                    # the last step is always logged, also when time or a signal ends the run
                    if s % cfg.log_every == 0 or s == cfg.max_steps or stopping:
                        m = tdist.all_mean(acc / window_n, info).tolist()
                        if not all(math.isfinite(v) for v in m):
                            saved = (f"last checkpoint: step {last_ckpt}" if last_ckpt > 0
                                     else "no checkpoint written")
                            raise FloatingPointError(
                                f"loss became non-finite by step {s} ({saved}); lower lr or "
                                "check the data"
                            )
                        ips = window_n * cfg.batch_size / max(time.monotonic() - window_t, 1e-9)
                        lr = self.scheduler.get_last_lr()[0]
                        self.log.write({"step": s, "loss": m[0], "bpd": m[1], "grad_norm": m[2],
                                        "lr": lr, "images_per_s": ips,
                                        "elapsed_s": time.monotonic() - t0})
                        display.update(s, m[0], m[1], ips, lr)
                        acc.zero_()
                        window_t, window_n = time.monotonic(), 0
                    if cfg.val_every and s % cfg.val_every == 0:
                        self._validate_and_log(display)
                    if stopping:
                        interrupted = interrupted and not out_of_time
                        display.message(f"stopping at step {s}: "
                                        + ("interrupted" if interrupted else "time budget reached"))
                        break
                    if s % cfg.ckpt_every == 0:
                        self.checkpoint()
                        last_ckpt = s
            if self.step_count != last_ckpt or not self.output.exists():
                self.checkpoint()
            display.message(f"step {self.step_count}: wrote {self.output} and "
                            f"{resume_path(self.output)}")
        finally:
            display.close()
            tdist.teardown(info)
        if interrupted:  # checkpointed; the caller still learns that the run did not finish
            raise TrainingInterrupted(f"interrupted at step {self.step_count}; {self.output} and "
                                      f"{resume_path(self.output)} hold it (continue with resume)")
        return self.output

    def _validate_and_log(self, display: RunDisplay) -> None:
        if self.info.is_main:
            v = self.validate()
            if v is not None:
                self.last_val = v
                self.log.write({"step": self.step_count, "val_bpd": v})
                display.validation(self.step_count, v)


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request to stop after the current step (main thread only)."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            if self.requested:  # second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.requested = True

        for s in old:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _compile_in_place(model: nn.Module, loss_module: nn.Module) -> None:
    """``torch.compile`` the eps network ``model.net`` where there is one (the VDM's heavy part;
    its schedule's variance-gradient hook is not traceable), else the whole loss module.
    ``Module.compile`` works in place, so state-dict keys and checkpoints are unchanged."""
    net = getattr(model, "net", None)
    (net if isinstance(net, nn.Module) else loss_module).compile()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and kernels only; none on biases, norms and scalar parameters
    (the learned schedule's endpoints must not be pulled towards 0)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT/SIGTERM after writing its checkpoint (resumable)."""


def train(config: TrainConfig) -> Path:
    """Train a VDM prior as configured; returns the path of the exported (EMA) prior file.

    Builds ``VDM(config.model)`` with weights seeded by ``config.seed`` and exports with
    :func:`invdiff.priors.checkpoint.save_prior`. Under ``torchrun`` every rank calls this.

    Raises:
        OutputExistsError: ``config.output``, its resume file or its log exists and neither
            ``config.resume`` nor ``config.overwrite`` is set (checked before anything else).
        TrainingInterrupted: stopped by SIGINT/SIGTERM, checkpoint written (a KeyboardInterrupt).
    """
    from invdiff.priors.checkpoint import save_prior
    from invdiff.priors.vdm import VDM

    check_run_outputs(config.output, config.resume, config.overwrite)
    torch.manual_seed(config.seed)  # the U-Net uses torch's default initialisers
    model = VDM(config.model, generator=torch.Generator().manual_seed(config.seed))
    if config.init is not None and not config.resume:
        digest = sha256_file(Path(config.init))
        if config.init_sha256 not in (None, digest):
            raise ValueError(f"--init {config.init}: its SHA-256 is {digest}, not the "
                             f"{config.init_sha256} asked for")
        config = dataclasses.replace(config, init_sha256=digest)
        init_weights(model, config.init)
    return Trainer(config, model, _save_prior_export(save_prior)).run()


#: Model settings without weights of their own: fine-tuning (``init``) may change them.
NO_WEIGHTS = ("dropout",)


def init_weights(model: nn.Module, path: str | Path) -> None:
    """Load the weights of the prior file ``path`` into ``model`` (fine-tuning start).

    Raises:
        ValueError: the file's model configuration differs from ``model.config`` in more than
            the dropout rate (which has no weights: fine-tuning may change it).
    """
    from invdiff.priors.checkpoint import load_prior

    source = load_prior(path)
    if source.config.differences(model.config, ignore=NO_WEIGHTS):
        raise ValueError(f"--init {path}: its model configuration differs from the one asked "
                         "for (leave --preset, --image-size and --channels out to take the "
                         "file's)")
    model.load_state_dict(source.model.state_dict())


def _save_prior_export(save_prior: Any) -> ExportFn:
    def export(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
        save_prior(path, model, metadata=meta)

    return export
