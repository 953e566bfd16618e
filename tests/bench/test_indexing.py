"""The index benches' sweep and equal-recall helpers."""

from absl.testing import absltest

from bench import indexing


class SweepGridTest(absltest.TestCase):

    def _sweep(self, recalls: dict, stop_at=0.99):
        measured = []

        def measure(outer, inner):
            measured.append((outer, inner))
            return recalls[outer] + 0.001 * inner, float(outer * inner)

        found = indexing.sweep_grid(list(recalls), (1, 2), measure, stop_at)
        return found, measured

    def test_widens_while_recall_grows_and_stops_when_it_no_longer_pays(self):
        found, measured = self._sweep({1: 0.80, 2: 0.90, 4: 0.901, 8: 0.95})
        # 4 gains 0.001 over 2: 8 is never measured.
        self.assertEqual(
            measured, [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2)]
        )
        self.assertEqual(found[0], ((1, 1), 0.801, 1.0))

    def test_stops_once_the_recall_to_compare_at_is_reached(self):
        _, measured = self._sweep({1: 0.80, 2: 0.995, 4: 0.999})
        self.assertEqual([o for o, _ in measured], [1, 1, 2, 2])


class FrontierTest(absltest.TestCase):

    def test_fastest_setting_reaching_each_level_and_none_beyond_reach(self):
        points = [("slow", 0.97, 3.0), ("fast", 0.95, 1.0), ("mid", 0.96, 2.0)]
        self.assertEqual(
            indexing.frontier(points, (0.90, 0.96, 0.97, 0.99)),
            {
                0.90: ("fast", 0.95, 1.0),
                0.96: ("mid", 0.96, 2.0),
                0.97: ("slow", 0.97, 3.0),
            },
        )


if __name__ == "__main__":
    absltest.main()
