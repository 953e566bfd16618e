"""Tests for beau_tf.datasets.synthetic.labels: the print on packages."""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.datasets.synthetic import canvas
from beau_tf.datasets.synthetic import designs
from beau_tf.datasets.synthetic import labels

_N = 64


class DrawLabelTest(parameterized.TestCase):

    @parameterized.parameters(
        "stripes", "dots", "chevrons", "gradient", "solid"
    )
    def test_print_stays_inside_its_region(self, pattern):
        label = dataclasses.replace(
            designs.product_spec(0, 0).label, pattern=pattern
        )
        cv = canvas.Canvas(_N)
        box = (0.2, 0.3, 0.8, 0.7)
        region = cv.rect(box)
        labels.draw_label(cv, label, (22, 38, 74), box, region, None)
        self.assertEqual(float(cv.alpha[region == 0].max()), 0.0)
        self.assertEqual(float(cv.alpha[region == 1].min()), 1.0)
        # Words and patterns: more than one colour on the label.
        inside = cv.rgb[region == 1]
        self.assertGreater(len(np.unique(inside.round(), axis=0)), 1)

    def test_label_box_sits_inside_the_body(self):
        form = designs.product_spec(0, 0).form
        for front_label in (True, False):
            box, radius = labels.label_box(
                dataclasses.replace(form, front_label=front_label),
                0.3,
                0.7,
                0.2,
                0.9,
            )
            x0, y0, x1, y1 = box
            self.assertTrue(0.3 <= x0 < x1 <= 0.7 and 0.2 < y0 < y1 < 0.9)
            self.assertEqual(radius > 0, front_label)


if __name__ == "__main__":
    absltest.main()
