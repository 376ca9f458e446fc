"""A small mission database built with yamcs-pymdb, Yamcs's own XTCE generator, for the
XTCE importer's tests: what a partner running Yamcs would hand us.

The root system ``Demo-Sat`` has the CCSDS primary header of
``yamcs.pymdb.ccsds.add_ccsds_header`` (two aggregate parameters and the packet length;
containers restrict ``ccsds_packet_id/apid``), a subsystem ``power`` whose packet holds
the mode enumeration the housekeeping temperature's context alarm depends on, integers of
odd sizes, both signs and both byte orders, IEEE floats of 32 and 64 bits, a polynomial
and a spline calibrator, a boolean, a fixed string, limits with persistence, a command and
an algorithm (a telemetry import leaves those two out).

pymdb writes no ``maxValue`` ranges in enumerations: :func:`demo_xtce` adds one to the mode
(values 3..9 are ``TEST``) in the dumped XML, as a partner's hand-edited file would.
"""

from __future__ import annotations

from lxml import etree
from yamcs.pymdb import (
    Algorithm,
    BooleanParameter,
    Command,
    Container,
    EnumeratedParameter,
    EqExpression,
    FloatEncoding,
    FloatParameter,
    InputParameter,
    IntegerEncoding,
    IntegerEncodingScheme,
    IntegerParameter,
    Interpolate,
    ParameterEntry,
    Polynomial,
    StringEncoding,
    StringParameter,
    Subsystem,
    System,
    ThresholdAlarm,
    ThresholdContextAlarm,
    ccsds,
    uint8_t,
    uint16_t,
)

ROOT_NAME = "Demo-Sat"
APIDS = {"hk": 100, "pwr": 101, "evt": 102}
MODE_STATES = {0: "OFF", 1: "ON", 2: "SAFE", 3: "TEST"}  # 3 is the range 3..9
MODE_RANGE = (3, 9)
# Spline points reach past the largest 16-bit raw value: space-packet-parser's linear
# interpolation fails on the last point itself.
SPLINE = ([0.0, 1000.0, 70000.0], [-5.0, 20.0, 100.0])
POLYNOMIAL = [0.5, 0.01, 1e-7]


def _signed(bits: int) -> IntegerEncoding:
    return IntegerEncoding(bits=bits, scheme=IntegerEncodingScheme.TWOS_COMPLEMENT)


def _unsigned(bits: int, little_endian: bool = False) -> IntegerEncoding:
    return IntegerEncoding(bits=bits, little_endian=little_endian,
                           scheme=IntegerEncodingScheme.UNSIGNED)


def demo_system() -> System:
    """The pymdb System (see the module docstring)."""
    system = System(ROOT_NAME, long_description="A demonstration spacecraft built with "
                    "yamcs-pymdb.")
    header = ccsds.add_ccsds_header(system)
    power = Subsystem(system, "power", short_description="Electrical power")
    mode = EnumeratedParameter(power, "mode", choices=[(v, s) for v, s in MODE_STATES.items()],
                               encoding=uint8_t, short_description="Power mode")
    battery = FloatParameter(power, "battery_voltage", bits=32,
                             encoding=FloatEncoding(bits=32), units="V",
                             alarm=ThresholdAlarm(warning_low=24.0, warning_high=33.0,
                                                  critical_low=22.0, critical_high=34.0))
    charge = IntegerParameter(power, "charge_current", signed=True, encoding=_signed(16),
                              units="mA")
    Container(power, "pwr", base=header.tm_container,
              condition=EqExpression(header.tm_apid, APIDS["pwr"]), rate=2.0,
              long_description="Power status every 2 seconds.",
              entries=[ParameterEntry(mode), ParameterEntry(battery), ParameterEntry(charge)])

    temperature = IntegerParameter(
        system, "board_temp", signed=True, encoding=_signed(12), units="degC",
        long_description="Board temperature.",
        alarm=ThresholdAlarm(warning_low=-10, warning_high=40, critical_low=-20,
                             critical_high=50, minimum_violations=3),
        context_alarms=[ThresholdContextAlarm(EqExpression(mode, "SAFE"),
                                              ThresholdAlarm(warning_low=-5, warning_high=30))])
    entries = [
        ParameterEntry(temperature),
        ParameterEntry(IntegerParameter(system, "nibble", signed=False, encoding=_unsigned(4))),
        ParameterEntry(FloatParameter(system, "bus_voltage", bits=32,
                                      encoding=FloatEncoding(bits=32), units="V")),
        ParameterEntry(FloatParameter(system, "orbit_phase", bits=64,
                                      encoding=FloatEncoding(bits=64), units="rad")),
        ParameterEntry(FloatParameter(system, "load_current", encoding=_unsigned(16, True),
                                      calibrator=Polynomial(POLYNOMIAL), units="A")),
        ParameterEntry(FloatParameter(system, "heater_power", encoding=uint16_t,
                                      calibrator=Interpolate(*SPLINE), units="W")),
        ParameterEntry(IntegerParameter(system, "wheel_speed", signed=True,
                                        encoding=IntegerEncoding(
                                            bits=32, little_endian=True,
                                            scheme=IntegerEncodingScheme.TWOS_COMPLEMENT))),
        ParameterEntry(IntegerParameter(system, "uptime", signed=False, encoding=_unsigned(40))),
        ParameterEntry(IntegerParameter(system, "energy", signed=False, encoding=_unsigned(64))),
        ParameterEntry(StringParameter(system, "software_tag", encoding=StringEncoding(bits=64))),
        ParameterEntry(BooleanParameter(system, "safe_flag", encoding=_unsigned(1))),
        ParameterEntry(IntegerParameter(system, "tri", signed=False, encoding=_unsigned(3))),
        ParameterEntry(IntegerParameter(system, "delta", signed=True, encoding=_signed(4))),
    ]
    Container(system, "hk", base=header.tm_container,
              condition=EqExpression(header.tm_apid, APIDS["hk"]), entries=entries)
    Container(system, "evt", base=header.tm_container,
              condition=EqExpression(header.tm_apid, APIDS["evt"]),
              entries=[ParameterEntry(IntegerParameter(system, "event_id", signed=False,
                                                       encoding=_unsigned(7))),
                       ParameterEntry(BooleanParameter(system, "event_ack",
                                                       encoding=_unsigned(1))),
                       ParameterEntry(IntegerParameter(system, "event_arg", signed=True,
                                                       encoding=_signed(24)))])
    Command(system, "reboot", base=header.tc_command,
            assignments={header.tc_apid.name: 5})
    Algorithm(system, "temperature_trend", language="python", text="trend = 0",
              inputs=[InputParameter(temperature)], outputs=[])
    return system


def demo_xtce() -> bytes:
    """The system's XTCE 1.2 as pymdb dumps it, with the mode's range 3..9 (``maxValue``)."""
    text = demo_system().dumps()
    root = etree.fromstring(text.encode())
    namespace = etree.QName(root).namespace
    for enumeration in root.iter(f"{{{namespace}}}Enumeration"):
        if enumeration.get("label") == MODE_STATES[MODE_RANGE[0]]:
            enumeration.set("maxValue", str(MODE_RANGE[1]))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
