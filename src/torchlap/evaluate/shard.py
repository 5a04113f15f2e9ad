"""Sharded evaluation: ``torchlap evaluate``/``compare --devices N --num-nodes M``.

The processes are started by Lightning Fabric (strategy ``ddp``, the launcher ``torchlap train
--devices`` uses through Lightning's Trainer: rank 0 is the command itself, the other local
ranks re-run the same command line; under ``torchrun`` or SLURM the launcher has already
started them). The process group is gloo on the CPU and nccl on CUDA.

What is sharded: every explanation pass (:func:`torchlap.evaluate.core.explain_all`: the maps
of the evaluation images, of the validation images that fit the global threshold, of the noisy
copies of the stability subset, of the sanity checks). The images are cut into the same batches
as one process uses (``batch_size`` images from the first one) and each rank explains a
contiguous run of whole batches, so every batch, and thus every map, is the one a single
process computes. The maps are gathered on every rank in image order.

What stays global: everything after the maps (the threshold fitted on the pooled validation
maps, every metric and its aggregate, the tie-breaks and stability noise seeded per image, the
stability and LIME subsets) is computed from the gathered maps, identically on every rank.
Only rank 0 writes files; the per-method caches are read by rank 0 and its decision is
broadcast, so that every rank computes (or reuses) the same methods.

A Python script may shard more than once (as it may call a Lightning ``Trainer.fit`` more than
once): the ranks Lightning started re-run the whole script, and the launcher's variables
(``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``NODE_RANK``) stay set in
every process afterwards, as Lightning leaves them, so that each later launch joins the ranks
already running instead of starting new ones. Removing them after a launch would make the next
one start a second set of processes while the first set waits in the script's next launch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from torchlap.launch import (
    claim_worker_report,
    ended_workers,
    external_launcher,
    parse_devices,
    require_multi_node_launcher,
    say_when_a_worker_dies,
    usable_cpu_cores,
    worker_failure,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ShardContext",
    "ShardPlan",
    "active",
    "broadcast_from_zero",
    "check_sharding",
    "gather_rows",
    "is_writer",
    "launch_sharded",
    "on_rank_zero",
    "shard_bounds",
    "sharding",
]

T = TypeVar("T")


@dataclass(frozen=True)
class ShardContext:
    """The process group of a sharded evaluation: this process's ``rank`` among
    ``world_size`` and the device its collective tensors live on (CUDA for nccl)."""

    rank: int
    world_size: int
    device: torch.device


_active: ShardContext | None = None


def active() -> ShardContext | None:
    """The sharding in effect (``None``: one process, nothing is sharded)."""
    return _active


def is_writer() -> bool:
    """Whether this process writes files: rank 0, or the only process."""
    return _active is None or _active.rank == 0


@contextmanager
def sharding(context: ShardContext | None) -> Iterator[ShardContext | None]:
    """Make ``context`` the sharding of the evaluation code while the block runs."""
    global _active
    previous, _active = _active, context
    try:
        yield context
    finally:
        _active = previous


def shard_bounds(n: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Images ``[start, stop)`` of ``rank``: a contiguous run of whole batches.

    The ``ceil(n / batch_size)`` batches of one process (batch ``b`` holds images
    ``b * batch_size`` to ``(b + 1) * batch_size - 1``) are dealt as evenly as possible,
    rank ``r`` getting batches ``floor(B r / W)`` to ``floor(B (r + 1) / W) - 1``; a rank may
    get none when there are fewer batches than processes.
    """
    for name, value, low in (
        ("n", n, 0),
        ("batch_size", batch_size, 1),
        ("world_size", world_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    batches = -(-n // batch_size)
    first, last = batches * rank // world_size, batches * (rank + 1) // world_size
    return min(first * batch_size, n), min(last * batch_size, n)


def gather_rows(local: Tensor | None, context: ShardContext) -> Tensor:
    """Concatenate every rank's rows in rank order, on every rank (a padded all-gather).

    ``local`` is this rank's ``(n_r, ...)`` tensor, ``None`` for a rank without images (it
    takes the trailing shape and dtype of the others). Returned on the CPU, as
    :func:`~torchlap.evaluate.core.explain_all` returns its maps.
    """
    import torch.distributed as dist

    meta = None if local is None else (int(local.shape[0]), tuple(local.shape[1:]), local.dtype)
    metas: list[Any] = [None] * context.world_size
    dist.all_gather_object(metas, meta)
    known = [m for m in metas if m is not None]
    if not known:
        raise ValueError("gather_rows: no rank has any rows to gather")
    _, tail, dtype = known[0]
    if any(m[1] != tail or m[2] != dtype for m in known):
        raise ValueError(f"ranks hold rows of different shapes or dtypes: {known}")
    counts = [0 if m is None else m[0] for m in metas]
    width = max(counts)
    padded = torch.zeros((width, *tail), dtype=dtype, device=context.device)
    if local is not None and local.shape[0]:
        padded[: local.shape[0]] = local.to(context.device)
    parts = [torch.empty_like(padded) for _ in range(context.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)]).cpu()


def broadcast_from_zero(value: T) -> T:
    """Rank 0's ``value`` on every rank (unchanged without sharding); any picklable object."""
    if _active is None or _active.world_size == 1:
        return value
    import torch.distributed as dist

    box = [value if _active.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_rank_zero(function: Callable[[], T]) -> T:
    """``function()`` computed by rank 0 alone and broadcast (for a global step that would
    otherwise be computed identically by every rank, such as the LIME check)."""
    if _active is None or _active.world_size == 1:
        return function()
    value = function() if _active.rank == 0 else None
    return broadcast_from_zero(value)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- launching


@dataclass(frozen=True)
class ShardPlan:
    """The checked ``--devices``/``--num-nodes``/``--device`` of a sharded evaluation."""

    accelerator: str
    devices: int | list[int]
    num_nodes: int
    world_size: int


def check_sharding(devices: str | int, num_nodes: int, device: str) -> ShardPlan:
    """Check ``--devices``, ``--num-nodes`` and ``--device`` before any process is started
    (an error found by each process would be printed once per process).

    CPU (``--device cpu``): ``devices`` processes per node, at most the CPU cores this process
    may use. CUDA (``--device cuda``): one process per GPU, at most the GPUs present; with more
    than one, ``--device`` must not name an index (``--devices 0,1`` chooses the GPUs).
    ``num_nodes`` > 1 only under a launcher that starts the other nodes' processes (torchrun,
    SLURM, or ``MASTER_ADDR``/``NODE_RANK`` set on each node); refused otherwise (it would wait
    forever for them).
    """
    count = parse_devices(devices)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"--num-nodes must be an int >= 1, got {num_nodes!r}")
    require_multi_node_launcher(num_nodes, "evaluate")  # (compare shares the rule)
    kind = torch.device(device).type
    n_local = len(count) if isinstance(count, list) else count
    world = n_local * num_nodes
    if world == 1 and not isinstance(count, list):
        return ShardPlan("cpu" if kind == "cpu" else kind, 1, 1, 1)
    if kind == "cpu":
        if isinstance(count, list):
            raise ValueError(
                f"--devices {devices!r} lists device ids, which only CUDA has; with --device cpu "
                "pass a process count such as --devices 2"
            )
        cores = usable_cpu_cores()
        if n_local > cores:
            raise ValueError(
                f"--devices {n_local} asks for {n_local} processes but this machine has {cores} "
                f"CPU cores; pass --devices between 1 and {cores}"
            )
        return ShardPlan("cpu", count, num_nodes, world)
    if kind != "cuda":
        raise ValueError(
            f"--devices/--num-nodes shard over CPU processes or CUDA GPUs; --device {device!r} "
            "is neither: pass --device cpu or cuda"
        )
    if torch.device(device).index is not None:
        raise ValueError(
            f"--device {device!r} names one GPU but --devices asks for {n_local}; pass "
            "--device cuda and choose the GPUs with --devices (a count, or ids such as 0,1)"
        )
    available = torch.cuda.device_count()
    largest = max(count) + 1 if isinstance(count, list) else n_local
    if largest > available:
        raise ValueError(
            f"--devices {devices!r} needs {largest} CUDA devices but this machine has "
            f"{available}; pass --devices between 1 and {available}"
        )
    return ShardPlan("cuda", count, num_nodes, world)


def launch_sharded(plan: ShardPlan, function: Callable[[], T]) -> T | None:
    """Run ``function()`` in every process of ``plan`` with its :class:`ShardContext` active.

    One process (world size 1, no external launcher): ``function()`` here, unsharded.
    Otherwise Lightning Fabric starts (or joins) the processes and the process group; rank 0
    returns ``function()``'s value, the other ranks return ``None`` after their share.
    """
    if plan.world_size == 1 and not external_launcher():
        return function()
    import warnings

    import torch.distributed as dist
    from lightning.fabric import Fabric

    # Lightning's per-rank banners (its rank-zero helper logs through lightning.pytorch once
    # that is imported): evaluate_run logs one line of its own
    owned = not dist.is_initialized()  # a caller's own process group is left alone
    quiet = [logging.getLogger(name) for name in ("lightning.fabric", "lightning.pytorch")]
    levels = [each.level for each in quiet]
    try:
        for each in quiet:
            each.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # Fabric's notes on its own defaults (seed, precision) are not the user's concern
            warnings.filterwarnings("ignore", module=r"lightning\.fabric.*")
            fabric = Fabric(
                accelerator=plan.accelerator,
                devices=plan.devices,
                num_nodes=plan.num_nodes,
                strategy="ddp",
            )
            fabric.launch()
        say_when_a_worker_dies("evaluation")
    finally:
        for each, level in zip(quiet, levels, strict=True):
            each.setLevel(level)
    device = fabric.device if dist.get_backend() == "nccl" else torch.device("cpu")
    context = ShardContext(fabric.global_rank, fabric.world_size, device)
    try:
        with sharding(context):
            value = function()
        dist.barrier()  # nobody leaves (and tears the group down) while another still works
    except Exception as error:
        # gloo's "Connection reset by peer" when a local rank this process started died: say
        # which and how (the watcher says it when this process was not waiting on the group)
        named = ended_workers(wait=3.0 if "by peer" in str(error) else 0.0)
        if named is None:
            raise
        if not claim_worker_report():
            raise SystemExit(1) from None  # the watcher said it, and ends this process
        raise RuntimeError(worker_failure("evaluation", named)) from error
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()
    return value if context.rank == 0 else None
