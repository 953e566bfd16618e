"""Tests for beau_tf.training.photo_targets: the teacher's targets for the
unlabelled photos of the distillation loss."""

import os
import tempfile

import numpy as np
import tensorflow as tf

from beau_tf.data import catalog as catalog_lib
from beau_tf.data import decode
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.training import photo_targets
from tests.fixtures import testing
from tests.fixtures import training


class TeacherTargetsTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tempdir = tempfile.TemporaryDirectory(prefix="beau_tf_")
        cls.addClassCleanup(tempdir.cleanup)
        cls.root = tempdir.name
        cls.catalog, cls.photos = training.catalogue_and_photos(cls.root)
        cls.teacher = training.export_teacher(cls.root)
        cls.items = catalog_lib.list_catalog(cls.catalog.catalog_csv)
        cls.paths = catalog_lib.list_photos(cls.photos)

    def test_targets_are_balanced_distributions_over_products(self):
        with self.assertLogs(level="WARNING") as logs:
            made, fingerprint = photo_targets.teacher_targets(
                self.teacher,
                [item.path for item in self.items],
                self.paths,
                temperature=0.03,
            )
        targets, kept, zooms = made
        self.assertEqual(zooms, ())
        # The broken file is skipped by name; the 12 others are labelled.
        self.assertTrue(any("broken.jpg" in line for line in logs.output))
        self.assertLen(kept, 12)
        self.assertNotIn(os.path.join(self.photos, "broken.jpg"), kept)
        self.assertEqual(targets.shape, (12, 4))
        self.assertAllClose(targets.sum(1), np.ones(12), atol=1e-5)
        # Balanced: every product receives the same share of the photos.
        self.assertAllClose(targets.sum(0), np.full(4, 3.0), atol=1e-2)
        # A copy of a catalogue shot is that product's, for any teacher.
        for item in self.items:
            row = kept.index(
                os.path.join(self.photos, f"shot_{item.item_id}.png")
            )
            self.assertEqual(targets[row].argmax(), item.label)
        self.assertNotEmpty(fingerprint)

    def test_targets_are_kept_in_the_workdir_and_read_back(self):
        workdir = testing.make_tempdir(self)
        catalogue = [item.path for item in self.items]
        first = photo_targets.load_or_make(
            workdir, self.teacher, catalogue, self.paths, 0.03
        )
        self.assertTrue(
            os.path.exists(os.path.join(workdir, photo_targets.TARGETS_FILE))
        )
        # A resumed run reads them: the teacher is not needed any more.
        again = photo_targets.load_or_make(
            workdir, "/no/teacher", catalogue, self.paths, 0.03
        )
        self.assertAllEqual(again[0], first[0])
        self.assertEqual(again[1], first[1])
        with self.assertRaisesRegex(ValueError, "over 4 products"):
            photo_targets.load_or_make(
                workdir, self.teacher, catalogue[:3], self.paths, 0.03
            )
        with self.assertRaisesRegex(ValueError, "per photo but the run"):
            photo_targets.load_or_make(
                workdir, self.teacher, catalogue, self.paths, 0.03, True
            )

    def test_views_are_cut_as_the_multiscale_signature_cuts_them(self):
        # The tiny teacher has no projection: its multiscale embedding is
        # the normalised mean of its views' embeddings.
        teacher = training.export_teacher(
            self.root, query_zooms=(1.0, 0.5), name="zooms"
        )
        signatures = embedding_lib.load_signatures(
            teacher,
            [contract.SIGNATURE_NAME, contract.MULTISCALE_SIGNATURE_NAME],
        )
        images = [
            decode.read_for_model(path)
            for path in self.paths
            if not path.endswith("broken.jpg")
        ][:4]
        views = photo_targets._per_view(
            embedding_lib.as_embed_fn(signatures[contract.SIGNATURE_NAME]),
            (1.0, 0.5),
        )(images)
        self.assertEqual(views.statuses, [contract.STATUS_OK] * 4)
        per_view = views.embeddings.reshape(4, 2, -1)
        mean = per_view.mean(1)
        mean /= np.linalg.norm(mean, axis=1, keepdims=True)
        multiscale = embedding_lib.as_embed_fn(
            signatures[contract.MULTISCALE_SIGNATURE_NAME]
        )(images)
        self.assertAllClose(mean, multiscale.embeddings, atol=1e-5)
        # The two views differ: the second is a crop, not the photo again.
        self.assertGreater(np.abs(per_view[:, 0] - per_view[:, 1]).max(), 1e-3)

    def test_targets_per_view_are_kept_with_their_zooms(self):
        teacher = training.export_teacher(
            self.root, query_zooms=(1.0, 0.5), name="per_view"
        )
        workdir = testing.make_tempdir(self)
        catalogue = [item.path for item in self.items]
        with self.assertLogs(level="WARNING"):  # the broken photo
            made = photo_targets.load_or_make(
                workdir, teacher, catalogue, self.paths, 0.03, per_view=True
            )
        self.assertEqual(made.targets.shape, (12, 2, 4))
        self.assertAllClose(made.targets.sum(-1), np.ones((12, 2)), atol=1e-5)
        # Balanced over all 24 views together.
        self.assertAllClose(
            made.targets.sum((0, 1)), np.full(4, 6.0), atol=1e-2
        )
        self.assertEqual(made.zooms, (1.0, 0.5))
        again = photo_targets.load_or_make(
            workdir, "/no/teacher", catalogue, self.paths, 0.03, per_view=True
        )
        self.assertAllEqual(again.targets, made.targets)
        self.assertEqual(again.zooms, (1.0, 0.5))
        with self.assertRaisesRegex(ValueError, "per view but the run"):
            photo_targets.load_or_make(
                workdir, teacher, catalogue, self.paths, 0.03
            )

    def test_a_folder_that_is_not_an_export_is_refused(self):
        with self.assertRaises((FileNotFoundError, ValueError, OSError)):
            photo_targets.teacher_targets(
                self.root, [self.items[0].path], self.paths, 0.03
            )


if __name__ == "__main__":
    tf.test.main()
