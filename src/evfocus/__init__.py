"""evfocus: all-in-focus imaging, depth and refocusing from event focal stacks."""

__version__ = "0.1.0"
