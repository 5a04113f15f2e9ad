"""``evaluate_run``'s callbacks: ``on_checked()`` once, after every check and before any method
runs; ``on_method(method, seconds)`` per method computed, with the seconds it took; and
``write_report=False``: results.json and the method caches alone."""

from __future__ import annotations

import time

from torchlap.evaluate import EvaluateOptions, evaluate_run

OPTIONS = dict(
    methods=("gradcam",), ks=(50,), stability_images=1, stability_fractions=(0.2,),
    batch_size=8, max_images=4, max_val_images=4, examples=False, bootstrap_resamples=20,
)  # fmt: skip


def test_on_checked_comes_first_and_on_method_gets_the_seconds_taken(lap_run, tmp_path) -> None:
    events: list[tuple] = []
    started = time.perf_counter()
    out = tmp_path / "eval"
    evaluate_run(
        lap_run, out=out, options=EvaluateOptions(**OPTIONS), write_report=False,
        on_method=lambda method, seconds: events.append((method, seconds)),
        on_checked=lambda: events.append(("checked",)),
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert [event[0] for event in events] == ["checked", "gradcam"]
    seconds = events[1][1]
    assert 0 < seconds <= elapsed
    assert sorted(p.name for p in out.iterdir()) == ["methods", "results.json"]
