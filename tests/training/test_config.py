"""Tests for beau_tf.training.config: a run's configuration and the workdir
files that record it."""

import os

from absl.testing import absltest
from absl.testing import parameterized

from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.training import config as config_lib
from tests.fixtures import testing
from tests.fixtures import training


def _save_a_checkpoint(workdir: str) -> None:
    """What the first checkpoint leaves for `config_lib.has_started`."""
    folder = os.path.join(workdir, config_lib.CHECKPOINT_DIR)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, config_lib.CHECKPOINT_STATE_FILE), "w"):
        pass


class TrainConfigTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.catalog = training.tiny_catalog(testing.make_tempdir(self))

    @parameterized.parameters(
        (dict(steps=5, checkpoint_every=2), "not a multiple"),
        (
            dict(mask_loss_weight=0.0, identity_loss_weight=0.0),
            "nothing to train",
        ),
        (dict(strategy="cloud"), "strategy='cloud'"),
        (dict(batch_size=0), "batch_size=0"),
    )
    def test_bad_values_are_named(self, overrides, message):
        with self.assertRaisesRegex(ValueError, message):
            training.tiny_config(self.catalog, **overrides)

    def test_dict_round_trip(self):
        config = training.tiny_config(self.catalog, mask_loss_weight=0.5)
        self.assertEqual(
            config_lib.TrainConfig.from_dict(config.to_dict()), config
        )

    def test_workdir_refuses_another_run_but_accepts_more_steps(self):
        workdir = testing.make_tempdir(self)
        config_lib.record_config(
            workdir, training.tiny_config(self.catalog), ""
        )
        _save_a_checkpoint(workdir)
        config_lib.record_config(
            workdir, training.tiny_config(self.catalog, steps=8), ""
        )
        with self.assertRaisesRegex(ValueError, "learning_rate: 0.001 -> 0.5"):
            config_lib.record_config(
                workdir,
                training.tiny_config(self.catalog, learning_rate=0.5),
                "",
            )

    def test_a_run_that_never_started_is_replaced(self):
        # Issue 21, finding 10: a run whose inputs failed their checks left
        # its settings, and the corrected command was refused.
        workdir = testing.make_tempdir(self)
        config_lib.record_config(
            workdir,
            training.tiny_config(self.catalog),
            "--learning_rate=1e-3\n",
        )
        self.assertFalse(config_lib.has_started(workdir))
        fixed = training.tiny_config(self.catalog, learning_rate=0.5)
        config_lib.record_config(workdir, fixed, "--learning_rate=0.5\n")
        self.assertEqual(config_lib.load_train_config(workdir), fixed)
        with open(os.path.join(workdir, "flags.txt")) as stream:
            self.assertEqual(stream.read(), "--learning_rate=0.5\n")

    def test_missing_workdir_config_is_a_clear_error(self):
        with self.assertRaisesRegex(
            FileNotFoundError, "not a beau_tf training"
        ):
            config_lib.load_train_config(testing.make_tempdir(self))


class DistillationConfigTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.catalog = synthetic.write_synthetic_catalog(
            os.path.join(testing.make_tempdir(self), "s"),
            num_products=2,
            queries_per_product=0,
            num_backgrounds=1,
            image_size=training.IMAGE_SIZE,
        )

    @parameterized.parameters(
        dict(photo_loss_weight=1.0),
        dict(photo_loss_weight=1.0, photos="p"),
        dict(photo_loss_weight=1.0, teacher="t"),
        dict(photos="p", teacher="t"),
    )
    def test_the_loss_needs_weight_photos_and_teacher_together(self, **values):
        with self.assertRaisesRegex(ValueError, "needs all three"):
            training.tiny_config(self.catalog, **values)

    def test_bad_temperature_is_named(self):
        with self.assertRaisesRegex(ValueError, "teacher_temperature=0"):
            training.tiny_config(
                self.catalog,
                photo_loss_weight=1.0,
                photos="p",
                teacher="t",
                teacher_temperature=0.0,
            )

    def test_photo_masks_need_the_distillation_loss(self):
        with self.assertRaisesRegex(ValueError, "needs the distillation loss"):
            training.tiny_config(self.catalog, photo_mask_loss_weight=1.0)
        config = training.tiny_config(
            self.catalog,
            photo_loss_weight=1.0,
            photo_mask_loss_weight=0.5,
            photos="p",
            teacher="t",
        )
        self.assertTrue(config.learns_photo_masks)

    @parameterized.parameters("photo_photometric", "teacher_per_view")
    def test_photo_options_need_the_distillation_loss(self, name):
        with self.assertRaisesRegex(
            ValueError, f"{name}=True needs the distillation loss"
        ):
            training.tiny_config(self.catalog, **{name: True})
        config = training.tiny_config(
            self.catalog,
            photo_loss_weight=1.0,
            photos="p",
            teacher="t",
            **{name: True},
        )
        self.assertEqual(
            config_lib.TrainConfig.from_dict(config.to_dict()), config
        )

    def test_distillation_alone_is_something_to_train(self):
        config = training.tiny_config(
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


if __name__ == "__main__":
    absltest.main()
