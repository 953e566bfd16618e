"""Tests for the distillation loss on unlabelled photos: the teacher's
targets (`beau_tf.training.photo_targets`), the photo stream
(`pipelines.make_photo_dataset`), the training model's photo logits and a
training run that uses them."""

import glob
import os
import shutil
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from beau_tf.data import catalog as catalog_lib
from beau_tf.data import pipelines
from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.models import extractor as extractor_lib
from beau_tf.exporting import assemble
from beau_tf.serving import saved_model
from beau_tf.training import config as config_lib
from beau_tf.training import photo_targets
from beau_tf.training import trainer
from tests import testing
from tests.training.test_trainer import summary_tags
from tests.training.test_trainer import tiny_config
from tests.training.test_trainer import trained_steps

_SIZE = 64
_TINY = extractor_lib.ExtractorConfig(
    backbone="tiny", backbone_weights="none", image_size=_SIZE
)


def catalogue_and_photos(root: str):
    """A 4-product synthetic catalogue and a folder of unlabelled photos:
    its 8 query photos, each catalogue image once more, and one file no
    decoder reads."""
    catalog = synthetic.write_synthetic_catalog(
        os.path.join(root, "synthetic"),
        num_products=4,
        queries_per_product=2,
        num_backgrounds=2,
        image_size=_SIZE,
    )
    photos = os.path.join(root, "photos")
    shutil.copytree(
        os.path.join(os.path.dirname(catalog.queries_csv), "queries"), photos
    )
    for item in catalog_lib.list_catalog(catalog.catalog_csv):
        shutil.copy(item.path, os.path.join(photos, f"shot_{item.item_id}.png"))
    with open(os.path.join(photos, "broken.jpg"), "wb") as stream:
        stream.write(b"not an image")
    return catalog, photos


def export_teacher(root: str) -> str:
    """An untrained tiny extractor, exported as `python -m beau_tf.export`
    would: a teacher for the tests. Its queries are one whole view, so a
    copy of a catalogue shot embeds exactly as that shot does."""
    tf.keras.utils.set_random_seed(0)
    return saved_model.export_saved_model(
        extractor_lib.build_extractor(_TINY),
        os.path.join(root, "exported"),
        "teacher",
        query_zooms=(1.0,),
    )


class DistillationConfigTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.catalog = synthetic.write_synthetic_catalog(
            os.path.join(testing.make_tempdir(self), "s"),
            num_products=2,
            queries_per_product=0,
            num_backgrounds=1,
            image_size=_SIZE,
        )

    @parameterized.parameters(
        dict(photo_loss_weight=1.0),
        dict(photo_loss_weight=1.0, photos="p"),
        dict(photo_loss_weight=1.0, teacher="t"),
        dict(photos="p", teacher="t"),
    )
    def test_the_loss_needs_weight_photos_and_teacher_together(self, **values):
        with self.assertRaisesRegex(ValueError, "needs all three"):
            tiny_config(self.catalog, **values)

    def test_bad_temperature_is_named(self):
        with self.assertRaisesRegex(ValueError, "teacher_temperature=0"):
            tiny_config(
                self.catalog,
                photo_loss_weight=1.0,
                photos="p",
                teacher="t",
                teacher_temperature=0.0,
            )

    def test_photo_masks_need_the_distillation_loss(self):
        with self.assertRaisesRegex(ValueError, "needs the distillation loss"):
            tiny_config(self.catalog, photo_mask_loss_weight=1.0)
        config = tiny_config(
            self.catalog,
            photo_loss_weight=1.0,
            photo_mask_loss_weight=0.5,
            photos="p",
            teacher="t",
        )
        self.assertTrue(config.learns_photo_masks)

    def test_distillation_alone_is_something_to_train(self):
        config = tiny_config(
            self.catalog,
            mask_loss_weight=0.0,
            identity_loss_weight=0.0,
            photo_loss_weight=1.0,
            photos="p",
            teacher="t",
        )
        self.assertTrue(config.distills and config.has_identity_head)
        self.assertEqual(
            config_lib.TrainConfig.from_dict(config.to_dict()), config
        )


class TeacherTargetsTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tempdir = tempfile.TemporaryDirectory(prefix="beau_tf_")
        cls.addClassCleanup(tempdir.cleanup)
        cls.root = tempdir.name
        cls.catalog, cls.photos = catalogue_and_photos(cls.root)
        cls.teacher = export_teacher(cls.root)
        cls.items = catalog_lib.list_catalog(cls.catalog.catalog_csv)
        cls.paths = catalog_lib.list_photos(cls.photos)

    def test_targets_are_balanced_distributions_over_products(self):
        with self.assertLogs(level="WARNING") as logs:
            targets, kept, fingerprint = photo_targets.teacher_targets(
                self.teacher,
                [item.path for item in self.items],
                self.paths,
                temperature=0.03,
            )
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

    def test_a_folder_that_is_not_an_export_is_refused(self):
        with self.assertRaises((FileNotFoundError, ValueError, OSError)):
            photo_targets.teacher_targets(
                self.root, [self.items[0].path], self.paths, 0.03
            )


class PhotoDatasetTest(tf.test.TestCase):

    def test_each_crop_comes_with_its_photos_target_and_resumes(self):
        # Photo i is filled with grey level 20 * i and its target is
        # one-hot at i: a crop's colour names the target it must carry.
        count = 5
        photos = np.stack(
            [np.full((40, 48, 3), 20 * i, np.uint8) for i in range(count)]
        )
        targets = np.eye(count, dtype=np.float32)
        dataset = pipelines.make_photo_dataset(
            photos, targets, image_size=16, batch_size=3, seed=4
        )
        batches = list(dataset.take(4).as_numpy_iterator())
        seen = set()
        for batch in batches:
            self.assertEqual(batch["photo"].shape, (3, 16, 16, 3))
            self.assertEqual(batch["photo"].dtype, np.uint8)
            for photo, target in zip(batch["photo"], batch["target"]):
                self.assertAllEqual(
                    photo, np.full_like(photo, 20 * target.argmax())
                )
                seen.add(int(target.argmax()))
        self.assertEqual(seen, set(range(count)))  # 12 draws, 2+ epochs
        # A run resumed at position 6 reads what an uninterrupted one does.
        resumed = pipelines.make_photo_dataset(
            photos, targets, 16, 3, seed=4, start_index=6
        )
        for later, expected in zip(
            resumed.take(2).as_numpy_iterator(), batches[2:]
        ):
            self.assertAllEqual(later["photo"], expected["photo"])
            self.assertAllEqual(later["target"], expected["target"])

    def test_mismatched_counts_are_refused(self):
        with self.assertRaisesRegex(ValueError, "3 photos and 2 targets"):
            pipelines.make_photo_dataset(
                np.zeros((3, 8, 8, 3), np.uint8), np.eye(2), 8, 1
            )


class PhotoLogitsTest(tf.test.TestCase):

    def test_photo_logits_are_the_head_without_margin(self):
        tf.keras.utils.set_random_seed(1)
        extractor = extractor_lib.build_extractor(_TINY)
        model = extractor_lib.build_training_model(
            extractor,
            3,
            identity_margin=0.5,
            identity_logits=True,
            photo_logits=True,
        )
        images = np.random.default_rng(0).integers(0, 255, (2, _SIZE, _SIZE, 3))
        inputs = {
            "image": images.astype(np.float32),
            "label": np.array([0, 1], np.int32),
            "photo": images.astype(np.float32),
        }
        outputs = model(inputs, training=True)
        head = model.get_layer("identity_head")
        plain = head(extractor(inputs["photo"], training=True)["embedding"])
        self.assertAllClose(outputs["photo_logits"], plain, atol=1e-5)
        # The same images as catalogue scenes get the margin on their label.
        self.assertLess(outputs["logits"][0, 0], plain[0, 0] - 1e-3)

    def test_photo_mask_is_every_cells_logits_then_the_small_mask(self):
        tf.keras.utils.set_random_seed(2)
        config = extractor_lib.ExtractorConfig(
            backbone="tiny",
            backbone_weights="none",
            image_size=_SIZE,
            embedding_dim=8,
        )
        extractor = extractor_lib.build_extractor(config)
        model = extractor_lib.build_training_model(
            extractor, 3, photo_logits=True, photo_masks=True
        )
        photos = np.random.default_rng(1).uniform(0, 255, (2, _SIZE, _SIZE, 3))
        inputs = {
            "image": photos.astype(np.float32),
            "label": np.array([0, 1], np.int32),
            "photo": photos.astype(np.float32),
        }
        packed = model(inputs, training=False)["photo_mask"]
        featured = extractor_lib.with_feature_map(extractor)(inputs["photo"])
        height, width = featured["features"].shape[1:3]
        self.assertEqual(packed.shape, (2, height, width, 3 + 1))
        cells = model.get_layer("identity_head")(
            extractor.get_layer("projection")(featured["features"])
        )
        self.assertAllClose(packed[..., :3], cells, atol=1e-5)
        small = tf.image.resize(
            featured["mask"], (height, width), antialias=True
        )
        self.assertAllClose(packed[..., 3:], small, atol=1e-5)
        # The cells pooled with the mask are what the embedding pools.
        self.assertAllClose(
            featured["embedding"], extractor(inputs["photo"])["embedding"]
        )

    def test_photo_masks_need_photo_logits(self):
        with self.assertRaisesRegex(ValueError, "photo_masks needs"):
            extractor_lib.build_training_model(
                extractor_lib.build_extractor(_TINY), 3, photo_masks=True
            )

    def test_photo_logits_need_the_head(self):
        with self.assertRaisesRegex(ValueError, "identity head"):
            extractor_lib.build_training_model(
                extractor_lib.build_extractor(_TINY), 0, photo_logits=True
            )


class DistillationRunTest(tf.test.TestCase):

    def test_run_distils_and_resumes_without_the_teacher(self):
        root = testing.make_tempdir(self)
        catalog, photos = catalogue_and_photos(root)
        teacher = export_teacher(root)
        workdir = os.path.join(root, "run")
        values = dict(
            photos=photos,
            teacher=teacher,
            photo_loss_weight=1.0,
            photo_mask_loss_weight=1.0,
            identity_loss_weight=0.3,
            extractor=extractor_lib.ExtractorConfig(
                backbone="tiny",
                backbone_weights="none",
                image_size=_SIZE,
                embedding_dim=8,
            ),
        )
        config = tiny_config(catalog, steps=2, **values)
        trainer.train(config, workdir)
        self.assertEqual(trained_steps(workdir), 2)
        tags = summary_tags(os.path.join(workdir, "tensorboard"))
        self.assertIn("loss/photo_logits_loss", tags)
        self.assertIn("loss/photo_mask_loss", tags)
        with np.load(os.path.join(workdir, photo_targets.TARGETS_FILE)) as kept:
            self.assertEqual(kept["targets"].shape, (12, 4))
        # The targets stay with the run: resuming needs no teacher.
        shutil.rmtree(os.path.dirname(teacher))
        trainer.train(tiny_config(catalog, steps=4, **values), workdir)
        self.assertEqual(trained_steps(workdir), 4)
        self.assertEmpty(glob.glob(os.path.join(workdir, "*.tmp*")))
        # An export of the run says what it was distilled from.
        _, members = assemble.build_export_model([workdir])
        self.assertEqual(
            members[0]["distilled_from"],
            {"teacher": os.path.abspath(teacher), "photos": photos},
        )
