"""Shapes the simulator draws from: diurnal load, server power curve, cooling, solar, grid mix.

All are pure functions of local time or utilisation, so tests can check them directly.
"""

from __future__ import annotations

import math

#: Exponent of the server power model of Fan, Weber & Barroso, "Power provisioning for a
#: warehouse-sized computer" (ISCA 2007): P(u) = P_idle + (P_max - P_idle) * (2u - u^r), r = 1.4.
FAN_R = 1.4


def diurnal_load(local_hour: float, weekday: int) -> float:
    """Share of peak request rate at a local hour (0..24) and weekday (0 = Monday).

    Two humps (late morning and evening) over a night trough near 04:00; weekends carry 70 %.
    """
    night = 0.12
    morning = math.exp(-(((local_hour - 11.0) / 3.2) ** 2))
    evening = 0.95 * math.exp(-(((local_hour - 20.0) / 2.6) ** 2))
    shape = night + (1.0 - night) * max(morning, evening)
    return shape * (0.7 if weekday >= 5 else 1.0)


def server_power_w(util: float, idle_w: float, max_w: float) -> float:
    """Mean power at utilisation `util` (clamped to 0..1); concave, within [idle_w, max_w]."""
    u = min(1.0, max(0.0, util))
    return idle_w + (max_w - idle_w) * (2.0 * u - float(u**FAN_R))


def outdoor_temp_c(local_hour: float, mean_c: float, swing_c: float) -> float:
    """Daily temperature cycle: coldest near 05:00, warmest near 15:00."""
    return mean_c + swing_c / 2.0 * math.sin(2.0 * math.pi * (local_hour - 9.0) / 24.0)


def pue_at(design_pue: float, outdoor_c: float) -> float:
    """PUE rises with outdoor temperature above 18 °C (less free cooling); never below 1.05."""
    return max(1.05, design_pue + 0.015 * (outdoor_c - 18.0))


def solar_share(local_hour: float) -> float:
    """Clear-sky share of peak solar output: a half sine between 06:00 and 18:00 local time."""
    if not 6.0 < local_hour < 18.0:
        return 0.0
    return math.sin(math.pi * (local_hour - 6.0) / 12.0)


def grid_factor(local_hour: float) -> float:
    """Relative grid carbon intensity: dirtier in the evening peak, cleaner at solar noon."""
    return 1.0 + 0.10 * math.cos(2.0 * math.pi * (local_hour - 20.0) / 24.0)


def water_l_per_kwh(outdoor_c: float) -> float:
    """Evaporative cooling water use per facility kWh; grows with outdoor temperature."""
    return 0.15 + 0.06 * max(0.0, outdoor_c - 12.0)
