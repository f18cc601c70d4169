"""Event files of every common format → EventStream, each through the format's own library.

``read_events(path, format=None, width=..., height=..., flip_polarity=..., time_unit=...)`` detects the
format (``detect_format``) and reads it; ``FORMATS`` lists them. One module per family: ``text`` (.npz,
.txt), ``dsec`` (DSEC HDF5), ``aedat`` (iniVation AEDAT 4.0, events and frames), ``prophesee`` (RAW
EVT 2.0/3.0, DAT, HDF5); the reference .npy and E2VID HDF5 readers are ``events.io``'s.
"""

from evfocus.events.formats.registry import FORMATS, EventFormat, detect_format, read_events

__all__ = ["FORMATS", "EventFormat", "detect_format", "read_events"]
