"""Simulated focal sweeps: textures, layered scenes, the renderer, event-camera models, the simulator."""
