"""The shared checks and records of torchlap.metrics._common that no other metric test reached
(found by mutation testing): each refusal names the argument and what is accepted, at its
boundary; MetricResult's defaults; and every metric's direction, from the papers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from torchlap.metrics._common import (
    KEY_STREAMS,
    METRIC_DIRECTIONS,
    MetricResult,
    binarize_map,
    check_class_range,
    check_images,
    check_labels,
    check_maps,
    check_masks,
    higher_is_better,
    image_ids_of,
    normalize_by_max,
    run_model,
    tie_keys,
    top_k_mask,
)


def test_metric_directions_follow_the_papers():
    lower = {"drop_pct", "change_drop_pct", "change_inc_pct"}  # SISE Drop%, stability changes
    for name, higher in METRIC_DIRECTIONS.items():
        assert higher == (name not in lower), name
    some = ("accuracy", "top5_accuracy", "iou_threshold", "ebpg", "pointing_game")
    more = ("top1_vs_label", "increase_pct", "inc_pct", "win_pct", "grid_pointing_game")
    assert set(some + more) <= set(METRIC_DIRECTIONS)
    assert higher_is_better("keep_10/top1_vs_label") and not higher_is_better("drop_pct")
    with pytest.raises(TypeError, match=r"name must be a metric name \(a str\)"):
        higher_is_better(3)


def test_metric_result_defaults():
    a = MetricResult(0.5, True, 3)
    assert a.n_excluded == 0 and a.per_sample is None
    b = MetricResult(0.5, True, 3, per_sample=torch.tensor([1.0, 0.0, 0.5]))
    assert a == b  # the per-sample scores are not compared
    assert "per_sample" not in repr(b)
    fields = {f.name: f for f in dataclasses.fields(MetricResult)}
    assert fields["per_sample"].compare is False and fields["per_sample"].repr is False


@pytest.mark.parametrize("shape", [(0, 2, 2), (2, 0, 2), (2, 2, 0)])
def test_empty_maps_are_refused(shape):
    with pytest.raises(ValueError, match="maps must be non-empty"):
        check_maps(torch.zeros(shape))


def test_maps_masks_images_refusals():
    maps = torch.zeros(2, 3, 3)
    one_nan = maps.clone()
    one_nan[1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="maps contains nan or inf values"):
        check_maps(one_nan)
    with pytest.raises(ValueError, match="meta device"):
        check_maps(torch.zeros(2, 3, 3, device="meta"))
    with pytest.raises(ValueError, match="maps contains nan or inf values"):
        top_k_mask(one_nan, 2)
    with pytest.raises(TypeError, match=r"masks must have dtype torch\.bool"):
        check_masks(torch.zeros(2, 3, 3), maps)
    with pytest.raises(ValueError, match="meta device"):
        check_masks(torch.zeros(2, 3, 3, dtype=torch.bool, device="meta"), maps)
    with pytest.raises(TypeError, match=r"images must be a torch\.Tensor of shape \(B, C, H, W\)"):
        check_images([[1.0]])
    for bad in (torch.zeros(2, 3, 3), torch.zeros(2, 1, 3, 3, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"images must be a floating tensor of shape \(B, C"):
            check_images(bad)
    with pytest.raises(ValueError, match="images must be non-empty"):
        check_images(torch.zeros(0, 1, 3, 3))
    with pytest.raises(ValueError, match="meta device"):
        check_images(torch.zeros(2, 1, 3, 3, device="meta"))


def test_labels_refusals_and_boundaries():
    with pytest.raises(TypeError, match=r"labels must be an integer torch\.Tensor of shape \(2,\)"):
        check_labels([0, 1], 2)
    with pytest.raises(TypeError, match="labels must hold integer class indices"):
        check_labels(torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="meta device"):
        check_labels(torch.zeros(2, dtype=torch.long, device="meta"), 2)
    for bad in (torch.tensor([-1]), torch.tensor([0, -1, 2])):
        with pytest.raises(ValueError, match="labels must be non-negative class indices"):
            check_labels(bad, bad.shape[0])
    assert check_labels(torch.zeros(0, dtype=torch.long), 0).shape == (0,)
    check_class_range(torch.zeros(0, dtype=torch.long), 3)  # nothing to check
    check_class_range(torch.tensor([2, 0]), 3)
    for bad in (torch.tensor([3]), torch.tensor([0, 3, 1])):
        with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\)"):
            check_class_range(bad, 3)


def test_tie_keys_are_pinned():
    """The keys seed every tie-break and noise draw of published results: a change of the hash
    changes the metrics (a new metrics revision), so its values are pinned here."""
    expected = {
        0: [
            [1965261011667026002, 2461772417901617345, 2606655666269093626],
            [1575485261457601532, 4024528281131463831, 2111853977506232366],
        ],
        1: [
            [4318980046302674213, 863626148161007486, 3380890741123781257],
            [637326095511086908, 1325114423304607647, 2251096555747466582],
        ],
        2: [
            [1078387145365700186, 2628591323102554327, 3987084434344668712],
            [1521533530189295188, 273810801344658711, 646901369120976991],
        ],
    }
    ids, draws = torch.tensor([0, 3]), torch.tensor([0, 2])
    for stream, keys in expected.items():
        assert tie_keys(7, ids, draws, 3, "cpu", stream=stream).tolist() == keys
    assert tie_keys(7, ids, draws, 3, "cpu").tolist() == expected[0]  # stream 0 by default
    assert dict(KEY_STREAMS) == {"ties": 0, "noise_pixels": 1, "noise_salt": 2}
    big = tie_keys(2**32 - 1, torch.tensor([2**31 + 5]), torch.tensor([1]), 2, "cpu")
    assert big.tolist() == [[1048881964621344572, 2908299216681381394]]


def test_top_k_mask_keys_refusals():
    maps = torch.zeros(2, 2, 2)
    for bad in (torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.complex64)):
        with pytest.raises(TypeError, match=r"keys must be an integer or floating tensor"):
            top_k_mask(maps, 1, tie_break="random", keys=bad)
    with pytest.raises(TypeError, match=r"keys must be an integer or floating tensor"):
        top_k_mask(maps, 1, tie_break="random", keys=[[0, 1, 2, 3]] * 2)
    with pytest.raises(ValueError, match=r"keys must be .* got \(2, 3\)"):
        top_k_mask(maps, 1, tie_break="random", keys=torch.zeros(2, 3))
    keys = torch.tensor([[3, 2, 1, 0], [0, 1, 2, 3]])
    chosen = top_k_mask(maps, 1, tie_break="random", keys=keys).flatten(1)
    assert chosen.tolist() == [[False, False, False, True], [True, False, False, False]]


def test_image_ids_refusals_name_what_they_got():
    with pytest.raises(TypeError, match=r"image_ids must be None or an integer tensor .* got list"):
        image_ids_of([0, 1], 2, "cpu")
    with pytest.raises(TypeError, match=r"image_ids must be .* got torch\.float32"):
        image_ids_of(torch.zeros(2), 2, "cpu")
    for bad in (torch.tensor([0, -1]), torch.tensor([1, 1])):
        with pytest.raises(ValueError, match=r"image_ids must be .* distinct image indices >= 0"):
            image_ids_of(bad, 2, "cpu")
    with pytest.raises(ValueError, match=r"image_ids must be .* got shape \(3,\)"):
        image_ids_of(torch.tensor([0, 1, 2]), 2, "cpu")


def test_normalize_and_binarize_edges():
    with pytest.raises(TypeError, match=r"maps must be a torch\.Tensor"):
        normalize_by_max([[[1.0]]])
    constant = torch.full((1, 2, 3), 0.4)
    assert binarize_map(constant, 0.0).all()  # threshold 0: every pixel, also of a flat map
    assert not binarize_map(constant, 0.5).any()  # nothing above its floor


def test_run_model_refusals():
    images = torch.rand(3, 1, 2, 2)

    def inputs(chunk):
        return images[chunk]

    def one_nan_row(x):
        out = x.flatten(1)[:, :2].clone()
        out[x[:, 0, 0, 0] == images[1, 0, 0, 0]] = float("nan")
        return out

    with pytest.raises(ValueError, match="batch_size must be"):
        run_model(lambda x: x.flatten(1), 3, inputs, 0)
    with pytest.raises(TypeError, match="model must be callable"):
        run_model("resnet", 3, inputs, 2)
    with pytest.raises(ValueError, match=r"model must return logits .* got <class 'list'>"):
        run_model(lambda x: [x], 3, inputs, 2)
    with pytest.raises(ValueError, match=r"NaN or infinite logits for images \[1\]"):
        run_model(one_nan_row, 3, inputs, 2)


def test_shared_keys_fall_back_to_pixel_order_and_masks_must_be_tensors():
    """tie_keys: "a shared key would fall back to pixel order" (a stable sort of the keys)."""
    maps = torch.zeros(2, 50, 100)
    keys = torch.randint(0, 3, (2, 5000), generator=torch.Generator().manual_seed(0))
    chosen = top_k_mask(maps, 2000, tie_break="random", keys=keys).flatten(1)
    for s in range(2):
        # pixels by (key, index): the 2000 first are kept
        order = sorted(range(5000), key=lambda p: (int(keys[s, p]), p))
        expected = torch.zeros(5000, dtype=torch.bool)
        expected[order[:2000]] = True
        assert torch.equal(chosen[s], expected)
    with pytest.raises(TypeError, match=r"masks must be a bool torch\.Tensor of shape"):
        check_masks([[[True]]], torch.zeros(1, 1, 1))
