"""Tests for the train command's own checks (beau_tf/train.py)."""

import os

from absl import flags
from absl.testing import absltest

from beau_tf import train
from beau_tf.models import extractor as extractor_lib
from beau_tf.training import config as config_lib
from tests.fixtures import testing


def _config(**paths) -> config_lib.TrainConfig:
    return config_lib.TrainConfig(
        extractor=extractor_lib.ExtractorConfig(
            backbone="tiny", backbone_weights="none", image_size=64
        ),
        **paths,
    )


class ConfigFromFlagsTest(absltest.TestCase):

    def test_backbone_flags_reach_the_extractor_config(self):
        self.addCleanup(flags.FLAGS.unparse_flags)
        flags.FLAGS(
            [
                "train",
                "--workdir=unused",
                "--catalog=unused",
                "--trainable_from=",
                "--notrain_batchnorm",
                "--pooling=gap",
            ]
        )

        config = train.config_from_flags().extractor

        self.assertEqual(
            (config.trainable_from, config.train_batchnorm, config.pooling),
            ("", False, "gap"),
        )


class CheckInputsExistTest(absltest.TestCase):

    def test_existing_inputs_pass(self):
        folder = testing.make_tempdir(self)
        train.check_inputs_exist(_config(catalog=folder, background_dir=""))

    def test_missing_grocery_catalogue_says_how_to_make_it(self):
        with self.assertRaisesRegex(
            FileNotFoundError,
            r"--catalog=out/grocery/none\.csv does not exist; .*"
            r"python -m beau_tf\.convert_grocery",
        ):
            train.check_inputs_exist(_config(catalog="out/grocery/none.csv"))

    def test_missing_backgrounds_are_named_without_the_grocery_hint(self):
        folder = testing.make_tempdir(self)
        missing = os.path.join(folder, "photos")
        with self.assertRaisesRegex(
            FileNotFoundError, r"--background_dir=.*photos does not exist\.$"
        ):
            train.check_inputs_exist(
                _config(catalog=folder, background_dir=missing)
            )

    def test_missing_photos_are_named(self):
        folder = testing.make_tempdir(self)
        with self.assertRaisesRegex(
            FileNotFoundError, r"--photos=.*shop does not exist\.$"
        ):
            train.check_inputs_exist(
                _config(
                    catalog=folder,
                    photos=os.path.join(folder, "shop"),
                    teacher=folder,
                    photo_loss_weight=1.0,
                )
            )

    def test_a_teacher_that_is_not_an_export_is_refused(self):
        folder = testing.make_tempdir(self)
        with self.assertRaisesRegex(
            FileNotFoundError, "not a SavedModel version written by"
        ):
            train.check_inputs_exist(
                _config(
                    catalog=folder,
                    photos=folder,
                    teacher=folder,
                    photo_loss_weight=1.0,
                )
            )


if __name__ == "__main__":
    absltest.main()
