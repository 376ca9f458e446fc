"""End to end against the real servers: simulators → Mosquitto → ingest → influxd."""

from __future__ import annotations

import numpy as np

from control_center.telemetry.tmdb import Tmdb


def test_param_message_columns_as_stored(tmdbs: list[Tmdb]) -> None:
    """Non-finite floats become null, float32 as its shortest float32 text (what InfluxDB
    stores),
    and column views (not contiguous) are written whole."""
    import json

    from control_center.pipeline.publisher import param_message
    from control_center.telemetry.records import DecodedBatch

    packet = tmdbs[0].packet("lander_nav")
    wide = np.arange(8, dtype=np.int64)
    batch = DecodedBatch(
        spacecraft="lander", packet=packet, times_ns=np.array([5, 6, 7, 8], dtype=np.int64),
        sequence_counts=np.arange(4, dtype=np.uint16),
        values={"altitude": np.array([1.5, np.nan, np.inf, 0.1], dtype=np.float32),
                "throttle": np.array([0.1 + 0.2, -0.0, 1e300, 5e-324]),
                "radar_lock": np.array([True, False, True, False]),
                "descent_phase": wide[::2]},
        raw={})
    document = json.loads(param_message(batch))
    values = document["values"]
    assert document["time_ns"] == [5, 6, 7, 8]
    # altitude is a float32 parameter: its shortest float32 text, as InfluxDB stores it.
    assert values["altitude"] == [1.5, None, None, 0.1]
    assert b'"altitude":[1.5,null,null,0.1]' in param_message(batch)
    # throttle's calibration is declared float32 too; 1e300 is no float32 (null).
    assert values["throttle"] == [0.3, -0.0, None, 0.0]
    assert values["radar_lock"] == [True, False, True, False]
    assert values["descent_phase"] == [0, 2, 4, 6]
    orbit = tmdbs[1].packet("orbiter_orbit")  # position_x: a float64 parameter
    doubles = json.loads(param_message(DecodedBatch(
        spacecraft="orbiter", packet=orbit, times_ns=np.array([5, 6], dtype=np.int64),
        sequence_counts=np.arange(2, dtype=np.uint16),
        values={"position_x": np.array([0.1 + 0.2, 5e-324])}, raw={})))
    assert doubles["values"]["position_x"] == [0.1 + 0.2, 5e-324]
