"""Reading a run's TensorBoard events back, as TensorBoard itself does."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def load_events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return events


def scalar_curve(events: EventAccumulator, tag: str) -> dict[int, float]:
    return {s.step: s.value for s in events.Scalars(tag)}


def hparams(events: EventAccumulator) -> dict[str, float | str]:
    """The hyperparameters the HParams tab shows for this run."""
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in info.hparams.items()}
