"""Data-parallel training with ``torch.distributed``: one mechanism every trainer uses.

Launch any trainer under ``torchrun`` (``torchrun --nproc-per-node N -m cellxfer train-count ...``, or
``srun torchrun ...`` on SLURM). torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous
variables; :func:`distributed` reads them, starts the process group (``nccl`` for CUDA devices, ``gloo`` on
the CPU) and yields a :class:`Distributed`. Without those variables (a plain ``cellxfer`` run) it yields
the single-process context, whose every method is the identity: the trainer runs exactly as before.

Invariants (why N processes train like one process with the same seed and global batch):

- **Shared data stream, split batches.** Every rank draws the *global* batch from the same seeded
  generator a single process uses (as ``DistributedSampler`` does: one shared permutation, disjoint
  shares) and keeps rows :meth:`Distributed.shard` of it. Cheap host-side work (crops, flips) is thus
  repeated on every rank; the model's forward and backward pass is split.
- **Global-batch gradients.** DDP averages gradients over ranks; :meth:`Distributed.loss_weight` scales
  each rank's mean loss by ``local rows x world / global rows``, so the averaged gradient is the gradient
  of the global batch's mean loss, also when the batch does not divide evenly (the first
  ``batch mod world`` ranks take one row more). A batch with fewer rows than ranks (only the last, short
  batch of a counter epoch can be one) is skipped by every rank: :meth:`shard` returns None.
- **Batch norm.** On CUDA, :meth:`wrap` converts BatchNorm to SyncBatchNorm, so batch statistics are the
  global batch's. torch has no CPU SyncBatchNorm: under ``gloo`` each rank normalises by its own rows'
  statistics, which differs from one process (networks with group norm or none are unaffected).
- **Per-rank randomness.** :meth:`seed` keeps a trainer's torch seed on rank 0 and derives another one per
  rank from it, so dropout and other in-model noise differ between ranks but are reproducible.
- **One writer.** Only :attr:`is_main` writes checkpoints, logs and manifests; checkpoints hold the
  unwrapped module (:meth:`unwrap`) and no per-rank state, so ``--resume`` works at any world size.
  :meth:`describe` goes into every manifest (world size, backend).

Adding a trainer (e.g. ``adapt-count``): run its body in ``with distributed(device) as dist:`` and

1. train on ``dist.device``; ``dist.check_batch(batch_size)``;
2. seed in-model noise with ``torch.manual_seed(dist.seed(seed))``, or call :meth:`fork_torch_rng`
   after building the model from one seed;
3. ``net = dist.wrap(model)`` for the training forward; evaluate and save ``model``;
4. per step draw the global batch as one process would, keep ``rows = dist.shard(n)``, backward
   ``loss * dist.loss_weight(rows, n)``, log ``dist.mean(loss_value, rows, n)``;
5. evaluate with :meth:`map_shared` (or on ``is_main`` alone); write only ``if dist.is_main``, then
   ``dist.barrier()``; put ``distributed=dist.describe()`` in the manifest.

:func:`cellxfer.train.counter.train_counter` is the fullest example (validation, EMA, resume).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np

from cellxfer.errors import InputError

T = TypeVar("T")
R = TypeVar("R")
ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run (see module docs). ``Distributed()`` is one process."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch(self, batch_size: int, option: str = "--batch-size") -> None:
        """InputError when a global batch of ``batch_size`` rows leaves some rank without any."""
        if batch_size < self.world_size:
            raise InputError(f"{option} {batch_size} is smaller than the {self.world_size} processes torchrun started; "
                             f"give a global batch of at least {self.world_size} (it is split across processes)")

    def shard(self, n: int) -> slice | None:
        """This rank's rows of a global batch of ``n`` rows (contiguous, sizes differing by at most one),
        or None when ``n`` is smaller than the world (every rank then skips the batch)."""
        if n < self.world_size:
            return None
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def loss_weight(self, rows: slice, n: int) -> float:
        """Factor for this rank's mean loss over ``rows`` so DDP's gradient average is the mean over all ``n``."""
        return 1.0 if not self.active else (rows.stop - rows.start) * self.world_size / n

    def seed(self, seed: int, *more: int) -> int:
        """Torch seed of this rank: ``seed`` itself on rank 0, one derived from (seed, more, rank) elsewhere."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, *more, self.rank, 18]).generate_state(1)[0])

    def fork_torch_rng(self, seed: int, *more: int) -> None:
        """Reseed torch's global generator on ranks other than 0 (from seed, more, rank), so in-model noise
        such as dropout differs between ranks; rank 0 keeps its stream (the one a single process has)."""
        if self.rank:
            import torch

            torch.manual_seed(self.seed(seed, *more))

    def wrap(self, model):
        """``model`` for the training forward: itself in one process, else DDP over it (SyncBatchNorm on CUDA).
        Parameters are shared with ``model`` (build optimizers on either); evaluate and save ``model``
        (:meth:`unwrap`) so that ranks never wait for each other outside the training step."""
        if not self.active:
            return model
        import torch

        if self.device.startswith("cuda"):
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.local_rank])
        return torch.nn.parallel.DistributedDataParallel(model)

    @staticmethod
    def unwrap(model):
        """The module inside a DDP wrapper (or ``model`` itself)."""
        return getattr(model, "module", model)

    def mean(self, value: float, rows: slice | None, n: int) -> float:
        """Mean over the global batch of a per-row mean ``value`` over this rank's ``rows`` of ``n``."""
        if not self.active:
            return float(value)
        import torch
        import torch.distributed as dist

        share = 0.0 if rows is None else (rows.stop - rows.start) / n
        t = torch.tensor([float(value) * share], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return float(t.item())

    def map_shared(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]`` on every rank, each rank computing every ``world_size``-th item
        (``fn`` must not use collectives: call it on the unwrapped model)."""
        if not self.active:
            return [fn(x) for x in items]
        import torch.distributed as dist

        mine = {i: fn(items[i]) for i in range(self.rank, len(items), self.world_size)}
        parts: list = [None] * self.world_size
        dist.all_gather_object(parts, mine)
        merged = {k: v for part in parts for k, v in part.items()}
        return [merged[i] for i in range(len(items))]

    def barrier(self) -> None:
        """Wait for every rank (e.g. after rank 0 wrote a file the others read)."""
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def describe(self) -> dict:
        """What the manifest records: world size, backend (None in one process), launcher."""
        return {"world_size": self.world_size, "backend": self.backend,
                "launcher": "torchrun" if self.active else None}

    def _comm_device(self) -> str:
        return self.device if self.backend == "nccl" else "cpu"


def from_env(device: str = "cpu", env: dict | None = None) -> Distributed:
    """The :class:`Distributed` that torchrun's variables in ``env`` (default ``os.environ``) describe
    for a trainer asked to use ``device`` (cpu, cuda, or auto: cuda when there is one, resolved here);
    one process on ``device`` when ``WORLD_SIZE`` is unset or 1."""
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", "1")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world <= 1:
        return Distributed(device=device)
    missing = [k for k in ENV if k not in env]
    if missing:
        raise InputError(f"WORLD_SIZE={world} but {', '.join(missing)} unset: start data-parallel training with torchrun")
    rank, local = _env_int(env, "RANK"), _env_int(env, "LOCAL_RANK")
    if device.startswith("cuda"):
        if device != "cuda":
            raise InputError(f"--device {device}: under torchrun pass --device cuda; process LOCAL_RANK uses cuda:LOCAL_RANK")
        import torch

        if local >= torch.cuda.device_count():
            raise InputError(f"torchrun process LOCAL_RANK={local} needs cuda:{local} but {torch.cuda.device_count()} GPU(s) "
                             f"are visible; start at most that many processes per node (--nproc-per-node)")
        return Distributed(world, rank, local, "nccl", f"cuda:{local}")
    if device != "cpu":
        raise InputError(f"--device {device}: data-parallel training supports cpu (gloo) and cuda (nccl)")
    return Distributed(world, rank, local, "gloo", "cpu")


def _env_int(env, name: str, default: str = "") -> int:
    """torchrun's variable ``name`` of ``env`` as a whole number of at least 0 (``default`` when unset or
    empty); anything else is an :class:`InputError` naming it."""
    text = (env.get(name) or default).strip()
    if not (text.isascii() and text.isdigit()):
        raise InputError(f"{name}={text!r}: not a process count or rank; start data-parallel training with torchrun, "
                         f"or unset {', '.join(ENV)} to train in one process")
    return int(text)


@contextlib.contextmanager
def distributed(device: str = "cpu") -> Iterator[Distributed]:
    """The run's :class:`Distributed` (see :func:`from_env`). The process group is started on first use
    and kept until the process exits, so one process may run several trainers (a group started anew
    would find the old group's addresses in torchrun's store); a group the caller started is used as is."""
    ctx = from_env(device)
    if ctx.active:
        import atexit

        import torch
        import torch.distributed as dist

        if ctx.backend == "nccl":
            torch.cuda.set_device(ctx.local_rank)
        if not dist.is_initialized():
            dist.init_process_group(ctx.backend)
            atexit.register(_destroy)
    yield ctx


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
