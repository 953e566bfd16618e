"""Tests for beau_tf.adaptation.self_training on synthetic embeddings."""

from absl.testing import parameterized
import numpy as np

from beau_tf.adaptation import self_training

K, D = 12, 24


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _domain(photo_seed: int = 1, photos_per_product: int = 20):
    """Catalogue shots, and photos of the same products seen through a
    strong shared nuisance (a few fixed directions: clutter, light) that the
    catalogue lacks; `photo_seed` draws another set of photos of the same
    domain. Returns (catalogue, photos, photo labels)."""
    rng = np.random.default_rng(0)
    products = rng.standard_normal((K, D))
    nuisance = rng.standard_normal((3, D)) * 3.0
    catalogue = _unit(products).astype(np.float32)
    rng = np.random.default_rng(photo_seed)
    labels = np.repeat(np.arange(K), photos_per_product)
    photos = (
        products[labels]
        + rng.standard_normal((len(labels), 3)) @ nuisance
        + 0.3 * rng.standard_normal((len(labels), D))
    )
    return catalogue, _unit(photos).astype(np.float32), labels


def _accuracy(queries, catalogue, labels):
    return float(((queries @ catalogue.T).argmax(1) == labels).mean())


class AssignTest(parameterized.TestCase):

    def test_hard_assignment_is_the_nearest_product(self):
        similarities = np.array([[0.1, 0.9, 0.2], [0.8, 0.1, 0.0]])
        np.testing.assert_array_equal(
            self_training.assign(similarities, "hard", 0.05),
            [[0, 1, 0], [1, 0, 0]],
        )

    def test_sinkhorn_shares_photos_equally_among_products(self):
        rng = np.random.default_rng(0)
        similarities = rng.random((30, 3))
        similarities[:, 0] += 1.0  # product 0 attracts every photo
        plan = self_training.assign(similarities, "sinkhorn", 0.1)
        np.testing.assert_allclose(plan.sum(1), 1.0)
        np.testing.assert_allclose(plan.sum(0), 10.0, rtol=1e-3)


class FitDiscriminantProjectionTest(parameterized.TestCase):

    def test_directions_whiten_the_within_class_scatter(self):
        catalogue, photos, labels = _domain()
        responsibilities = np.eye(K)[labels]
        ridge = 1e-3
        projection = self_training.fit_discriminant_projection(
            photos, responsibilities, catalogue, dim=5, ridge=ridge
        )
        self.assertEqual(projection.matrix.shape, (D, 5))
        samples = np.concatenate([photos, catalogue]).astype(np.float64)
        classes = np.concatenate([labels, np.arange(K)])
        centred = (
            samples
            - np.stack([samples[classes == c].mean(0) for c in range(K)])[
                classes
            ]
        )
        within = centred.T @ centred / len(samples)
        within += ridge * np.trace(within) / D * np.eye(D)
        whitened = projection.matrix.T @ within @ projection.matrix
        np.testing.assert_allclose(whitened, np.eye(5), atol=1e-4)

    def test_too_many_directions_are_refused(self):
        catalogue, photos, labels = _domain()
        with self.assertRaisesRegex(ValueError, f"between 1 and {K - 1}"):
            self_training.fit_discriminant_projection(
                photos, np.eye(K)[labels], catalogue, dim=K, ridge=0.01
            )


class SelfTrainTest(parameterized.TestCase):

    @parameterized.parameters(
        dict(assignment="hard", pca_dim=0),
        dict(assignment="sinkhorn", pca_dim=0),
        dict(assignment="hard", pca_dim=16),
    )
    def test_adaptation_finds_more_products_without_labels(
        self, assignment, pca_dim
    ):
        catalogue, photos, labels = _domain()
        config = self_training.SelfTrainingConfig(
            dim=K - 1, rounds=3, ridge=1e-3, assignment=assignment,
            pca_dim=pca_dim,
        )  # fmt: skip
        # Learned on unlabelled photos, scored on fresh ones of the domain.
        projection, history = self_training.self_train(
            catalogue, photos, config
        )
        _, queries, query_labels = _domain(photo_seed=2)
        before = _accuracy(queries, catalogue, query_labels)
        after = _accuracy(
            projection(queries), projection(catalogue), query_labels
        )
        self.assertGreater(after, before + 0.2)
        self.assertLen(history, 3)
        self.assertEqual(projection.matrix.shape, (D, K - 1))

    def test_pca_then_projection_is_one_linear_map(self):
        catalogue, photos, _ = _domain()
        config = self_training.SelfTrainingConfig(dim=5, rounds=1, pca_dim=10)
        projection, _ = self_training.self_train(catalogue, photos, config)
        base = self_training._pca(np.concatenate([photos, catalogue]), 10)
        responsibilities = self_training.assign(
            base.linear(photos) @ base.linear(catalogue).T,
            config.assignment,
            config.temperature,
        )
        second = self_training.fit_discriminant_projection(
            base.linear(photos),
            responsibilities,
            base.linear(catalogue),
            config.dim,
            config.ridge,
            config.catalogue_weight,
        )
        np.testing.assert_allclose(
            projection(photos), second(base.linear(photos)), atol=1e-4
        )

    def test_bad_inputs_are_named(self):
        catalogue, photos, _ = _domain()
        with self.assertRaisesRegex(ValueError, "embed both with one model"):
            self_training.self_train(catalogue, photos[:, :5])
        with self.assertRaisesRegex(ValueError, "at least as many photos"):
            self_training.self_train(catalogue, photos[:3])
        with self.assertRaisesRegex(ValueError, "assignment='soft'"):
            self_training.SelfTrainingConfig(assignment="soft")
