"""SSIM is vectorised over genes; it must equal skimage's structural_similarity gene by gene (1e-6)."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from stbench.tasks.metrics.image import raster_layout, rasterize, ssim, ssim_stack


def test_ssim_stack_equals_skimage_per_gene():
    rng = np.random.default_rng(0)
    truth = rng.gamma(2.0, 1.0, size=(5, 20, 17))
    pred = truth + rng.normal(0, 0.5, size=truth.shape)
    ours = ssim_stack(truth, pred)
    for g in range(5):
        ref = structural_similarity(truth[g], pred[g], data_range=truth[g].max() - truth[g].min())
        assert ours[g] == pytest.approx(ref, abs=1e-6)


def test_ssim_stack_keeps_float64_accuracy_on_offset_and_sparse_images():
    """float32 arithmetic is safe only because images are centred: a large offset (1,000 +
    small variations) and raster-like images (holes, zeros, a 7-pixel-wide one) must still
    match skimage to 1e-6."""
    rng = np.random.default_rng(4)
    offset = 1000.0 + rng.normal(0, 0.5, size=(3, 30, 25))
    sparse = np.log1p(rng.gamma(0.5, 3.0, size=(3, 30, 25)))
    sparse[:, ::3] = 0.0
    narrow = rng.random((2, 7, 40))
    for truth in (offset, sparse, narrow):
        pred = truth + rng.normal(0, 0.3, size=truth.shape)
        ours = ssim_stack(truth, pred)
        for g in range(len(truth)):
            ref = structural_similarity(truth[g], pred[g], data_range=truth[g].max() - truth[g].min())
            assert abs(ours[g] - ref) < 1e-6, (truth.shape, g, ours[g], ref)


def test_ssim_identical_is_one_and_constant_truth_is_skipped():
    img = np.random.default_rng(1).random((2, 9, 9))
    img[1] = 3.0
    out = ssim_stack(img, img)
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1])


def test_rasterize_grid_and_bins():
    grid = np.array([[0, 0], [0, 2], [1, 1]])
    pixel, shape = raster_layout(grid)
    assert shape == (2, 3)
    img = rasterize(np.array([[1.0], [2.0], [3.0]]), pixel, shape)
    assert img.shape == (1, 2, 3)
    assert img[0].tolist() == [[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]
    # two spots falling in one bin are averaged
    coords = np.array([[0.0, 0.0], [0.1, 0.1], [10.0, 10.0], [10.0, 0.0]])
    pixel, shape = raster_layout(None, coords)
    img = rasterize(np.array([[2.0], [4.0], [1.0], [1.0]]), pixel, shape)
    assert img.max() == 3.0


def test_ssim_metric_on_a_slice():
    rng = np.random.default_rng(2)
    rr, cc = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    grid = np.column_stack([rr.ravel(), cc.ravel()])
    truth = np.column_stack([np.sin(rr.ravel() / 3.0) + 1, np.cos(cc.ravel() / 4.0) + 1])
    pixel, shape = raster_layout(grid)
    assert ssim(truth, truth, pixel, shape) == pytest.approx(1.0)
    noisy = truth + rng.normal(0, 0.3, truth.shape)
    assert ssim(truth, noisy, pixel, shape) < 0.9


def test_chunked_ssim_equals_one_pass():
    rng = np.random.default_rng(3)
    truth = rng.random((10, 12, 11))
    pred = truth + rng.normal(0, 0.2, truth.shape)
    assert np.allclose(ssim_stack(truth, pred, chunk_elements=200), ssim_stack(truth, pred, chunk_elements=1 << 30))
