"""Shared physics of the ISLS-1 simulators: lunar constants, two-body orbits, small vectors.

Everything here is pure Python on floats (no numpy): the models call it at 10 Hz of
simulated time, possibly accelerated 100x, and tiny tuples beat small arrays there.
"""

from __future__ import annotations

import math

# --------------------------------------------------------------------------- constants

MU_MOON_KM3_S2 = 4902.8  # lunar gravitational parameter GM
MOON_RADIUS_KM = 1737.4  # mean radius, the reference for every altitude
MOON_RADIUS_M = MOON_RADIUS_KM * 1000.0
MU_MOON_M3_S2 = MU_MOON_KM3_S2 * 1e9
MOON_GRAVITY_M_S2 = 1.62  # surface gravity, GM/R^2 rounded
G0_M_S2 = 9.80665  # standard gravity: the Isp convention, mass flow = thrust / (Isp * g0)
MOON_SIDEREAL_DAY_S = 27.321661 * 86400.0  # rotation period in inertial space
LUNAR_SYNODIC_DAY_S = 29.530589 * 86400.0  # sunrise to sunrise at a surface site
EARTH_MOON_DISTANCE_KM = 384400.0  # mean, semi-major axis of the lunar orbit
MOON_ORBIT_ECCENTRICITY = 0.0549
ANOMALISTIC_MONTH_S = 27.554550 * 86400.0  # perigee to perigee

# The ISLS-1 landing site, shared by the lander and by the orbiter's relay geometry:
# Mare Imbrium, next to Chang'e-3's site (44.1 N, 19.5 W). The landing happens in the
# local morning, 30 degrees of hour angle (about 2.5 Earth days) before local noon.
SITE_LAT_DEG = 43.0
SITE_LON_DEG = -20.0
SITE_HOUR_ANGLE_AT_START_DEG = -30.0

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]  # (w, x, y, z), scalar first


# --------------------------------------------------------------------------- vectors


def add(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def sub(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def scale(a: Vec3, k: float) -> Vec3:
    return (a[0] * k, a[1] * k, a[2] * k)


def dot(a: Vec3, b: Vec3) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def norm(a: Vec3) -> float:
    return math.sqrt(dot(a, a))


def clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def wrap_deg(angle: float) -> float:
    """Wrap an angle to [-180, 180) degrees."""
    return (angle + 180.0) % 360.0 - 180.0


def first_order(value: float, target: float, tau: float, dt: float) -> float:
    """Advance ``dv/dt = (target - v) / tau`` by ``dt`` with the exact exponential.

    Unlike an Euler step this never overshoots, so the thermal and filter models stay
    stable for any step size.
    """
    return target + (value - target) * math.exp(-dt / tau)


def ornstein_uhlenbeck(value: float, sigma: float, tau: float, dt: float,
                       normal: float) -> float:
    """Exact update of a zero-mean Ornstein-Uhlenbeck process of stationary std ``sigma``.

    Used for attitude-control limit-cycle jitter: correlated over ``tau`` seconds, with
    the same statistics whatever the step size.
    """
    decay = math.exp(-dt / tau)
    return value * decay + sigma * math.sqrt(1.0 - decay * decay) * normal


class Thermostat:
    """Bang-bang heater control with hysteresis, as flight heater controllers do."""

    __slots__ = ("off_above", "on", "on_below")

    def __init__(self, on_below: float, off_above: float, on: bool = True) -> None:
        self.on_below = on_below
        self.off_above = off_above
        self.on = on

    def update(self, temperature: float) -> bool:
        if temperature < self.on_below:
            self.on = True
        elif temperature > self.off_above:
            self.on = False
        return self.on


# --------------------------------------------------------------------------- quaternions


def quat_mul(p: Quat, q: Quat) -> Quat:
    """Hamilton product ``p * q`` (apply ``q`` first, then ``p``)."""
    pw, px, py, pz = p
    qw, qx, qy, qz = q
    return (pw * qw - px * qx - py * qy - pz * qz,
            pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx,
            pw * qz + px * qy - py * qx + pz * qw)


def quat_axis(axis: int, angle_rad: float) -> Quat:
    """Rotation by ``angle_rad`` about body axis 0 (x), 1 (y) or 2 (z)."""
    half = 0.5 * angle_rad
    s = math.sin(half)
    return (math.cos(half), s if axis == 0 else 0.0, s if axis == 1 else 0.0,
            s if axis == 2 else 0.0)


def quat_normalize(q: Quat) -> Quat:
    """Unit quaternion with a non-negative scalar part (q and -q are the same attitude)."""
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    if q[0] < 0.0:
        n = -n
    return (q[0] / n, q[1] / n, q[2] / n, q[3] / n)


def body_rates_deg_s(q_prev: Quat, q_new: Quat, dt: float) -> Vec3:
    """Mean body angular rate between two attitudes: the rotation vector of
    ``conj(q_prev) * q_new`` divided by ``dt``, in deg/s."""
    w, x, y, z = quat_mul((q_prev[0], -q_prev[1], -q_prev[2], -q_prev[3]), q_new)
    if w < 0.0:  # take the short way round
        w, x, y, z = -w, -x, -y, -z
    s = math.sqrt(x * x + y * y + z * z)
    if s < 1e-12:
        return (0.0, 0.0, 0.0)
    angle = 2.0 * math.atan2(s, w)
    k = math.degrees(angle) / (s * dt)
    return (x * k, y * k, z * k)


# --------------------------------------------------------------------------- orbits


def solve_kepler(mean_anomaly: float, eccentricity: float) -> float:
    """Eccentric anomaly E from M = E - e sin E (Newton; converges in 3-4 steps for e < 0.1)."""
    e_anom = mean_anomaly if eccentricity < 0.8 else math.pi
    for _ in range(30):
        f = e_anom - eccentricity * math.sin(e_anom) - mean_anomaly
        step = f / (1.0 - eccentricity * math.cos(e_anom))
        e_anom -= step
        if abs(step) < 1e-13:
            break
    return e_anom


def mean_from_true_anomaly(true_anomaly: float, eccentricity: float) -> float:
    """Mean anomaly of a true anomaly (inverse Kepler, closed form), in [0, 2 pi)."""
    e_anom = 2.0 * math.atan2(math.sqrt(1.0 - eccentricity) * math.sin(0.5 * true_anomaly),
                              math.sqrt(1.0 + eccentricity) * math.cos(0.5 * true_anomaly))
    return (e_anom - eccentricity * math.sin(e_anom)) % (2.0 * math.pi)


class KeplerOrbit:
    """Two-body elliptic orbit propagated analytically: the state at time ``t`` comes from
    the mean anomaly ``M0 + n t``, never from integrating, so there is no drift however
    long the run or whatever the step size."""

    __slots__ = ("_p_vec", "_q_vec", "_sqrt_mu_p", "a", "argp", "e", "mean_anomaly_0",
                 "mean_motion", "mu", "p")

    def __init__(self, *, semi_major_axis: float, eccentricity: float, inclination_deg: float,
                 raan_deg: float, argp_deg: float, mean_anomaly_0: float,
                 mu: float = MU_MOON_KM3_S2) -> None:
        self.a = semi_major_axis
        self.e = eccentricity
        self.mu = mu
        self.argp = math.radians(argp_deg)
        self.mean_anomaly_0 = mean_anomaly_0
        self.mean_motion = math.sqrt(mu / semi_major_axis ** 3)
        self.p = semi_major_axis * (1.0 - eccentricity ** 2)  # semi-latus rectum
        self._sqrt_mu_p = math.sqrt(mu / self.p)
        # Perifocal unit vectors P (to periapsis) and Q in the inertial frame
        # (Vallado, Fundamentals of Astrodynamics, rotation R3(-RAAN) R1(-i) R3(-argp)).
        i = math.radians(inclination_deg)
        raan = math.radians(raan_deg)
        ci, si = math.cos(i), math.sin(i)
        co, so = math.cos(raan), math.sin(raan)
        cw, sw = math.cos(self.argp), math.sin(self.argp)
        self._p_vec: Vec3 = (co * cw - so * sw * ci, so * cw + co * sw * ci, sw * si)
        self._q_vec: Vec3 = (-co * sw - so * cw * ci, -so * sw + co * cw * ci, cw * si)

    @property
    def period(self) -> float:
        return 2.0 * math.pi / self.mean_motion

    def state(self, t: float) -> tuple[Vec3, Vec3, float]:
        """Position, velocity and the unwrapped argument of latitude (rad) at ``t``.

        The argument of latitude grows by 2 pi per revolution without wrapping, so
        ``floor(u / 2 pi)`` counts ascending-node crossings.
        """
        total = self.mean_anomaly_0 + self.mean_motion * t
        revolutions = math.floor(total / (2.0 * math.pi))
        e_anom = solve_kepler(total - 2.0 * math.pi * revolutions, self.e)
        nu = 2.0 * math.atan2(math.sqrt(1.0 + self.e) * math.sin(0.5 * e_anom),
                              math.sqrt(1.0 - self.e) * math.cos(0.5 * e_anom))
        cos_nu, sin_nu = math.cos(nu), math.sin(nu)
        r = self.p / (1.0 + self.e * cos_nu)
        x, y = r * cos_nu, r * sin_nu
        vx, vy = -self._sqrt_mu_p * sin_nu, self._sqrt_mu_p * (self.e + cos_nu)
        p, q = self._p_vec, self._q_vec
        position = (x * p[0] + y * q[0], x * p[1] + y * q[1], x * p[2] + y * q[2])
        velocity = (vx * p[0] + vy * q[0], vx * p[1] + vy * q[1], vx * p[2] + vy * q[2])
        return position, velocity, 2.0 * math.pi * revolutions + self.argp + nu


def vis_viva_speed(mu: float, r: float, a: float) -> float:
    """Orbital speed at radius ``r`` on an orbit of semi-major axis ``a``: v^2 = mu (2/r - 1/a)."""
    return math.sqrt(mu * (2.0 / r - 1.0 / a))


def sun_elevation_deg(latitude_deg: float, hour_angle_deg: float,
                      declination_deg: float = 0.0) -> float:
    """Solar elevation from the spherical-astronomy relation
    sin(el) = sin(lat) sin(dec) + cos(lat) cos(dec) cos(H). The Moon's equator is within
    1.5 degrees of the ecliptic, so the solar declination defaults to zero."""
    lat, dec, h = (math.radians(latitude_deg), math.radians(declination_deg),
                   math.radians(hour_angle_deg))
    s = math.sin(lat) * math.sin(dec) + math.cos(lat) * math.cos(dec) * math.cos(h)
    return math.degrees(math.asin(clamp(s, -1.0, 1.0)))


def site_hour_angle_deg(elapsed: float) -> float:
    """Local solar hour angle of the landing site: -30 deg at the start, one lunar
    (synodic) day per turn."""
    return wrap_deg(SITE_HOUR_ANGLE_AT_START_DEG + 360.0 * elapsed / LUNAR_SYNODIC_DAY_S)
