"""SSIM per gene on rasterised slices, vectorised over genes.

A slice becomes one image per gene: on the platform's square array grid where
there is one (each spot one pixel), otherwise on square bins about one spot
wide (pixel = mean of the spots in it). The image is cropped to the tissue's
bounding box; pixels without a spot are 0.

SSIM follows ``skimage.metrics.structural_similarity`` with its defaults
(7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, the border of
the SSIM map cropped before the mean) and ``data_range = truth.max() -
truth.min()`` of that gene's image. The filters run on the whole gene stack at
once; a test checks equality with skimage gene by gene.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import uniform_filter

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


def ssim_stack(truth_img: np.ndarray, pred_img: np.ndarray, chunk_elements: int = 1 << 21) -> np.ndarray:
    """SSIM of each (H, W) image pair in a (genes, H, W) stack; NaN for a constant truth image.

    Genes are processed in chunks of about ``chunk_elements`` pixels: the dozen
    temporaries then stay small and are reused, which on a large slice is
    several times faster than one pass over the whole stack (page faults and
    memory bandwidth dominate, not arithmetic).
    """
    if min(truth_img.shape[1:]) < WIN:
        return np.full(len(truth_img), np.nan)
    step = max(1, chunk_elements // (truth_img.shape[1] * truth_img.shape[2]))
    return np.concatenate([_ssim_chunk(truth_img[g:g + step], pred_img[g:g + step])
                           for g in range(0, len(truth_img), step)])


def _ssim_chunk(truth_img: np.ndarray, pred_img: np.ndarray) -> np.ndarray:
    x, y = truth_img.astype(np.float64), pred_img.astype(np.float64)
    rng = x.max(axis=(1, 2)) - x.min(axis=(1, 2))
    size = (1, WIN, WIN)
    ux, uy = uniform_filter(x, size=size), uniform_filter(y, size=size)
    uxx, uyy, uxy = uniform_filter(x * x, size=size), uniform_filter(y * y, size=size), uniform_filter(x * y, size=size)
    cov_norm = WIN * WIN / (WIN * WIN - 1.0)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1 = ((K1 * rng) ** 2)[:, None, None]
    c2 = ((K2 * rng) ** 2)[:, None, None]
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux**2 + uy**2 + c1, vx + vy + c2
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (a1 * a2) / (b1 * b2)
    pad = (WIN - 1) // 2
    out = s[:, pad:-pad, pad:-pad].mean(axis=(1, 2))
    out[rng == 0] = np.nan
    return out


@metric("ssim", higher_is_better=True, range=(-1, 1))
def ssim(truth, pred, pixel: np.ndarray, shape: tuple[int, int]) -> float:
    """mean over genes g (with a non-constant truth image) of SSIM(raster(y_g), raster(yhat_g))."""
    per_gene = ssim_stack(rasterize(truth, pixel, shape), rasterize(pred, pixel, shape))
    return float(np.nanmean(per_gene)) if np.isfinite(per_gene).any() else float("nan")
