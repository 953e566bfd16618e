"""Self-training a discriminant projection from unlabelled in-domain photos.

A shop has its catalogue and, for free, photos its users took: unlabelled,
but of the very products and conditions the model must match. Each photo is
assigned to catalogue products by the model's own similarities (pseudo-labels:
no human label is read); a linear discriminant projection is learned from
those classes together with the catalogue shots (within-class whitening, then
the directions along which the classes differ most); the photos are assigned
again in the new space and the projection learned again, for a few rounds.

The defaults are the recipe measured best on GroceryStore (bench/RESULTS.md):
balanced soft pseudo-labels (Sinkhorn), each catalogue shot weighing five
photos, 80 directions, five rounds.

The result is one linear map, `normalise((x - mean) @ matrix)`, applied to
catalogue and query embeddings alike; `beau_tf.serving.saved_model` bakes it
into the exported signatures.
"""

import dataclasses

import numpy as np

ASSIGNMENTS = ("hard", "sinkhorn")


@dataclasses.dataclass(frozen=True)
class SelfTrainingConfig:
    """How the projection is learned.

    Attributes:
      dim: size of the adapted embeddings (the number of discriminant
        directions kept); at most the number of catalogue products - 1.
      rounds: assign-then-fit rounds (the first assigns with the unadapted
        embeddings).
      ridge: added to the within-class covariance's diagonal before
        whitening, in units of its mean eigenvalue, so that directions with
        little within-class spread are not blown up.
      assignment: "hard" (each photo to its nearest product) or "sinkhorn"
        (balanced: a soft assignment under which every product receives the
        same total share of photos, so that a few "attractor" products do
        not absorb the pool).
      temperature: softness of the "sinkhorn" assignment (cosine units).
      catalogue_weight: how many photos each catalogue shot counts for in
        its class (the one sample known to be right).
      pca_dim: > 0 first reduces the embeddings to this many principal
        directions (of photos and catalogue together): for high-dimensional
        ensembles, where the covariances are poorly estimated.
    """

    dim: int = 80
    rounds: int = 5
    ridge: float = 3.0
    assignment: str = "sinkhorn"
    temperature: float = 0.03
    catalogue_weight: float = 5.0
    pca_dim: int = 0

    def __post_init__(self):
        if self.dim < 1 or self.rounds < 1 or self.pca_dim < 0:
            raise ValueError(
                f"dim={self.dim}, rounds={self.rounds}, pca_dim={self.pca_dim};"
                " dim and rounds of at least 1 and pca_dim >= 0 expected."
            )
        if min(self.ridge, self.temperature, self.catalogue_weight) <= 0:
            raise ValueError(
                f"ridge={self.ridge}, temperature={self.temperature}, "
                f"catalogue_weight={self.catalogue_weight}; all must be "
                "positive."
            )
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(
                f"assignment={self.assignment!r}; one of {ASSIGNMENTS} "
                "expected."
            )


@dataclasses.dataclass(frozen=True)
class Projection:
    """`normalise((x - mean) @ matrix)`: mean (D,), matrix (D, d), float32."""

    mean: np.ndarray
    matrix: np.ndarray

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        return _normalise(self.linear(embeddings))

    def linear(self, embeddings: np.ndarray) -> np.ndarray:
        """`(x - mean) @ matrix`, not normalised."""
        return (embeddings - self.mean) @ self.matrix


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def assign(
    similarities: np.ndarray, assignment: str, temperature: float
) -> np.ndarray:
    """Responsibilities (N, K) of K products for N photos, rows summing to 1.

    Args:
      similarities: (N, K) cosine similarities of photos to products.
      assignment: "hard" or "sinkhorn" (see `SelfTrainingConfig`).
      temperature: softness of "sinkhorn".
    """
    count, classes = similarities.shape
    if assignment == "hard":
        responsibilities = np.zeros_like(similarities, dtype=np.float64)
        responsibilities[np.arange(count), similarities.argmax(1)] = 1.0
        return responsibilities
    logits = (similarities - similarities.max(1, keepdims=True)) / temperature
    plan = np.exp(logits.astype(np.float64))
    plan /= plan.sum()
    # Sinkhorn-Knopp: rows sum to 1/N (each photo is one photo), columns to
    # 1/K (every product gets an equal share).
    for _ in range(50):
        plan *= (1.0 / classes) / np.maximum(plan.sum(0), 1e-300)
        plan *= (1.0 / count) / np.maximum(plan.sum(1, keepdims=True), 1e-300)
    return plan / plan.sum(1, keepdims=True)


def fit_discriminant_projection(
    photos: np.ndarray,
    responsibilities: np.ndarray,
    catalogue: np.ndarray,
    dim: int,
    ridge: float,
    catalogue_weight: float = 1.0,
) -> Projection:
    """Within-class whitening, then the top `dim` between-class directions.

    Classes are the K catalogue products; class k holds its catalogue shot
    (weighing `catalogue_weight` photos) and the photos in proportion to
    their responsibility for k. The returned directions v solve
    `S_b v = lambda (S_w + r I) v` for the largest lambda, scaled so that
    `v^T (S_w + r I) v = 1`, where S_w and S_b are the within- and
    between-class covariances and r is `ridge` times the mean eigenvalue of
    S_w.

    Args:
      photos: (N, D) photo embeddings.
      responsibilities: (N, K), rows summing to 1.
      catalogue: (K, D) catalogue embeddings, row k for product k.
      dim: directions kept, at most K - 1.
      ridge: regularisation of S_w, relative to its mean eigenvalue.
      catalogue_weight: the weight of each catalogue shot.

    Returns:
      The projection (mean: the weighted mean of all samples).

    Raises:
      ValueError: for `dim` outside [1, min(K - 1, D)].
    """
    photos = np.asarray(photos, np.float64)
    catalogue = np.asarray(catalogue, np.float64)
    responsibilities = np.asarray(responsibilities, np.float64)
    classes, size = catalogue.shape
    if not 1 <= dim <= min(classes - 1, size):
        raise ValueError(
            f"dim={dim} discriminant directions from {classes} products of "
            f"{size}-d embeddings; between 1 and {min(classes - 1, size)} "
            "expected."
        )
    weight = catalogue_weight
    counts = responsibilities.sum(0) + weight  # (K,) photos + catalogue shot
    means = (responsibilities.T @ photos + weight * catalogue) / counts[:, None]
    total = counts.sum()
    mean = (photos.sum(0) + weight * catalogue.sum(0)) / total  # (D,)
    centred_photos, centred_catalogue = photos - mean, catalogue - mean
    centred_means = means - mean
    # S_w = E[x x^T] - sum_k n_k m_k m_k^T / n, all centred on `mean`.
    within = centred_photos.T @ centred_photos + weight * (
        centred_catalogue.T @ centred_catalogue
    )
    between = (centred_means * counts[:, None]).T @ centred_means
    within = (within - between) / total
    between /= total
    regularised = within + ridge * np.trace(within) / size * np.eye(size)
    values, vectors = np.linalg.eigh(regularised)
    whitening = vectors / np.sqrt(np.maximum(values, 1e-12))  # (D, D)
    spread, directions = np.linalg.eigh(whitening.T @ between @ whitening)
    top = np.argsort(spread)[::-1][:dim]
    matrix = whitening @ directions[:, top]  # (D, dim)
    return Projection(mean.astype(np.float32), matrix.astype(np.float32))


def _pca(samples: np.ndarray, dim: int) -> Projection:
    """The top `dim` principal directions of `samples` (unwhitened)."""
    mean = samples.mean(0)
    _, _, directions = np.linalg.svd(samples - mean, full_matrices=False)
    return Projection(
        mean.astype(np.float32), directions[:dim].T.astype(np.float32)
    )


def _compose(first: Projection, second: Projection) -> Projection:
    """`second` after `first.linear`, as one projection; `first.matrix` must
    have orthonormal columns (PCA directions), so that the mean maps back."""
    matrix = first.matrix.astype(np.float64) @ second.matrix
    mean = first.mean + first.matrix.astype(np.float64) @ second.mean
    return Projection(mean.astype(np.float32), matrix.astype(np.float32))


def self_train(
    catalogue: np.ndarray,
    photos: np.ndarray,
    config: SelfTrainingConfig = SelfTrainingConfig(),
) -> tuple[Projection, list[dict]]:
    """Learns the projection from catalogue and unlabelled photo embeddings.

    Args:
      catalogue: (K, D) L2-normalised embeddings of the K catalogue products
        (as the index will hold them).
      photos: (N, D) L2-normalised embeddings of unlabelled in-domain photos
        (as queries will be embedded).
      config: the recipe.

    Returns:
      `(projection, history)`: history has one dict per round with what the
      pseudo-labels looked like (no label is known to score them): the share
      of products that received a photo, and the mean similarity of each
      photo to its product.

    Raises:
      ValueError: for mismatched or too few embeddings.
    """
    catalogue = np.asarray(catalogue, np.float32)
    photos = np.asarray(photos, np.float32)
    if catalogue.ndim != 2 or photos.ndim != 2:
        raise ValueError("catalogue and photos must be (K, D) and (N, D).")
    if catalogue.shape[1] != photos.shape[1]:
        raise ValueError(
            f"catalogue embeddings are {catalogue.shape[1]}-d but photo "
            f"embeddings {photos.shape[1]}-d; embed both with one model."
        )
    if len(photos) < len(catalogue):
        raise ValueError(
            f"{len(photos)} photos for {len(catalogue)} products; "
            "self-training needs at least as many photos as products "
            "(several per product is better)."
        )
    base = None
    if config.pca_dim:
        base = _pca(np.concatenate([photos, catalogue]), config.pca_dim)
        catalogue, photos = base.linear(catalogue), base.linear(photos)
    projection, history = None, []
    for _ in range(config.rounds):
        space = projection or (lambda x: x)
        similarities = space(photos) @ space(catalogue).T  # (N, K)
        responsibilities = assign(
            similarities, config.assignment, config.temperature
        )
        projection = fit_discriminant_projection(
            photos,
            responsibilities,
            catalogue,
            config.dim,
            config.ridge,
            config.catalogue_weight,
        )
        nearest = similarities.argmax(1)
        history.append(
            {
                "products_with_photos": float(
                    len(np.unique(nearest)) / len(catalogue)
                ),
                "mean_similarity": float(similarities.max(1).mean()),
            }
        )
    if base is not None:
        projection = _compose(base, projection)
    return projection, history
