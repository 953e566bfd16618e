"""beau_tf: background-agnostic product retrieval from catalogue images alone."""

import os

# TensorFlow's INFO lines at start-up ("Could not find cuda drivers", oneDNN,
# CPU instructions) read like problems in a command's output; its warnings
# and errors still show. Set here because `python -m beau_tf.<command>`
# imports this package before anything imports TensorFlow, which reads the
# variable once. A value the user set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
