"""LAP forward+backward time and peak memory against avg/max pooling (same run, same tensors).

Run: ``.venv/bin/python benchmarks/bench_layer.py`` (or ``torchlap bench layer``).
"""

import argparse

import torch

from torchlap.layers.bench import format_rows, run_layer_benchmark

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the batch of 32")
    args = parser.parse_args()
    print(format_rows(run_layer_benchmark(device=args.device, scale=args.scale)))
