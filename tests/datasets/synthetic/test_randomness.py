"""Tests for beau_tf.datasets.synthetic.randomness: keyed random streams."""

from absl.testing import absltest
import numpy as np

from beau_tf.datasets.synthetic import randomness


class KeyedRngTest(absltest.TestCase):

    def test_same_key_same_numbers(self):
        np.testing.assert_array_equal(
            randomness.keyed_rng(3, randomness.QUERY_STREAM, 5).random(8),
            randomness.keyed_rng(3, randomness.QUERY_STREAM, 5).random(8),
        )

    def test_seed_stream_and_index_each_change_the_numbers(self):
        first = randomness.keyed_rng(3, randomness.QUERY_STREAM, 5).random(8)
        for other in (
            randomness.keyed_rng(4, randomness.QUERY_STREAM, 5),
            randomness.keyed_rng(3, randomness.BACKGROUND_STREAM, 5),
            randomness.keyed_rng(3, randomness.QUERY_STREAM, 6),
        ):
            self.assertFalse(np.array_equal(first, other.random(8)))

    def test_pick_returns_every_option_in_time(self):
        rng = randomness.keyed_rng(0, randomness.PRODUCT_STREAM)
        options = ("a", "b", "c")
        self.assertCountEqual(
            set(randomness.pick(rng, options) for _ in range(100)), options
        )


if __name__ == "__main__":
    absltest.main()
