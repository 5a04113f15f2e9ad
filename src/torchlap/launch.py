"""Who started this process: the one owner of torchlap's launcher detection.

``torchlap train`` and ``torchlap evaluate``/``compare`` both refuse ``--num-nodes M > 1``
without a launcher (the other nodes' processes would never come, and the run would wait
forever), and sharded evaluation starts its own processes only when no launcher did.
"""

from __future__ import annotations

import os

__all__ = ["external_launcher", "multi_node_launcher", "require_multi_node_launcher"]


def external_launcher() -> bool:
    """Whether torchrun or SLURM started the processes (Lightning's detection)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    return TorchElasticEnvironment.detect() or SLURMEnvironment.detect()


def multi_node_launcher() -> bool:
    """Whether the other nodes' processes are started by someone else: torchrun, SLURM, or the
    manual launch Lightning documents (the same command on each node with ``MASTER_ADDR``,
    ``MASTER_PORT`` and ``NODE_RANK`` set). Without one, ``--num-nodes M > 1`` waits forever
    for nodes that never come."""
    manual = bool(os.environ.get("MASTER_ADDR")) and bool(os.environ.get("NODE_RANK"))
    return manual or external_launcher()


def require_multi_node_launcher(num_nodes: int, command: str) -> None:
    """Raise ``ValueError`` when ``num_nodes > 1`` and :func:`multi_node_launcher` finds none;
    the message gives the torchrun and srun forms of ``torchlap COMMAND``."""
    if num_nodes > 1 and not multi_node_launcher():
        raise ValueError(
            f"--num-nodes {num_nodes} needs a launcher that starts the processes of every node, "
            "and none was detected (torchrun, SLURM, or MASTER_ADDR/NODE_RANK set on each node): "
            f"run `torchrun --nnodes {num_nodes} --nproc-per-node N --rdzv-backend c10d "
            f"--rdzv-endpoint HOST:PORT -m torchlap.cli {command} ...` on every node, or `srun "
            f"torchlap {command} ...` in a SLURM job of {num_nodes} nodes; on one machine pass "
            "--num-nodes 1"
        )
