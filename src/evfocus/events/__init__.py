"""Event data: the EventStream contract, file formats and tensor representations."""

from evfocus.events.stream import EventStream

__all__ = ["EventStream"]
