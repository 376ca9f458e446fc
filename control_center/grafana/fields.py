"""How a TMDB parameter looks on a panel: its unit as a Grafana unit id, its yellow and
red limits as threshold colours, its enum states and boolean values as value mappings,
and its description; on a panel of several parameters, one override per field."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dm

from control_center.telemetry.tmdb import Limits, Parameter

# TMDB unit -> Grafana unit id, from the SDK's catalogue of Grafana's units. Grafana has
# no km/s; a unit without an id is shown with Grafana's custom "suffix:<text>" unit.
UNITS: dict[str, str] = {
    "": units.NoUnit, "m": units.Meter, "km": units.Kilometer,
    "m/s": units.MetersPerSecond, "km/s": "suffix:km/s", "%": units.Percent,
    "V": units.Volt, "A": units.Ampere, "W": units.Watt, "degC": units.Celsius,
    "deg": units.Degrees, "deg/s": units.DegreesPerSecond, "dBm": units.DecibelMilliWatt,
    "bit/s": units.BitsPerSecondSI, "kg": units.Kilogram, "s": units.Seconds,
}
# Colours of enum states in order of their values (never yellow or red: those mean
# limits), and of booleans.
STATE_COLOURS = ("blue", "green", "purple", "light-blue", "dark-green", "dark-purple",
                 "super-light-blue", "light-green", "light-purple", "dark-blue")
BOOLEAN_TEXT = {"true": ("TRUE", "green"), "false": ("FALSE", "blue")}


def grafana_unit(unit: str) -> str:
    """The Grafana unit id of a TMDB unit (``suffix:<unit>`` when Grafana has none)."""
    return UNITS.get(unit, f"suffix:{unit}")


def threshold_steps(limits: Limits) -> list[dm.Threshold]:
    """Absolute threshold steps for yellow and red limits, base green.

    Grafana colours a value with the last step whose value it reaches, so the low
    limits open the scale: below red_low red, from red_low yellow (if there is a
    yellow low), from yellow_low green, from yellow_high yellow, from red_high red. A
    value exactly on a limit takes the colour above it (the TMDB's checks are strict).
    """
    if limits.red_low is not None:
        base = "red"
    elif limits.yellow_low is not None:
        base = "yellow"
    else:
        base = "green"
    steps = [dm.Threshold(value=None, color=base)]
    if limits.red_low is not None:
        steps.append(dm.Threshold(value=limits.red_low,
                                  color="yellow" if limits.yellow_low is not None else "green"))
    if limits.yellow_low is not None:
        steps.append(dm.Threshold(value=limits.yellow_low, color="green"))
    if limits.yellow_high is not None:
        steps.append(dm.Threshold(value=limits.yellow_high, color="yellow"))
    if limits.red_high is not None:
        steps.append(dm.Threshold(value=limits.red_high, color="red"))
    return steps


def value_mappings(parameter: Parameter) -> list[dm.ValueMapping]:
    """Enum states (value -> state name) and booleans (true/false) for display."""
    if parameter.type == "enum":
        return [dm.ValueMap(options={
            str(value): dm.ValueMappingResult(text=name,
                                              color=STATE_COLOURS[index % len(STATE_COLOURS)],
                                              index=index)
            for index, (value, name) in enumerate(sorted(parameter.states.items()))})]
    if parameter.type == "boolean":
        return [dm.SpecialValueMap(options=dm.DashboardSpecialValueMapOptions(
            match=dm.SpecialValueMatch(match),
            result=dm.ValueMappingResult(text=label, color=colour, index=index)))
            for index, (match, (label, colour)) in enumerate(BOOLEAN_TEXT.items())]
    return []


def is_state(parameter: Parameter) -> bool:
    """Enums and booleans, and text (strings, binary as hex): drawn as state timelines,
    aggregated with last() (InfluxQL has no mean() of a string: the query would fail)."""
    return parameter.type in ("enum", "boolean", "string", "binary")


def boolean_mappings() -> list[dm.ValueMapping]:
    """TRUE green and FALSE blue, for a boolean that is no TMDB parameter (a link flag)."""
    flag = Parameter(name="flag", bit_offset=0, bit_length=1, type="boolean")
    return value_mappings(flag)


def _field_properties(parameter: Parameter, *,
                      threshold_lines: bool) -> list[dm.DynamicConfigValue]:
    properties = [
        dm.DynamicConfigValue("unit", grafana_unit(parameter.unit)),
        dm.DynamicConfigValue("thresholds", dm.ThresholdsConfig(
            mode=dm.ThresholdsMode.ABSOLUTE, steps=threshold_steps(parameter.limits))),
        dm.DynamicConfigValue("mappings", value_mappings(parameter)),
    ]
    if parameter.description:
        properties.append(dm.DynamicConfigValue("description", parameter.description))
    if threshold_lines and parameter.limits.defined:
        properties.append(dm.DynamicConfigValue("custom.thresholdsStyle",
                                                {"mode": "dashed"}))
    return properties


def configure_fields(panel: dm.Panel, parameters: Sequence[Parameter]) -> None:
    """Unit, thresholds (from the limits), value mappings and description of each field.

    One parameter: the panel's defaults. Several: an override per field (by name, the
    targets alias ``$col`` so the field is named after the parameter) and the common
    unit, if any, in the defaults.
    """
    defaults = panel.field_config.defaults
    if defaults.thresholds is None:  # else Grafana's default: red from 80
        defaults.thresholds = dm.ThresholdsConfig(
            mode=dm.ThresholdsMode.ABSOLUTE, steps=[dm.Threshold(value=None, color="green")])
    if not parameters:
        return
    lines = panel.type_val == "timeseries"
    if len(parameters) == 1:
        (parameter,) = parameters
        defaults.unit = grafana_unit(parameter.unit)
        defaults.thresholds.steps = threshold_steps(parameter.limits)
        defaults.mappings = value_mappings(parameter)
        if parameter.description:
            defaults.description = parameter.description
        if lines and parameter.limits.defined:
            custom = defaults.custom
            if isinstance(custom, dict):
                custom["thresholdsStyle"] = {"mode": "dashed"}
            elif custom is not None and hasattr(custom, "thresholds_style"):
                custom.thresholds_style = common.GraphThresholdsStyleConfig(
                    mode=common.GraphTresholdsStyleMode.DASHED)
        if parameter.description and not panel.description:
            panel.description = parameter.description
        return
    field_units = {p.unit for p in parameters}
    if len(field_units) == 1:
        defaults.unit = grafana_unit(field_units.pop())
    for parameter in parameters:
        panel.field_config.overrides.append(dm.DashboardFieldConfigSourceOverrides(
            matcher=dm.MatcherConfig(id_val="byName", options=parameter.name),
            properties=_field_properties(parameter, threshold_lines=lines)))
    if not panel.description:
        panel.description = "\n".join(f"{p.name}: {p.description}" for p in parameters
                                      if p.description)

