"""Tests for bench.mask_scores: the scores of a predicted mask, on hand-made masks."""

from absl.testing import absltest
import numpy as np

from bench import mask_scores


def _box(top, bottom, left, right, size=4):
    mask = np.zeros((size, size), bool)
    mask[top:bottom, left:right] = True
    return mask


class MaskScoresTest(absltest.TestCase):

    def test_iou_of_two_overlapping_bands(self):
        # Rows 0-1 against rows 1-2 of a 4 x 4 frame: 4 shared pixels of 12.
        self.assertAlmostEqual(
            mask_scores.iou(_box(0, 2, 0, 4), _box(1, 3, 0, 4)), 4 / 12
        )
        self.assertEqual(mask_scores.iou(_box(0, 2, 0, 4), _box(2, 4, 0, 4)), 0)
        self.assertEqual(mask_scores.iou(_box(0, 0, 0, 0), _box(0, 0, 0, 0)), 1)

    def test_thresholds_and_mass(self):
        true = _box(0, 2, 0, 2)  # the top-left 2 x 2
        predicted = np.zeros((4, 4), np.float32)
        predicted[0:2, 0:2] = 0.4  # on the product, weak
        predicted[0:2, 2] = 0.3  # beside it
        predicted[3, 3] = 0.1  # a trace far away
        scores = mask_scores.mask_scores(predicted, true)
        # Nothing reaches 0.5; half the peak (0.2) keeps the product and
        # the column beside it: 4 of 6 pixels.
        self.assertEqual(scores["IoU@0.5"], 0.0)
        self.assertAlmostEqual(scores["IoU@half-peak"], 4 / 6)
        self.assertAlmostEqual(scores["mass inside"], 1.6 / (1.6 + 0.6 + 0.1))
        self.assertEqual(scores["predicted area"], 0.0)

    def test_a_confident_mask(self):
        true = _box(1, 3, 1, 3)
        predicted = np.where(_box(1, 3, 1, 4), 0.9, 0.0).astype(np.float32)
        scores = mask_scores.mask_scores(predicted, true)
        self.assertAlmostEqual(scores["IoU@0.5"], 4 / 6)
        self.assertAlmostEqual(scores["IoU@half-peak"], 4 / 6)
        self.assertAlmostEqual(scores["mass inside"], 4 / 6)
        self.assertAlmostEqual(scores["predicted area"], 6 / 16)

    def test_an_all_zero_mask(self):
        scores = mask_scores.mask_scores(np.zeros((4, 4)), _box(0, 2, 0, 2))
        self.assertEqual(
            (scores["IoU@0.5"], scores["IoU@half-peak"], scores["mass inside"]),
            (0.0, 0.0, 0.0),
        )

    def test_refuses_masks_of_different_sizes(self):
        with self.assertRaisesRegex(ValueError, "differ in shape"):
            mask_scores.mask_scores(np.zeros((4, 4)), np.zeros((8, 8), bool))

    def test_mean_over_queries(self):
        true = [_box(0, 2, 0, 4), _box(0, 2, 0, 4)]
        predicted = np.stack([_box(0, 2, 0, 4), _box(2, 4, 0, 4)]).astype(
            np.float32
        )
        self.assertAlmostEqual(
            mask_scores.score_masks(predicted, true)["IoU@0.5"], 0.5
        )


class FitTrueMaskTest(absltest.TestCase):

    def test_a_square_mask_at_its_own_size_is_unchanged(self):
        mask = _box(1, 3, 0, 2, size=8)
        np.testing.assert_array_equal(mask_scores.fit_true_mask(mask, 8), mask)

    def test_a_wide_mask_is_placed_as_its_photo_is(self):
        # A 4 x 8 photo fitted into 4 x 4 is scaled by half and centred:
        # rows 1-2 hold it, rows 0 and 3 are padding (never product).
        mask = np.zeros((4, 8), bool)
        mask[:, :4] = True  # the left half of the photo, full height
        fitted = mask_scores.fit_true_mask(mask, 4)
        np.testing.assert_array_equal(fitted, _box(1, 3, 0, 2))


if __name__ == "__main__":
    absltest.main()
