"""Everything that needs TensorFlow: architectures, datasets, training, evaluation, export.

TensorFlow is imported inside the modules that need it, so that `lrcn synth` and the data
tools run without it.
"""

import os

# TensorFlow's C++ start-up chatter hides the figures a user is looking for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
