"""Generation speed of the built-in benchmarks: images per second at 64x64 on one core.

Run: ``python benchmarks/bench_data.py [--image-size 64] [--n-images 4096] [--threads 1]``.
Prints wall-clock and process-CPU throughput (the second is robust to other load on the
machine) for generating and caching a fresh split, as a training run would.
"""

from __future__ import annotations

import argparse
import time

import torch

from torchlap.data import builtin_dataset, builtin_names


def measure(name: str, image_size: int, n_images: int) -> tuple[float, float]:
    """(images/s wall, images/s CPU) for materializing ``n_images`` images of ``name``."""
    builtin_dataset(name, n_images=64, image_size=image_size).materialize()  # warm caches
    dataset = builtin_dataset(
        name, n_images=n_images, image_size=image_size, split_fractions=(1.0, 0.0, 0.0)
    )
    wall, cpu = time.perf_counter(), time.process_time()
    dataset.materialize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n_images / wall, n_images / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n-images", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"built-in generation, {args.image_size}x{args.image_size}, {args.threads} thread(s)")
    for name in builtin_names():
        wall, cpu = measure(name, args.image_size, args.n_images)
        print(f"{name:9s} {wall:8.0f} images/s (wall)  {cpu:8.0f} images/s (CPU)")


if __name__ == "__main__":
    main()
