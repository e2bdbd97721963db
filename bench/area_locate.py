"""How long locating sensors among the shipped areas takes: the vectorised AreaIndex against a
naive point-by-point, polygon-by-polygon check (a sample, scaled), in the same run.

    python -m bench.area_locate [--points 10000]

Printed, never asserted: a test on a shared machine would measure the machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from shapely.geometry import Point

from bench.support import say
from urbanpulse.core.areas import AreaIndex, AreaRecord, level_tier
from urbanpulse.simulators.fleet import CENTRAL_HCMC, shipped_areas

NAIVE_SAMPLE = 200


def naive_locate(areas: tuple[AreaRecord, ...], lon: float, lat: float) -> str | None:
    point = Point(lon, lat)
    candidates = [a for a in areas if a.geometry.intersects(point)]
    if not candidates:
        return None
    return min(candidates, key=lambda a: (level_tier(a.level), a.geometry.area, a.area_id)).area_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000, help="sensors to locate")
    points = parser.parse_args().points
    areas = shipped_areas()
    index = AreaIndex(areas)
    rng = np.random.default_rng(3)
    lons = rng.uniform(CENTRAL_HCMC.west, CENTRAL_HCMC.east, points)
    lats = rng.uniform(CENTRAL_HCMC.south, CENTRAL_HCMC.north, points)
    index.locate(lons, lats)  # warm-up: the index builds its tree lazily
    started = time.perf_counter()
    located = index.locate(lons, lats)
    indexed_s = time.perf_counter() - started
    sample = min(NAIVE_SAMPLE, points)
    started = time.perf_counter()
    naive = [naive_locate(areas, x, y) for x, y in zip(lons[:sample], lats[:sample], strict=True)]
    naive_s = (time.perf_counter() - started) * points / sample
    agree = naive == located[:sample]
    say(f"areas: {len(areas)}, points: {points}")
    say(f"AreaIndex.locate : {indexed_s * 1000:9.1f} ms")
    say(f"naive (scaled)   : {naive_s * 1000:9.1f} ms  ({naive_s / indexed_s:.0f}x slower)")
    say(f"naive sample of {sample} agrees with the index: {agree}")


if __name__ == "__main__":
    main()
