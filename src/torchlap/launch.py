"""Who started this process: the one owner of torchlap's launcher detection.

``torchlap train`` and ``torchlap evaluate``/``compare`` both refuse ``--num-nodes M > 1``
without a launcher (the other nodes' processes would never come, and the run would wait
forever), and sharded evaluation starts its own processes only when no launcher did.
"""

from __future__ import annotations

import os

__all__ = ["external_launcher", "multi_node_launcher"]


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
