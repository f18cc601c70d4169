"""Lightning stages, losses, callbacks and the run folder: with data/datamodule.py, the only Lightning code."""
