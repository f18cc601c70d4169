"""Sweeps → all-in-focus image, depth map and refocus video with a trained checkpoint (``src/aif.py``).

``sources`` resolves the inputs, ``run`` processes one sweep, ``video``/``outputs``/``report`` write its
files. Nothing here imports ``training/`` or Lightning.
"""
