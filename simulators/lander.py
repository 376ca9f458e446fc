"""Deterministic physics of the ISLS-1 lander: powered descent from a 15 km perilune,
then surface operations at the landing site (see :mod:`simulators.physics`).

The descent is a 2-D point mass over a spherical Moon (altitude, vertical and
along-track velocity) with inverse-square gravity and the centrifugal and Coriolis terms
of polar coordinates, driven by a throttleable 7500 N engine whose thrust direction
follows a rate-limited pitch program. Mass flow is thrust / (Isp g0). Power and thermal
subsystems are lumped first-order models. Sensor noise comes from
``numpy.random.default_rng(seed)`` and is drawn in :meth:`LanderModel.step` only, a fixed
number of draws per step, so samples depend on nothing but the seed and the step
sequence, and :meth:`LanderModel.sample` may be called any number of times.

Not modelled: lunar-night hibernation (after about 13 Earth days on the surface the
battery simply runs down), terrain under the descent track, and guidance dispersions:
the trajectory is the same for every seed, only the sensor readings differ.
"""

from __future__ import annotations

import math
from enum import IntEnum

import numpy as np

from simulators.physics import (
    G0_M_S2,
    MOON_RADIUS_M,
    MU_MOON_M3_S2,
    SITE_LAT_DEG,
    Quat,
    Thermostat,
    body_rates_deg_s,
    clamp,
    first_order,
    ornstein_uhlenbeck,
    quat_axis,
    quat_mul,
    quat_normalize,
    site_hour_angle_deg,
    sun_elevation_deg,
    vis_viva_speed,
)

FAULTS: tuple[str, ...] = ("battery-drain", "thruster-stuck", "heater-off", "sensor-freeze")
FAULT_ONSET_S = 30.0  # nominal data first, so the operator sees the fault arrive

Sample = dict[str, float | int | bool]


class Phase(IntEnum):
    """``descent_phase`` states of the TMDB."""

    ORBIT_COAST = 0
    BRAKING = 1
    APPROACH = 2
    TERMINAL = 3
    TOUCHDOWN = 4
    SURFACE = 5


class PowerMode(IntEnum):
    """``power_mode`` states of the TMDB."""

    SAFE = 0
    DESCENT = 1
    SURFACE_DAY = 2
    SURFACE_NIGHT = 3


# Vehicle (Chang'e-3 class).
WET_MASS_KG = 3800.0
PROPELLANT_KG = 2400.0
MAX_THRUST_N = 7500.0
MIN_THROTTLE = 0.2  # variable-thrust engine, 1500..7500 N
ISP_S = 315.0
EXHAUST_VELOCITY = ISP_S * G0_M_S2
MAX_PITCH_RATE_DEG_S = 5.0  # attitude control authority

# Descent orbit 15 x 100 km, powered descent initiation at perilune.
PERILUNE_ALT_M = 15_000.0
APOLUNE_ALT_M = 100_000.0
PDI_TIME_S = 20.0
BRAKING_END_ALT_M = 2_400.0
APPROACH_START_SPEED = 80.0  # horizontal m/s at which braking hands over to approach
BRAKING_PROFILE_K = 2.2  # shape of the braking altitude profile, see _guidance
TERMINAL_ALT_M = 100.0
TERMINAL_DESCENT_RATE = 1.5
RADAR_LOCK_ALT_M = 10_000.0
TOUCHDOWN_TO_SURFACE_S = 5.0
SITE_TILT_PITCH_DEG = -2.3  # local slope under the legs
SITE_TILT_ROLL_DEG = 1.6

# Power: 8-cell Li-ion pack, open-circuit voltage 25 V empty .. 33.2 V full.
BATTERY_CAPACITY_AH = 60.0
BATTERY_RESISTANCE_OHM = 0.08
BATTERY_CHARGE_MAX_A = 6.0
BUS_VOLTAGE = 28.0
DESCENT_LOAD_A = 11.0  # avionics, GNC, radar, engine valves, transmitter
SURFACE_LOAD_A = 5.5
PAYLOAD_LOAD_A = 2.0
SOLAR_MAX_A = 10.0
SOLAR_PANEL_ELEVATION_DEG = 30.0  # panel normal; the panel drive tracks the sun azimuth
SOLAR_DEPLOY_DELAY_S = 60.0
SOLAR_DEPLOY_DURATION_S = 60.0
PAYLOAD_ON_DELAY_S = 300.0
SAFE_MODE_SOC = 20.0
DRAIN_FAULT_PCT_PER_MIN = 15.0  # battery-drain: yellow 30 % about 5 min, red 15 % 6 min in

# Thermal.
BATTERY_HEATER_W = 20.0
TANK_HEATER_W = 15.0
BATTERY_TAU_S = 300.0
BATTERY_K_PER_W = 4.5  # heater watts to equilibrium kelvin above the sink
TANK_K_PER_W = 4.0
COLD_SINK_C = -40.0
NIGHT_SURFACE_K = 103.0  # about -170 degC
NOON_SURFACE_K = 373.0  # about +100 degC
ABS_ZERO_C = -273.15

# Normal draws per step, by index: 0-2 altitude and velocities, 3-5 gyro noise, 6-8
# attitude jitter, 9-13 power sensors, 14-18 thermistors and the surface IR sensor.
_NOISE_DRAWS = 19


class LanderModel:
    """ISLS-1 lander: ORBIT_COAST, BRAKING, APPROACH, TERMINAL, TOUCHDOWN, SURFACE."""

    spacecraft = "lander"

    def __init__(self, seed: int = 0, fault: str | None = None,
                 fault_until: float | None = None) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown lander fault {fault!r}; expected one of "
                             f"{', '.join(FAULTS)} (or none)")
        self.fault = fault
        # The fault clears at this simulated time (None: it never does), so a
        # demonstration or test can show an alarm returning to normal.
        self.fault_until = fault_until
        self._rng = np.random.default_rng(seed)
        self._t = 0.0
        # Translational state: altitude above the site, vertical velocity (up +),
        # along-track velocity (signed, + forward).
        self._phase = Phase.ORBIT_COAST
        r_peri = MOON_RADIUS_M + PERILUNE_ALT_M
        a = MOON_RADIUS_M + 0.5 * (PERILUNE_ALT_M + APOLUNE_ALT_M)
        self._h = PERILUNE_ALT_M
        self._vz = 0.0
        self._vh = vis_viva_speed(MU_MOON_M3_S2, r_peri, a)
        self._propellant = PROPELLANT_KG
        self._thrust = 0.0
        self._approach_decel = 0.5
        self._pdi_speed = self._vh
        self._pdi_altitude = self._h
        self._touchdown_time: float | None = None
        self.touchdown_vertical_velocity: float | None = None
        self._radar_lock = False
        self._legs = False
        # Attitude: pitch of the thrust axis (body +z) from the local vertical, positive
        # tilting the thrust backwards; roll; yaw about the thrust axis; limit-cycle jitter.
        self._pitch = math.radians(90.0)  # retrograde, ready for the braking burn
        self._roll = 0.0
        self._yaw = 0.0
        self._yaw_rate = 0.0
        self._jitter = [0.0, 0.0, 0.0]
        self._q: Quat = self._attitude()
        self._rates = (0.0, 0.0, 0.0)
        # Power.
        self._soc = 95.0
        self._battery_current = -DESCENT_LOAD_A
        self._solar_current = 0.0
        self._load_current = DESCENT_LOAD_A
        self._bus_voltage = BUS_VOLTAGE
        self._payload = False
        self._power_mode = PowerMode.DESCENT
        # Thermal.
        self._engine_temp = -35.0
        self._battery_temp = 20.0
        self._avionics_temp = 18.0
        self._tank_temp = 16.0
        self._battery_heater = Thermostat(18.0, 22.0, on=True)
        self._tank_heater = Thermostat(14.0, 18.0, on=True)
        self._heater_power = BATTERY_HEATER_W + TANK_HEATER_W
        self._sun_elevation = sun_elevation_deg(SITE_LAT_DEG, site_hour_angle_deg(0.0))
        # Measured values, refreshed by step() (frozen by the sensor-freeze fault).
        self._meas_altitude = self._h
        self._meas_vz = self._vz
        self._meas_vh = self._vh
        self._noise = [0.0] * _NOISE_DRAWS

    # ------------------------------------------------------------------ public API

    @property
    def elapsed(self) -> float:
        return self._t

    @property
    def phase(self) -> Phase:
        return self._phase

    def step(self, dt: float) -> None:
        """Advance simulated time by ``dt`` seconds (stable up to at least 1 s)."""
        if dt <= 0.0:
            raise ValueError(f"dt must be positive, got {dt}")
        self._noise = self._rng.standard_normal(_NOISE_DRAWS).tolist()
        t0 = self._t
        self._t = t0 + dt
        self._sun_elevation = sun_elevation_deg(SITE_LAT_DEG, site_hour_angle_deg(self._t))
        self._step_descent(t0, dt)
        self._step_attitude(dt)
        self._step_power(dt)
        self._step_thermal(dt)
        self._measure()

    def sample(self, packet: str) -> Sample:
        """Engineering values of every non-overlay parameter of ``packet``."""
        if packet == "lander_nav":
            return self._sample_nav()
        if packet == "lander_power":
            return self._sample_power()
        if packet == "lander_thermal":
            return self._sample_thermal()
        raise KeyError(f"lander has no packet {packet!r}; expected lander_nav, lander_power "
                       "or lander_thermal")

    # ------------------------------------------------------------------ helpers

    def _fault_active(self, name: str) -> bool:
        return self.fault == name and self._t >= FAULT_ONSET_S and (
            self.fault_until is None or self._t < self.fault_until)

    @property
    def _airborne(self) -> bool:
        return self._phase < Phase.TOUCHDOWN

    # ------------------------------------------------------------------ guidance and dynamics

    def _guidance(self, mass: float, g_eff: float) -> tuple[float, float]:
        """Thrust (N) and commanded pitch (rad) for the current phase.

        Each phase tracks a vertical-velocity reference with a first-order loop; the
        vertical thrust also cancels the effective gravity g - v_h^2 / r.
        """
        h, vz, vh = self._h, self._vz, self._vh
        if self._phase == Phase.BRAKING:
            # Full thrust, mostly retrograde. The altitude tracks a reference that is a
            # function of the horizontal speed, h_ref = h_gate + dH (1 - (1 - x)^k) with
            # x = 1 at PDI and 0 at the high gate: level flight at PDI, and a descent rate
            # near the gate's that grows with k. Its rate dh_ref/dt follows from the
            # current horizontal deceleration.
            thrust = MAX_THRUST_N
            span = self._pdi_speed - APPROACH_START_SPEED
            x = clamp((vh - APPROACH_START_SPEED) / span, 0.0, 1.0)
            drop = self._pdi_altitude - BRAKING_END_ALT_M
            h_ref = BRAKING_END_ALT_M + drop * (1.0 - math.pow(1.0 - x, BRAKING_PROFILE_K))
            decel = max(thrust * math.sin(self._pitch) / mass, 0.5)
            dx_dt = -decel / span
            vz_ref = drop * BRAKING_PROFILE_K * math.pow(1.0 - x, BRAKING_PROFILE_K - 1.0) * dx_dt
            vz_ref = clamp(vz_ref + (h_ref - h) / 20.0, -80.0, 10.0)
            az = (vz_ref - vz) / 8.0
            tz = clamp(mass * (az + g_eff), 0.0, 0.9 * thrust)
            th = math.sqrt(thrust * thrust - tz * tz)
            return thrust, math.atan2(th, tz)
        if self._phase == Phase.APPROACH:
            # Constant-deceleration profile down to the terminal gate at 1.5 m/s, while
            # the remaining horizontal speed is cancelled over the time to go.
            a_d = self._approach_decel
            above = max(h - TERMINAL_ALT_M, 0.0)
            vz_ref = -math.sqrt(TERMINAL_DESCENT_RATE ** 2 + 2.0 * a_d * above)
            t_go = max((-vz_ref - TERMINAL_DESCENT_RATE) / a_d, 4.0)
            az = a_d + (vz_ref - vz) / 3.0
            ah = clamp(-vh / t_go, -2.0, 2.0)
            max_tilt = math.radians(60.0)
        else:  # TERMINAL: constant descent rate, null the drift
            az = (-TERMINAL_DESCENT_RATE - vz) / 2.0
            ah = clamp(-vh / 3.0, -1.0, 1.0)
            max_tilt = math.radians(15.0)
        # Never command less than half gravity upwards: the engine cannot pull down, and
        # a near-zero vertical component would swing the thrust axis to horizontal.
        az = max(az, -0.5 * g_eff)
        tz = mass * (az + g_eff)
        th = -mass * ah  # positive: thrust backwards
        thrust = clamp(math.hypot(tz, th), MIN_THROTTLE * MAX_THRUST_N, MAX_THRUST_N)
        return thrust, clamp(math.atan2(th, tz), -max_tilt, max_tilt)

    def _step_descent(self, t0: float, dt: float) -> None:
        phase = self._phase
        if phase == Phase.ORBIT_COAST and self._t > PDI_TIME_S:
            self._phase = Phase.BRAKING
            self._pdi_speed = self._vh
            self._pdi_altitude = self._h
        elif phase == Phase.BRAKING and self._vh <= APPROACH_START_SPEED:
            self._phase = Phase.APPROACH
            self._legs = True
            # Deceleration that takes the current descent rate to the terminal gate.
            above = max(self._h - TERMINAL_ALT_M, 1.0)
            self._approach_decel = clamp(
                (self._vz ** 2 - TERMINAL_DESCENT_RATE ** 2) / (2.0 * above), 0.2, 2.0)
        elif phase == Phase.APPROACH and self._h <= TERMINAL_ALT_M:
            self._phase = Phase.TERMINAL
        elif phase == Phase.TOUCHDOWN and self._touchdown_time is not None \
                and self._t - self._touchdown_time >= TOUCHDOWN_TO_SURFACE_S:
            self._phase = Phase.SURFACE
        if not self._airborne:
            self._thrust = 0.0
            return
        mass = WET_MASS_KG - PROPELLANT_KG + self._propellant
        r = MOON_RADIUS_M + self._h
        gravity = MU_MOON_M3_S2 / (r * r)
        g_eff = gravity - self._vh * self._vh / r
        if self._phase == Phase.ORBIT_COAST or self._propellant <= 0.0:
            thrust, pitch_cmd = 0.0, math.radians(90.0)
        else:
            thrust, pitch_cmd = self._guidance(mass, g_eff)
        max_turn = math.radians(MAX_PITCH_RATE_DEG_S) * dt
        self._pitch += clamp(pitch_cmd - self._pitch, -max_turn, max_turn)
        # Burn at most the propellant left (the last step of a dry tank is partial).
        mass_flow = thrust / EXHAUST_VELOCITY
        if mass_flow * dt > self._propellant:
            thrust *= self._propellant / (mass_flow * dt)
            mass_flow = thrust / EXHAUST_VELOCITY
        self._thrust = thrust
        # Polar-coordinate equations of motion: vertical gets thrust, gravity and
        # centrifugal; horizontal gets thrust and the Coriolis term -v_h v_z / r.
        a_vert = thrust * math.cos(self._pitch) / mass - g_eff
        a_horiz = -thrust * math.sin(self._pitch) / mass - self._vh * self._vz / r
        vz_new = self._vz + a_vert * dt
        h_new = self._h + 0.5 * (self._vz + vz_new) * dt
        self._vh += a_horiz * dt
        self._propellant = max(self._propellant - mass_flow * dt, 0.0)
        if self._h < RADAR_LOCK_ALT_M and self._phase >= Phase.BRAKING:
            self._radar_lock = True
        if h_new <= 0.0:
            # Contact inside this step: find when, stop the engine, the legs absorb the rest.
            fraction = self._h / max(self._h - h_new, 1e-9)
            self.touchdown_vertical_velocity = self._vz + (vz_new - self._vz) * fraction
            self._touchdown_time = t0 + fraction * dt
            self._phase = Phase.TOUCHDOWN
            self._h = self._vz = self._vh = 0.0
            self._thrust = 0.0
            self._radar_lock = False
            return
        self._h, self._vz = h_new, vz_new

    # ------------------------------------------------------------------ attitude

    def _attitude(self) -> Quat:
        """Body-to-local-level quaternion: pitch about y (thrust axis tilted backwards for
        positive pitch), then roll about x, then yaw about the thrust axis, plus jitter."""
        jp, jr, jy = self._jitter
        q = quat_mul(quat_axis(1, -(self._pitch + jp)), quat_axis(0, self._roll + jr))
        return quat_normalize(quat_mul(q, quat_axis(2, self._yaw + jy)))

    def _step_attitude(self, dt: float) -> None:
        n = self._noise
        if not self._airborne:
            # The legs settle on the local slope; contact friction stops any spin.
            self._pitch = first_order(self._pitch, math.radians(SITE_TILT_PITCH_DEG), 0.7, dt)
            self._roll = first_order(self._roll, math.radians(SITE_TILT_ROLL_DEG), 0.7, dt)
            self._yaw_rate = 0.0
            sigma = 0.0
        else:
            if self._fault_active("thruster-stuck"):
                # A stuck-open yaw thruster: its torque decays as the line pressure blows
                # down (0.6 deg/s^2, 100 s), so the spin tends to about 60 deg/s.
                accel = 0.6 * math.exp(-(self._t - FAULT_ONSET_S) / 100.0)
                self._yaw_rate += math.radians(accel) * dt
            elif self._yaw_rate != 0.0:
                # The thruster closed again: attitude control damps the spin out.
                self._yaw_rate = first_order(self._yaw_rate, 0.0, 4.0, dt)
            self._yaw += self._yaw_rate * dt
            # Attitude-control limit cycle, larger while the engine fires.
            sigma = math.radians(0.1 if self._thrust > 0.0 else 0.03)
        self._jitter = [ornstein_uhlenbeck(j, sigma, 3.0, dt, n[6 + k])
                        for k, j in enumerate(self._jitter)]
        q_new = self._attitude()
        rates = body_rates_deg_s(self._q, q_new, dt)
        self._q = q_new
        self._rates = (rates[0] + 0.05 * n[3], rates[1] + 0.05 * n[4], rates[2] + 0.05 * n[5])

    # ------------------------------------------------------------------ power

    def _step_power(self, dt: float) -> None:
        """Battery coulomb counting: dSOC/dt = I / capacity; OCV linear in SOC."""
        landed_for = self._t - self._touchdown_time if self._touchdown_time is not None \
            else -1.0
        on_surface = self._phase == Phase.SURFACE
        if on_surface and self._soc < SAFE_MODE_SOC:
            self._power_mode = PowerMode.SAFE  # load shedding: payload off
        elif on_surface:
            self._power_mode = PowerMode.SURFACE_DAY if self._sun_elevation > 0.0 \
                else PowerMode.SURFACE_NIGHT
        else:
            self._power_mode = PowerMode.DESCENT
        self._payload = on_surface and landed_for >= PAYLOAD_ON_DELAY_S \
            and self._power_mode != PowerMode.SAFE
        # Solar arrays are stowed for the descent and unfold after landing; output
        # follows the cosine of the sun's angle to the panel normal.
        deploy = clamp((landed_for - SOLAR_DEPLOY_DELAY_S) / SOLAR_DEPLOY_DURATION_S, 0.0, 1.0) \
            if landed_for >= 0.0 else 0.0
        elevation = self._sun_elevation
        incidence = math.cos(math.radians(elevation - SOLAR_PANEL_ELEVATION_DEG))
        sun_disc = clamp(elevation / 0.53 + 0.5, 0.0, 1.0)  # sunrise over the sun's diameter
        solar = SOLAR_MAX_A * max(incidence, 0.0) * sun_disc * deploy
        if self._airborne or self._phase == Phase.TOUCHDOWN:
            load = DESCENT_LOAD_A
        else:
            load = SURFACE_LOAD_A + (PAYLOAD_LOAD_A if self._payload else 0.0)
        load += self._heater_power / BUS_VOLTAGE
        surplus = solar - load
        if surplus > 0.0:
            # Constant current, then tapering over the last 3 % (constant voltage).
            battery = min(surplus, BATTERY_CHARGE_MAX_A * clamp((100.0 - self._soc) / 3.0,
                                                                0.0, 1.0))
        else:
            battery = surplus
        self._soc += battery * dt / 3600.0 / BATTERY_CAPACITY_AH * 100.0
        if self._fault_active("battery-drain"):
            # Internal short inside the pack, upstream of the current shunt: only the
            # state of charge and the terminal voltage show it.
            self._soc -= DRAIN_FAULT_PCT_PER_MIN / 60.0 * dt * clamp(self._soc / 5.0, 0.0, 1.0)
        self._soc = clamp(self._soc, 0.0, 100.0)
        self._battery_current = battery
        self._solar_current = solar
        self._load_current = load

    # ------------------------------------------------------------------ thermal

    def _surface_temperature_c(self) -> float:
        """Regolith in radiative equilibrium: T = T_noon sin(el)^(1/4), floored at the
        night temperature (the regolith's heat capacity keeps it near 100 K)."""
        s = math.sin(math.radians(self._sun_elevation))
        kelvin = max(NIGHT_SURFACE_K, NOON_SURFACE_K * math.pow(max(s, 0.0), 0.25))
        return kelvin + ABS_ZERO_C

    def _step_thermal(self, dt: float) -> None:
        """Lumped first-order nodes relaxing toward their sink plus heater or engine heat."""
        sun = max(math.sin(math.radians(self._sun_elevation)), 0.0)
        on_ground = not self._airborne
        throttle = self._thrust / MAX_THRUST_N
        if throttle > 0.0:
            self._engine_temp = first_order(self._engine_temp, -30.0 + 240.0 * throttle, 90.0,
                                            dt)
        else:
            sink = 0.5 * self._surface_temperature_c() - 10.0 if on_ground else COLD_SINK_C
            self._engine_temp = first_order(self._engine_temp, sink, 900.0, dt)
        heaters_ok = not self._fault_active("heater-off")
        battery_sink = COLD_SINK_C + (50.0 * sun if on_ground else 0.0)
        battery_heat = BATTERY_HEATER_W if heaters_ok and self._battery_heater.update(
            self._battery_temp) else 0.0
        self._battery_temp = first_order(self._battery_temp,
                                         battery_sink + BATTERY_K_PER_W * battery_heat,
                                         BATTERY_TAU_S, dt)
        tank_sink = -30.0 + (40.0 * sun if on_ground else 0.0)
        tank_heat = TANK_HEATER_W if heaters_ok and self._tank_heater.update(
            self._tank_temp) else 0.0
        # Less propellant, less thermal mass.
        tank_tau = 600.0 + 1800.0 * self._propellant / PROPELLANT_KG
        self._tank_temp = first_order(self._tank_temp, tank_sink + TANK_K_PER_W * tank_heat,
                                      tank_tau, dt)
        avionics_eq = 5.0 + 1.2 * self._load_current + (15.0 * sun if on_ground else 0.0)
        self._avionics_temp = first_order(self._avionics_temp, avionics_eq, 1200.0, dt)
        self._heater_power = battery_heat + tank_heat

    # ------------------------------------------------------------------ measurements

    def _measure(self) -> None:
        if self._fault_active("sensor-freeze"):
            return  # the navigation outputs stick at their last values
        n = self._noise
        if self._airborne:
            self._meas_altitude = max(self._h + (0.001 * self._h + 0.05) * n[0], 0.0)
            self._meas_vz = self._vz + 0.05 * n[1]
            self._meas_vh = abs(self._vh + 0.05 * n[2])
        else:
            self._meas_altitude = self._meas_vz = self._meas_vh = 0.0

    def _sample_nav(self) -> Sample:
        q = self._q
        return {
            "descent_phase": int(self._phase),
            "altitude": self._meas_altitude,
            "vertical_velocity": self._meas_vz,
            "horizontal_velocity": self._meas_vh,
            "throttle": round(100.0 * self._thrust / MAX_THRUST_N, 2),
            "attitude_q0": q[0],
            "attitude_q1": q[1],
            "attitude_q2": q[2],
            "attitude_q3": q[3],
            "imu_rate_x": clamp(self._rates[0], -327.0, 327.0),
            "imu_rate_y": clamp(self._rates[1], -327.0, 327.0),
            "imu_rate_z": clamp(self._rates[2], -327.0, 327.0),
            "main_engine_on": self._thrust > 0.0,
            "radar_lock": self._radar_lock,
            "legs_deployed": self._legs,
            "touchdown_sensed": not self._airborne,
            "gnc_spare": 0,
        }

    def _sample_power(self) -> Sample:
        n = self._noise
        battery_current = clamp(self._battery_current + 0.02 * n[9], -20.4, 20.4)
        voltage = 25.0 + 8.2 * self._soc / 100.0 + battery_current * BATTERY_RESISTANCE_OHM
        return {
            "battery_soc": self._soc,
            "battery_voltage": clamp(voltage + 0.01 * n[10], 0.0, 40.9),
            "battery_current": battery_current,
            "solar_array_current": max(self._solar_current + 0.01 * n[11], 0.0)
            if self._solar_current > 0.0 else 0.0,
            "bus_voltage": BUS_VOLTAGE + 0.02 * n[12],
            "load_current": max(self._load_current + 0.03 * n[13], 0.0),
            "propellant_mass": self._propellant,
            "power_mode": int(self._power_mode),
            "heaters_enabled": not self._fault_active("heater-off"),
            "payload_powered": self._payload,
            "power_spare": 0,
        }

    def _sample_thermal(self) -> Sample:
        n = self._noise
        return {
            "engine_temperature": self._engine_temp + 0.3 * n[14],
            "battery_temperature": self._battery_temp + 0.1 * n[15],
            "avionics_temperature": self._avionics_temp + 0.1 * n[16],
            "tank_temperature": self._tank_temp + 0.1 * n[17],
            "surface_temperature": self._surface_temperature_c() + 0.3 * n[18],
            "heater_power": self._heater_power,
        }

