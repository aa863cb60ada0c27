"""The edge runtime: sources, ring, scheduler, encoder backends, head, publisher.

Nothing here imports TensorFlow.
"""
