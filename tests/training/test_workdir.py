"""Tests for beau_tf.training.workdir: reading a finished training run."""

import dataclasses
import os

from absl.testing import absltest
import numpy as np

from beau_tf.training import config as config_lib
from beau_tf.training import workdir as workdir_lib
from tests.fixtures import testing
from tests.fixtures import training


def _config(image_size: int = 64, **values) -> config_lib.TrainConfig:
    """A run of the tiny extractor; its catalogue need not exist."""
    return config_lib.TrainConfig(
        extractor=dataclasses.replace(
            training.TINY_EXTRACTOR, image_size=image_size
        ),
        catalog="catalog.csv",
        **values,
    )


class LoadExtractorsTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.root = testing.make_tempdir(self)

    def test_finished_runs_give_their_extractors_and_image_size(self):
        workdirs = [
            training.finished_workdir(os.path.join(self.root, name), _config())
            for name in ("a", "b")
        ]
        self.assertTrue(all(map(workdir_lib.is_finished, workdirs)))
        extractors, image_size = workdir_lib.load_extractors(workdirs)
        self.assertLen(extractors, 2)
        self.assertEqual(image_size, 64)
        outputs = extractors[0](np.zeros((1, 64, 64, 3), np.float32))
        self.assertEqual(outputs["mask"].shape, (1, 64, 64, 1))

    def test_an_unfinished_run_is_refused(self):
        workdir = os.path.join(self.root, "running")
        config_lib.record_config(workdir, _config(), "")
        self.assertFalse(workdir_lib.is_finished(workdir))
        with self.assertRaisesRegex(
            FileNotFoundError, "extractor.keras not found.*has not finished"
        ):
            workdir_lib.load_extractors([workdir])

    def test_a_folder_that_is_not_a_workdir_is_refused(self):
        with self.assertRaisesRegex(
            FileNotFoundError, "not a beau_tf training workdir"
        ):
            workdir_lib.load_extractors([self.root])

    def test_mixed_image_sizes_are_refused(self):
        workdirs = [
            training.finished_workdir(
                os.path.join(self.root, str(size)), _config(size)
            )
            for size in (64, 32)
        ]
        with self.assertRaisesRegex(
            ValueError, r"image sizes \[64, 32\]; ensemble members must share"
        ):
            workdir_lib.load_extractors(workdirs)


class SourceTest(absltest.TestCase):

    def test_a_run_is_named_by_its_workdir(self):
        workdir = os.path.join(testing.make_tempdir(self), "run")
        config_lib.record_config(workdir, _config(), "")
        self.assertEqual(
            workdir_lib.source(workdir),
            {"workdir": os.path.abspath(workdir), "trained_mask_decoder": True},
        )

    def test_a_run_without_mask_loss_or_attention_has_an_untrained_decoder(
        self,
    ):
        workdir = os.path.join(testing.make_tempdir(self), "run")
        config = config_lib.TrainConfig(
            extractor=dataclasses.replace(
                training.TINY_EXTRACTOR, image_size=64, pooling="gap"
            ),
            catalog="catalog.csv",
            mask_loss_weight=0.0,
            identity_loss_weight=1.0,
        )
        config_lib.record_config(workdir, config, "")
        self.assertFalse(workdir_lib.source(workdir)["trained_mask_decoder"])

    def test_a_distilled_run_names_its_teacher_and_photos(self):
        root = testing.make_tempdir(self)
        workdir = os.path.join(root, "run")
        config = _config(
            photo_loss_weight=1.0,
            photos=os.path.join(root, "photos"),
            teacher=os.path.join(root, "teacher"),
        )
        config_lib.record_config(workdir, config, "")
        self.assertEqual(
            workdir_lib.source(workdir),
            {
                "workdir": os.path.abspath(workdir),
                "trained_mask_decoder": True,
                "distilled_from": {
                    "teacher": os.path.join(root, "teacher"),
                    "photos": os.path.join(root, "photos"),
                },
            },
        )


if __name__ == "__main__":
    absltest.main()
