"""Tests for the beau_tf.export command line's own checks (the export itself
is tested end to end in tests/test_end_to_end.py)."""

from absl.testing import absltest

from beau_tf import export


class ParseMaskViewsTest(absltest.TestCase):

    def test_paddings_with_a_trained_member(self):
        self.assertEqual(
            export.parse_mask_views(["0.25", "1"], (1.0, 0.5), 1), (0.25, 1.0)
        )
        self.assertEqual(export.parse_mask_views([], (0.5,), 0), ())

    def test_untrained_backbones_alone_cannot_find_the_product(self):
        with self.assertRaisesRegex(ValueError, "needs a trained member"):
            export.parse_mask_views(["0.25"], (1.0,), 0)

    def test_bad_values_name_the_flag(self):
        with self.assertRaisesRegex(ValueError, "--query_mask_views=wide"):
            export.parse_mask_views(["wide"], (1.0,), 1)
        with self.assertRaisesRegex(ValueError, "zoom 1.0"):
            export.parse_mask_views(["0.25"], (0.75,), 1)


if __name__ == "__main__":
    absltest.main()
