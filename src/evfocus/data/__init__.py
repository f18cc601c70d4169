"""Sweeps as data: capture folders, simulated training samples and eval sweeps, the DataModule."""
