"""Everything that needs TensorFlow: architectures, datasets, training, evaluation, export.

Import TensorFlow lazily (inside the modules that need it), so that `lrcn synth` and the data
tools run without it.
"""
