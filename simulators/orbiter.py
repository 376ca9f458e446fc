"""Deterministic physics of the ISLS-1 orbiter: a 100 km polar lunar orbit and the relay
link to the lander at the landing site of :mod:`simulators.physics`.

Geometry, Moon-centred inertial frame (z along the lunar spin axis, the lunar equator
taken as the ecliptic, 1.5 deg off):

* the orbit is a two-body Kepler ellipse (90 x 110 km altitude, i = 90 deg) propagated
  analytically from the elapsed time, so positions never drift;
* the Moon turns once per sidereal month; at the start the landing site (43 N, 20 W)
  lies in the orbit plane, so the orbiter passes within relay range once per revolution
  for about a day and a half before the plane drifts away (1.1 deg per revolution);
* the Sun is fixed along +x for the run, 30 deg out of the orbit plane (beta angle),
  giving about 45 min of cylindrical-shadow eclipse per 118 min revolution;
* the Earth is over selenographic (0 N, 0 E) as the Moon is tidally locked, hence it
  turns with the Moon; its distance follows the eccentric lunar orbit.

That places the site at 30 deg hour angle before local noon, the lander's landing time.
Power and thermal are lumped first-order models; noise from
``numpy.random.default_rng(seed)`` is drawn only in :meth:`OrbiterModel.step`.
"""

from __future__ import annotations

import math
from enum import IntEnum

import numpy as np

from simulators.lander import FAULTS
from simulators.physics import (
    ANOMALISTIC_MONTH_S,
    EARTH_MOON_DISTANCE_KM,
    MOON_ORBIT_ECCENTRICITY,
    MOON_RADIUS_KM,
    MOON_SIDEREAL_DAY_S,
    SITE_HOUR_ANGLE_AT_START_DEG,
    SITE_LAT_DEG,
    SITE_LON_DEG,
    KeplerOrbit,
    Thermostat,
    Vec3,
    clamp,
    dot,
    first_order,
    mean_from_true_anomaly,
    norm,
    scale,
    sub,
    wrap_deg,
)

Sample = dict[str, float | int | bool]


class PowerMode(IntEnum):
    """``power_mode`` states of the TMDB."""

    SAFE = 0
    NOMINAL = 1
    ECLIPSE = 2
    RELAY = 3


# Orbit: 90 x 110 km about the mean radius, polar.
PERILUNE_ALT_KM = 90.0
APOLUNE_ALT_KM = 110.0
SEMI_MAJOR_AXIS_KM = MOON_RADIUS_KM + 0.5 * (PERILUNE_ALT_KM + APOLUNE_ALT_KM)
ECCENTRICITY = 0.5 * (APOLUNE_ALT_KM - PERILUNE_ALT_KM) / SEMI_MAJOR_AXIS_KM
INCLINATION_DEG = 90.0
ARG_PERILUNE_DEG = 90.0  # perilune over the north pole
SUN_DIRECTION: Vec3 = (1.0, 0.0, 0.0)
SUN_ANGULAR_DIAMETER_RAD = math.radians(0.533)
# The orbit plane holds the site at the start and is at the site's hour angle from the
# Sun line, so the beta angle equals |hour angle| = 30 deg.
RAAN_DEG = SITE_HOUR_ANGLE_AT_START_DEG
MOON_ROTATION_AT_START_DEG = RAAN_DEG - SITE_LON_DEG  # inertial longitude of 0 E
# Start 19 deg of argument of latitude past the ascending node: the orbiter rises over
# the site's 5 deg horizon about 3 minutes into the run.
ARG_LATITUDE_AT_START_DEG = 19.0
INITIAL_ORBIT_NUMBER = 412  # revolutions since lunar orbit insertion
MOON_MEAN_ANOMALY_AT_START_DEG = 90.0  # Earth at its mean distance, receding

# Relay: CCSDS Proximity-1 UHF link, lander to orbiter.
RELAY_FREQUENCY_MHZ = 401.585625
LANDER_TX_DBM = 33.0  # 2 W
LANDER_LINE_LOSS_DB = 1.0
ORBITER_RX_GAIN_DBI = 3.0
RELAY_MIN_ELEVATION_DEG = 5.0
RELAY_LOCK_THRESHOLD_DBM = -120.0
NO_SIGNAL_DBM = -150.0
RELAY_RATE_BPS = 256_000
FRAME_BYTES = 1024

# Power: array strings at 50 V through an MPPT converter onto the 28 V bus; the battery
# charges and discharges through regulators of the same efficiency.
SOLAR_CURRENT_A = 12.0
ARRAY_VOLTAGE = 50.0
CONVERTER_EFFICIENCY = 0.95
BUS_VOLTAGE = 28.0
BATTERY_CAPACITY_AH = 45.0
BATTERY_RESISTANCE_OHM = 0.06
BATTERY_CHARGE_MAX_A = 8.0
BASE_LOAD_W = 300.0
RELAY_LOAD_W = 40.0
SAFE_MODE_SOC = 25.0

# Thermal.
PANEL_SUN_C = 90.0
PANEL_ECLIPSE_C = -100.0
PANEL_TAU_S = 300.0
BATTERY_HEATER_W = 12.0
PROPULSION_HEATER_W = 8.0
ECLIPSE_SURVIVAL_HEATERS_W = 20.0

_NOISE_DRAWS = 10


def _site_vector(rotation_rad: float) -> Vec3:
    """Inertial unit vector of the landing site for a lunar rotation angle."""
    lat = math.radians(SITE_LAT_DEG)
    lon = math.radians(SITE_LON_DEG) + rotation_rad
    return (math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat))


def _occulted(observer: Vec3, target: Vec3) -> bool:
    """Whether the segment from ``observer`` to ``target`` (km) passes through the Moon."""
    d = sub(target, observer)
    t = clamp(-dot(observer, d) / dot(d, d), 0.0, 1.0)
    closest = (observer[0] + t * d[0], observer[1] + t * d[1], observer[2] + t * d[2])
    return norm(closest) < MOON_RADIUS_KM


class OrbiterModel:
    """ISLS-1 orbiter on a polar 100 km orbit, relaying the lander."""

    spacecraft = "orbiter"

    def __init__(self, seed: int = 0, fault: str | None = None) -> None:
        # Faults are accepted for interface symmetry with the lander; none is modelled yet.
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of "
                             f"{', '.join(FAULTS)} (or none)")
        self.fault = fault
        self._rng = np.random.default_rng(seed)
        self._t = 0.0
        nu0 = math.radians(ARG_LATITUDE_AT_START_DEG - ARG_PERILUNE_DEG)
        self.orbit = KeplerOrbit(
            semi_major_axis=SEMI_MAJOR_AXIS_KM, eccentricity=ECCENTRICITY,
            inclination_deg=INCLINATION_DEG, raan_deg=RAAN_DEG, argp_deg=ARG_PERILUNE_DEG,
            mean_anomaly_0=mean_from_true_anomaly(nu0, ECCENTRICITY))
        _, _, u0 = self.orbit.state(0.0)
        self._node_crossings_at_start = math.floor(u0 / (2.0 * math.pi))
        self._relay_frames = 0.0
        self._soc = 92.0
        self._battery_current = 0.0
        self._solar_current = 0.0
        self._load_power = BASE_LOAD_W
        self._panel_temp = PANEL_SUN_C
        self._battery_temp = 18.0
        self._propulsion_temp = 20.0
        self._radiator_temp = -5.0
        self._battery_heater = Thermostat(16.0, 19.0, on=False)
        self._propulsion_heater = Thermostat(18.0, 22.0, on=False)
        self._heater_power = 0.0
        self._noise = [0.0] * _NOISE_DRAWS
        self._update_geometry()
        self._power_mode = PowerMode.NOMINAL

    # ------------------------------------------------------------------ public API

    @property
    def elapsed(self) -> float:
        return self._t

    def step(self, dt: float) -> None:
        """Advance simulated time by ``dt`` seconds: the orbit is recomputed from the
        elapsed time, power and thermal integrate over ``dt``."""
        if dt <= 0.0:
            raise ValueError(f"dt must be positive, got {dt}")
        self._noise = self._rng.standard_normal(_NOISE_DRAWS).tolist()
        self._t += dt
        self._update_geometry()
        if self._relay_locked:
            self._relay_frames += RELAY_RATE_BPS / 8.0 / FRAME_BYTES * dt
        self._step_thermal(dt)
        self._step_power(dt)

    def sample(self, packet: str) -> Sample:
        """Engineering values of every non-overlay parameter of ``packet``."""
        if packet == "orbiter_orbit":
            return self._sample_orbit()
        if packet == "orbiter_power":
            return self._sample_power()
        if packet == "orbiter_thermal":
            return self._sample_thermal()
        if packet == "orbiter_relay":
            return self._sample_relay()
        raise KeyError(f"orbiter has no packet {packet!r}; expected orbiter_orbit, "
                       "orbiter_power, orbiter_thermal or orbiter_relay")

    # ------------------------------------------------------------------ geometry

    def _update_geometry(self) -> None:
        t = self._t
        position, velocity, arg_latitude = self.orbit.state(t)
        self._position, self._velocity = position, velocity
        self._orbit_number = INITIAL_ORBIT_NUMBER + math.floor(
            arg_latitude / (2.0 * math.pi)) - self._node_crossings_at_start
        r = norm(position)
        self._altitude = r - MOON_RADIUS_KM
        rotation = math.radians(MOON_ROTATION_AT_START_DEG) \
            + 2.0 * math.pi * t / MOON_SIDEREAL_DAY_S
        self._latitude = math.degrees(math.asin(position[2] / r))
        self._longitude = wrap_deg(math.degrees(math.atan2(position[1], position[0])
                                                - rotation))
        # Cylindrical shadow behind the Moon; the illuminated fraction ramps over the
        # penumbra, whose width is the sun's angular diameter times the distance behind
        # the terminator plane.
        along = dot(position, SUN_DIRECTION)
        if along >= 0.0:
            self._illumination = 1.0
        else:
            across = norm(sub(position, scale(SUN_DIRECTION, along)))
            width = max(-along * SUN_ANGULAR_DIAMETER_RAD, 0.1)
            self._illumination = clamp((across - MOON_RADIUS_KM) / width + 0.5, 0.0, 1.0)
        self._in_eclipse = self._illumination < 0.5
        # Earth over the sub-Earth point (0 N, 0 E), distance on the eccentric lunar orbit.
        moon_anomaly = math.radians(MOON_MEAN_ANOMALY_AT_START_DEG) \
            + 2.0 * math.pi * t / ANOMALISTIC_MONTH_S
        distance = EARTH_MOON_DISTANCE_KM * (1.0 - MOON_ORBIT_ECCENTRICITY
                                             * math.cos(moon_anomaly))
        earth = (distance * math.cos(rotation), distance * math.sin(rotation), 0.0)
        self._earth_range = norm(sub(earth, position))
        self._earth_visible = not _occulted(position, earth)
        # Relay geometry from the lander's local horizon.
        up = _site_vector(rotation)
        line = sub(position, scale(up, MOON_RADIUS_KM))
        self._relay_range = norm(line)
        sin_elevation = dot(line, up) / self._relay_range
        self._lander_elevation = math.degrees(math.asin(clamp(sin_elevation, -1.0, 1.0)))
        self._lander_visible = self._lander_elevation > RELAY_MIN_ELEVATION_DEG
        if self._lander_visible:
            # Link budget: EIRP + receive gain - free-space path loss
            # FSPL = 20 log10(d_km) + 20 log10(f_MHz) + 32.44 dB. The lander's patch
            # antenna gives about +2 dBi at zenith, -8 dBi near the horizon.
            lander_gain = -8.0 + 10.0 * sin_elevation
            fspl = 20.0 * math.log10(self._relay_range) \
                + 20.0 * math.log10(RELAY_FREQUENCY_MHZ) + 32.44
            self._signal = LANDER_TX_DBM - LANDER_LINE_LOSS_DB + lander_gain \
                + ORBITER_RX_GAIN_DBI - fspl + 0.5 * self._noise[0]
        else:
            self._signal = NO_SIGNAL_DBM
        self._relay_locked = self._lander_visible and self._signal > RELAY_LOCK_THRESHOLD_DBM

    # ------------------------------------------------------------------ power and thermal

    def _step_power(self, dt: float) -> None:
        """Bus power balance through the battery charge and discharge regulators;
        battery coulomb counting dSOC/dt = I / capacity."""
        self._solar_current = SOLAR_CURRENT_A * self._illumination
        self._load_power = BASE_LOAD_W + self._heater_power \
            + (RELAY_LOAD_W if self._relay_locked else 0.0)
        available = self._solar_current * ARRAY_VOLTAGE * CONVERTER_EFFICIENCY
        surplus = available - self._load_power
        open_circuit = 25.0 + 8.2 * self._soc / 100.0
        if surplus > 0.0:
            # Constant current, then tapering over the last 4 % (constant voltage); the
            # shunt regulator dumps what the battery cannot take.
            battery = min(surplus * CONVERTER_EFFICIENCY / open_circuit,
                          BATTERY_CHARGE_MAX_A * clamp((100.0 - self._soc) / 4.0, 0.0, 1.0))
        else:
            battery = surplus / (open_circuit * CONVERTER_EFFICIENCY)
        self._battery_current = battery
        self._soc = clamp(self._soc + battery * dt / 3600.0 / BATTERY_CAPACITY_AH * 100.0,
                          0.0, 100.0)
        if self._soc < SAFE_MODE_SOC:
            self._power_mode = PowerMode.SAFE
        elif self._relay_locked:
            self._power_mode = PowerMode.RELAY
        elif self._in_eclipse:
            self._power_mode = PowerMode.ECLIPSE
        else:
            self._power_mode = PowerMode.NOMINAL

    def _step_thermal(self, dt: float) -> None:
        """Lumped first-order nodes; the panel swings between its sunlit and eclipse
        radiative equilibria."""
        light = self._illumination
        panel_eq = PANEL_ECLIPSE_C + (PANEL_SUN_C - PANEL_ECLIPSE_C) * light
        self._panel_temp = first_order(self._panel_temp, panel_eq, PANEL_TAU_S, dt)
        battery_heat = BATTERY_HEATER_W if self._battery_heater.update(
            self._battery_temp) else 0.0
        # Discharge heats the pack (I^2 R plus entropic heat, lumped).
        discharge = max(-self._battery_current, 0.0)
        battery_eq = 10.0 + 6.0 * light + 0.9 * battery_heat + 0.05 * discharge ** 2
        self._battery_temp = first_order(self._battery_temp, battery_eq, 1800.0, dt)
        propulsion_heat = PROPULSION_HEATER_W if self._propulsion_heater.update(
            self._propulsion_temp) else 0.0
        propulsion_eq = 8.0 + 10.0 * light + 2.0 * propulsion_heat
        self._propulsion_temp = first_order(self._propulsion_temp, propulsion_eq, 2400.0, dt)
        radiator_eq = -35.0 + 30.0 * light + 0.02 * (self._load_power - BASE_LOAD_W)
        self._radiator_temp = first_order(self._radiator_temp, radiator_eq, 900.0, dt)
        survival = ECLIPSE_SURVIVAL_HEATERS_W * (1.0 - light)
        self._heater_power = battery_heat + propulsion_heat + survival

    # ------------------------------------------------------------------ samples

    def _sample_orbit(self) -> Sample:
        p, v = self._position, self._velocity
        return {
            "position_x": p[0],
            "position_y": p[1],
            "position_z": p[2],
            "velocity_x": v[0],
            "velocity_y": v[1],
            "velocity_z": v[2],
            "altitude": self._altitude,
            "latitude": self._latitude,
            "longitude": self._longitude,
            "in_eclipse": self._in_eclipse,
            "earth_visible": self._earth_visible,
            "orbit_spare": 0,
            "orbit_number": int(self._orbit_number),
        }

    def _sample_power(self) -> Sample:
        n = self._noise
        battery_current = clamp(self._battery_current + 0.02 * n[1], -20.4, 20.4)
        voltage = 25.0 + 8.2 * self._soc / 100.0 + battery_current * BATTERY_RESISTANCE_OHM
        discharging = self._battery_current < 0.0
        return {
            "solar_array_current": max(self._solar_current + 0.01 * n[2], 0.0)
            if self._solar_current > 0.0 else 0.0,
            "battery_soc": self._soc,
            "battery_voltage": clamp(voltage + 0.01 * n[3], 0.0, 40.9),
            "battery_current": battery_current,
            # The discharge regulator holds the bus a little lower than the shunt one.
            "bus_voltage": BUS_VOLTAGE - (0.05 if discharging else 0.0) + 0.01 * n[4],
            "load_power": max(self._load_power + 1.5 * n[5], 0.0),
            "power_mode": int(self._power_mode),
        }

    def _sample_thermal(self) -> Sample:
        n = self._noise
        return {
            "panel_temperature": self._panel_temp + 0.2 * n[6],
            "battery_temperature": self._battery_temp + 0.05 * n[7],
            "propulsion_temperature": self._propulsion_temp + 0.05 * n[8],
            "radiator_temperature": self._radiator_temp + 0.1 * n[9],
            "heater_power": self._heater_power,
        }

    def _sample_relay(self) -> Sample:
        return {
            "lander_visible": self._lander_visible,
            "relay_locked": self._relay_locked,
            "relay_spare": 0,
            "relay_range": self._relay_range,
            "lander_elevation": self._lander_elevation,
            "relay_signal_strength": self._signal,
            "relay_data_rate": RELAY_RATE_BPS if self._relay_locked else 0,
            "relay_frames": int(self._relay_frames),
            "earth_range": self._earth_range,
        }
