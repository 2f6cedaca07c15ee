"""Seeded negative controls: outputs of the right shape that carry no signal.

They fix the 0 of the scaled scores, so each one is the thing a method must
beat to be worth anything, and it depends only on the seed.
"""

import numpy as np

from stbench.methods import Method

negative_control = Method(
    name="negative_control", kind="control", label="Negative control",
    summary="Seeded random output of the right shape: random observed spots, "
    "each gene shuffled across spots, random labels, embeddings or coordinates.",
)


@negative_control.solves("spatial_imputation")
def random_observed_spots(inputs, ctx):
    """Each held-out spot gets the profile of a random observed spot."""
    rng = np.random.default_rng(ctx.seed)
    X = np.asarray(inputs.observed.X)
    return X[rng.integers(0, len(X), size=inputs.query.n_obs)]


@negative_control.solves("gene_imputation", "denoising")
def shuffled_spots_per_gene(inputs, ctx):
    """Each gene's values are permuted across spots: gene distributions kept, spots scrambled."""
    rng = np.random.default_rng(ctx.seed)
    X = np.asarray(inputs.adata.X, dtype=np.float64)
    return rng.permuted(X, axis=0)


@negative_control.solves("domain_identification")
def random_labels(inputs, ctx):
    rng = np.random.default_rng(ctx.seed)
    return rng.integers(0, inputs.n_domains, size=inputs.adata.n_obs)


@negative_control.solves("multislice_integration")
def random_embedding(inputs, ctx):
    return np.random.default_rng(ctx.seed).normal(size=(inputs.adata.n_obs, 16))


@negative_control.solves("alignment")
def random_coordinates(inputs, ctx):
    """Query spots scattered uniformly over the reference's bounding box."""
    rng = np.random.default_rng(ctx.seed)
    ref = inputs.reference.obsm["spatial"]
    return rng.uniform(ref.min(axis=0), ref.max(axis=0), size=(inputs.query.n_obs, 2))
