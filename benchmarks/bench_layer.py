"""LAP forward+backward time and peak memory against avg/max pooling (same run, same tensors).

Run: ``.venv/bin/python benchmarks/bench_layer.py`` (the same as ``torchlap bench layer``).
"""

import argparse

import torch

from torchlap.bench.layer import run_layer_command

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of every batch size")
    parser.add_argument("--batches", default="32,1", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of 3 calls")
    args = parser.parse_args()
    print(run_layer_command(args.device, args.scale, args.batches, args.rounds))
