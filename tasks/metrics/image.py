"""SSIM per gene on rasterised slices, vectorised over genes.

A slice becomes one image per gene: on the platform's square array grid where
there is one (each spot one pixel), otherwise on square bins about one spot
wide (pixel = mean of the spots in it). The image is cropped to the tissue's
bounding box; pixels without a spot are 0.

SSIM follows ``skimage.metrics.structural_similarity`` with its defaults
(7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, the border of
the SSIM map cropped before the mean) and ``data_range = truth.max() -
truth.min()`` of that gene's image. The filters run on chunks of the gene
stack; a test checks equality with skimage gene by gene.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from stbench.tasks.metrics import metric
from stbench.tasks.metrics.expression import dense

WIN = 7
K1, K2 = 0.01, 0.03


def raster_layout(grid: np.ndarray | None, coords: np.ndarray | None = None):
    """Return (pixel index per spot, image shape) for rasterising one slice.

    ``grid``: integer (row, col) per spot on a square lattice, or None to bin
    ``coords`` into square bins of side sqrt(bounding-box area / n_spots).
    """
    if grid is not None:
        rc = np.asarray(grid, dtype=np.int64)
    else:
        xy = np.asarray(coords, dtype=float)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        side = np.sqrt(np.prod(np.maximum(hi - lo, 1e-9)) / len(xy))
        rc = np.floor((xy[:, ::-1] - lo[::-1]) / side).astype(np.int64)
    rc = rc - rc.min(axis=0)
    shape = tuple(int(v) for v in rc.max(axis=0) + 1)
    return rc[:, 0] * shape[1] + rc[:, 1], shape


def rasterize(values, pixel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(spots x genes) -> (genes, H, W) images; a pixel holding several spots gets their mean."""
    n = len(pixel)
    n_pix = shape[0] * shape[1]
    assign = sp.csr_matrix((np.ones(n), (pixel, np.arange(n))), shape=(n_pix, n))
    counts = np.asarray(assign.sum(axis=1)).ravel()
    counts[counts == 0] = 1
    img = (assign @ dense(values)) / counts[:, None]
    return img.T.reshape(-1, *shape)


def ssim_stack(truth_img: np.ndarray, pred_img: np.ndarray, chunk_elements: int = 1 << 15) -> np.ndarray:
    """SSIM of each (H, W) image pair in a (genes, H, W) stack; NaN for a constant truth image.

    Equal to ``skimage.metrics.structural_similarity(t, p, data_range=t.max() - t.min())``
    gene by gene (a test holds it to 1e-6; measured differences are about 2e-8), and
    2-3x faster than that loop (``python scripts/bench_ssim.py``), because:

    * only the pixels skimage keeps are computed: it crops 3 pixels of border from
      the SSIM map, and every kept pixel's 7 x 7 window lies inside the image, so
      the reflected border skimage filters is never needed;
    * four window sums instead of five (x, y, x^2 + y^2, xy: only vx + vy is used),
      on the four stacked, as sums of shifted slices (numpy's contiguous adds beat
      scipy.ndimage's line-by-line filters on images this small), in chunks of
      about ``chunk_elements`` pixels that stay in cache;
    * float32 arithmetic on images centred on the truth image's mean: variances
      are differences of second moments, and centring keeps those small, so the
      cancellation that float32 would otherwise suffer does not happen.
    """
    if min(truth_img.shape[1:]) < WIN:
        return np.full(len(truth_img), np.nan)
    step = max(1, chunk_elements // (truth_img.shape[1] * truth_img.shape[2]))
    return np.concatenate([_ssim_chunk(truth_img[g:g + step], pred_img[g:g + step])
                           for g in range(0, len(truth_img), step)])


def _window_sums(a: np.ndarray, axis: int) -> np.ndarray:
    """Sums of 7 consecutive elements along ``axis`` (valid positions only: n - 6), by doubling."""
    def part(arr, lo, hi):
        index = [slice(None)] * arr.ndim
        index[axis] = slice(lo, hi)
        return arr[tuple(index)]

    n = a.shape[axis]
    two = part(a, 0, n - 1) + part(a, 1, n)  # a[i] + a[i+1]
    four = part(two, 0, n - 3) + part(two, 2, n - 1)  # a[i..i+3]
    six = part(four, 0, n - 6) + part(two, 4, n - 2)  # a[i..i+5]
    six += part(a, 6, n)  # a[i..i+6]
    return six


def _ssim_chunk(truth_img: np.ndarray, pred_img: np.ndarray) -> np.ndarray:
    x, y = np.asarray(truth_img, np.float64), np.asarray(pred_img, np.float64)
    data_range = x.max(axis=(1, 2)) - x.min(axis=(1, 2))
    offset = x.mean(axis=(1, 2), keepdims=True)
    xc, yc = (x - offset).astype(np.float32), (y - offset).astype(np.float32)
    moments = np.empty((4, *xc.shape), np.float32)
    moments[0], moments[1] = xc, yc
    np.multiply(xc, xc, out=moments[2])
    moments[2] += yc * yc
    np.multiply(xc, yc, out=moments[3])
    means = _window_sums(_window_sums(moments, 2), 3)
    means *= np.float32(1.0 / (WIN * WIN))
    uxc, uyc, sum2, sxy = means
    ux, uy = uxc + offset.astype(np.float32), uyc + offset.astype(np.float32)
    cov_norm = np.float32(WIN * WIN / (WIN * WIN - 1.0))  # sample covariance, as skimage
    c1 = ((K1 * data_range) ** 2).astype(np.float32)[:, None, None]
    c2 = ((K2 * data_range) ** 2).astype(np.float32)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant truth image: NaN, set below
        num = (2 * ux * uy + c1) * (2 * cov_norm * (sxy - uxc * uyc) + c2)
        den = (ux * ux + uy * uy + c1) * (cov_norm * (sum2 - uxc * uxc - uyc * uyc) + c2)
        out = (num / den).mean(axis=(1, 2), dtype=np.float64)
    out[data_range == 0] = np.nan
    return out


@metric("ssim", higher_is_better=True, range=(-1, 1))
def ssim(truth, pred, pixel: np.ndarray, shape: tuple[int, int]) -> float:
    """mean over genes g (with a non-constant truth image) of SSIM(raster(y_g), raster(yhat_g))."""
    per_gene = ssim_stack(rasterize(truth, pixel, shape), rasterize(pred, pixel, shape))
    return float(np.nanmean(per_gene)) if np.isfinite(per_gene).any() else float("nan")
