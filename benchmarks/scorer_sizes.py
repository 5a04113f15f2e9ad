"""The fused CPU LAP layer against the per-op path as the concept scorer grows.

Run: ``.venv/bin/python benchmarks/scorer_sizes.py [--concepts 8,16,32,64,128,256]``

The fused layer's 1x1 convolution keeps 8 outputs per pass in registers; the per-op path runs
the scorer as PyTorch GEMMs (``bmm``). This times one LAP layer's forward+backward (k2 s2,
hidden 0, ``"conv"`` aggregation: the paper's ImageNet scorer, which has 1000 concepts) both
ways, with the two paths taking turns (``TORCHLAP_FUSED_LAYER=0`` for the per-op one), and
prints fused / per-op per concept count: the numbers behind ``MAX_FUSED_HEADS`` in
``torchlap.layers.fused`` (beyond it the layer takes the per-op path by itself; here both
paths are forced).
"""

from __future__ import annotations

import argparse
import os

import torch

from torchlap.allocator import keep_freed_memory
from torchlap.bench.common import measure
from torchlap.layers import fused
from torchlap.layers.lap import LocalAttentionPool2d

SHAPES = [(8, 1024, 14, 14), (8, 256, 28, 28), (1, 1024, 14, 14)]


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concepts", default="8,16,32,64,128,256", help="concept counts")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    keep_freed_memory()
    limit, switch = fused.MAX_FUSED_HEADS, os.environ.get("TORCHLAP_FUSED_LAYER")
    fused.MAX_FUSED_HEADS = 1 << 30  # both paths at every size
    print(f"# LAP forward+backward, ms (best call); {torch.get_num_threads()} threads")
    print("| input shape | concepts | fused ms | per-op ms | fused / per-op |")
    print("|---|---|---|---|---|")
    try:
        for shape in SHAPES:
            for concepts in (int(n) for n in args.concepts.split(",")):
                torch.manual_seed(0)
                x = torch.randn(shape, requires_grad=True)
                lap = LocalAttentionPool2d(
                    shape[1], 2, n_concepts=concepts, hidden_channels=0, aggregation="conv"
                )
                with torch.no_grad():
                    for parameter in lap.parameters():
                        parameter.normal_(std=0.1)

                def run(flag: str, lap=lap, x=x) -> None:
                    os.environ["TORCHLAP_FUSED_LAYER"] = flag
                    lap(x).sum().backward()
                    x.grad = None
                    lap.zero_grad(set_to_none=True)
                    lap.clear_maps()

                times = measure(
                    {"fused": lambda: run("1"), "per-op": lambda: run("0")},
                    torch.device("cpu"),
                    repeats=3,
                    rounds=args.rounds,
                )
                one, other = times["fused"].seconds * 1e3, times["per-op"].seconds * 1e3
                print(
                    f"| {shape} | {concepts} | {one:.2f} | {other:.2f} | {one / other:.2f} |",
                    flush=True,
                )
    finally:
        fused.MAX_FUSED_HEADS = limit
        if switch is None:
            os.environ.pop("TORCHLAP_FUSED_LAYER", None)
        else:
            os.environ["TORCHLAP_FUSED_LAYER"] = switch


if __name__ == "__main__":
    main()
