"""Tests for beau_tf.exporting.assemble: the model to export from training
workdirs and untrained backbones."""

import tensorflow as tf

from beau_tf.exporting import assemble
from beau_tf.serving import saved_model


class BuildExportModelTest(tf.test.TestCase):

    def test_untrained_backbones_need_no_workdir(self):
        model, members = assemble.build_export_model(
            backbones=["efficientnet_lite0", "efficientnet_lite0"],
            image_size=64,
            weights=[1.0, 2.0],
        )
        self.assertEqual(saved_model.image_size_of(model), 64)
        self.assertEqual(model.output["embedding"].shape[-1], 2 * 1280)
        self.assertEqual(
            members,
            [
                {
                    "backbone": "efficientnet_lite0",
                    "weights": "imagenet",
                    "trained_mask_decoder": False,
                    "pooling": "gap",
                    "weight": weight,
                }
                for weight in (1.0, 2.0)
            ],
        )

    def test_nothing_to_export_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "--workdirs.*--backbones"):
            assemble.build_export_model()


class CheckMaskViewsTest(tf.test.TestCase):

    def test_mask_views_need_a_trained_decoder(self):
        untrained = {
            "backbone": "efficientnet_lite0",
            "trained_mask_decoder": False,
        }
        trained = {"workdir": "runs/a", "trained_mask_decoder": True}
        assemble.check_mask_views((0.25,), [untrained, trained])
        assemble.check_mask_views((), [untrained])
        with self.assertRaisesRegex(ValueError, "never did"):
            assemble.check_mask_views((0.25,), [untrained])


if __name__ == "__main__":
    tf.test.main()
