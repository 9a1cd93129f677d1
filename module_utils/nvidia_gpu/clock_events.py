"""Clock event ("throttle") reasons: NVML's bit mask, decoded into names people search for."""

from __future__ import annotations

# Bit -> name, as in NVML's nvmlClocksEventReason* constants.
REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
BITS = {name: bit for bit, name in REASONS.items()}

# What each reason that points at hardware usually means on a server like the seed machine.
CAUSES = {
    "hw_slowdown": "the GPU asserted HW slowdown: over-temperature, or the power supply pulled the "
    "external power-brake signal (PSU overload or 12 V sag)",
    "hw_thermal_slowdown": "the GPU is too hot for its hardware limit: check airflow and the "
    "heatsink",
    "hw_power_brake_slowdown": "the power supply asked the GPU to brake: the PSUs cannot deliver "
    "the load (lower the power limit, add a PSU, check 12 V connections)",
    "sw_thermal_slowdown": "the driver reduced clocks for temperature: check cooling",
    "sw_power_cap": "the GPU is holding its power limit",
}


def decode(mask):
    """Names of the bits set in mask; unknown bits are kept as hex so nothing is hidden."""
    names = [name for bit, name in sorted(REASONS.items()) if mask & bit]
    unknown = mask & ~sum(REASONS)
    if unknown:
        names.append("unknown_0x%x" % unknown)
    return names
