"""``urbanpulse simulate``: a fleet of one kind publishing live readings (timestamped now)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from urbanpulse.core.settings import MqttSettings
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.engine import DeviceModel
from urbanpulse.simulators.fleet import SimulatedSensor, sample_points, shipped_areas
from urbanpulse.simulators.gateway import MqttGateway, SimulationPlan, data_topic, reading_payload
from urbanpulse.simulators.incinerator import IncineratorModel
from urbanpulse.simulators.landfill import LandfillModel
from urbanpulse.simulators.traffic import TrafficCameraModel
from urbanpulse.simulators.waste import BinModel, Stop, TruckModel
from urbanpulse.simulators.water import WaterSensorModel

CLOSE_TIMEOUT_S = 30.0
STOPPED_CLOSE_TIMEOUT_S = 5.0


def models_for(kind: str, sensors: list[SimulatedSensor], seed: int) -> list[DeviceModel]:
    """A device model per sensor; trucks get a round of synthetic stops in central HCMC."""
    if kind == "air":
        return [AirSensorModel(s, seed) for s in sensors]
    if kind == "water":
        return [WaterSensorModel(s, seed) for s in sensors]
    if kind == "landfill":
        return [LandfillModel(s, seed) for s in sensors]
    if kind == "incinerator":
        return [IncineratorModel(s, seed) for s in sensors]
    if kind == "traffic_camera":
        return [TrafficCameraModel(s, seed) for s in sensors]
    if kind == "waste_bin":
        return [BinModel(s, seed, 3.0 + s.index % 3) for s in sensors]
    if kind == "waste_truck":
        province = next(a for a in shipped_areas() if a.area_id == "vn-hcm")
        return [
            TruckModel(
                s,
                seed,
                [Stop(lat, lon) for lat, lon in sample_points(province, 8, seed, f"t{s.index}")],
                shifts=tuple(float(h) for h in range(0, 24, 2)),
            )
            for s in sensors
        ]
    raise ValueError(f"no model for kind {kind!r}")


async def run_simulation(
    settings: MqttSettings,
    kind: str,
    plan: SimulationPlan,
    stop: asyncio.Event,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Publish readings of ``kind``, one sensor after another, paced at ``plan.rate``."""
    models = models_for(kind, list(plan.sensors), plan.seed)
    gateway = MqttGateway(settings, client_id=f"urbanpulse-sim-{kind}-{plan.seed}-{time.time_ns()}")
    sent = 0
    # Connecting starts paho's network thread: from then on every path (a refused connection,
    # Ctrl-C while connecting) goes through the close below, which stops that thread.
    try:
        await asyncio.to_thread(gateway.connect)
        started = time.monotonic()
        while not stop.is_set():
            if plan.count is not None and sent >= plan.count:
                break
            if plan.duration_s is not None and time.monotonic() - started >= plan.duration_s:
                break
            model = models[sent % len(models)]
            ts = datetime.now(UTC)
            topic = data_topic(settings, kind, model.sensor.sensor_id)
            seq = sent // len(models)
            gateway.publish(topic, reading_payload(ts, model.values_at(ts), seq=seq))
            sent += 1
            if on_progress is not None:
                on_progress(sent)
            ahead = started + sent / plan.rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            elif sent % 100 == 0:
                await asyncio.sleep(0)
    finally:
        # After Ctrl-C, seconds for the broker's last acks (a local one takes milliseconds):
        # waiting longer for a broker that went away would only delay the stop.
        await asyncio.to_thread(
            gateway.close, STOPPED_CLOSE_TIMEOUT_S if stop.is_set() else CLOSE_TIMEOUT_S
        )
    return sent
