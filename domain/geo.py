"""ZIP centroids and counties from the ``zipcodes`` package's embedded USPS dataset (no network, no
files): enough to check a distance rule between two offices, such as Fla. Stat. §458.348(4)(c)'s 25 miles."""

from __future__ import annotations

from functools import lru_cache
from math import asin, cos, radians, sin, sqrt

import zipcodes

EARTH_RADIUS_MILES = 3958.8  # mean Earth radius (IUGG), for great-circle distances


@lru_cache(maxsize=4096)
def _place(zip_code: str) -> tuple[float, float, str, str] | None:
    """(lat, long, state, county) of a 5-digit ZIP, or None if the dataset does not know it."""
    try:
        found = zipcodes.matching(zip_code[:5])
    except (TypeError, ValueError):
        return None
    if not found or not found[0].get("lat") or not found[0].get("long"):
        return None
    z = found[0]
    return float(z["lat"]), float(z["long"]), z["state"], z["county"]


def known_zip(zip_code: str) -> bool:
    return _place(zip_code) is not None


def miles_between(a: str, b: str) -> float | None:
    """Great-circle miles between two ZIP centroids (None when either is unknown)."""
    pa, pb = _place(a), _place(b)
    if pa is None or pb is None:
        return None
    lat1, lon1, lat2, lon2 = map(radians, (pa[0], pa[1], pb[0], pb[1]))
    h = sin((lat2 - lat1) / 2) ** 2 + cos(lat1) * cos(lat2) * sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_MILES * asin(sqrt(h))


def same_county(a: str, b: str) -> bool:
    pa, pb = _place(a), _place(b)
    return pa is not None and pb is not None and (pa[2], pa[3]) == (pb[2], pb[3])
