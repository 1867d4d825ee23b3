"""The Kite Connect ticker's binary protocol: frames to NumPy columns and back. No Django here."""

from marketdata.kite.frames import build_frame, build_frame_columns, build_heartbeat
from marketdata.kite.protocol import (
    IST,
    MODE_CODES,
    MODE_FULL,
    MODE_LTP,
    MODE_QUOTE,
    FrameError,
    TickBatch,
    parse_frame,
    segment_divisor,
)

__all__ = [
    "IST",
    "MODE_CODES",
    "MODE_FULL",
    "MODE_LTP",
    "MODE_QUOTE",
    "FrameError",
    "TickBatch",
    "build_frame",
    "build_frame_columns",
    "build_heartbeat",
    "parse_frame",
    "segment_divisor",
]
