"""Reading a run's TensorBoard events back, as TensorBoard itself does."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2


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


def session(events: EventAccumulator) -> tuple[str, str]:
    """The run's name in the HParams table (its session group) and its session-end status name."""
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    return start.session_start_info.group_name, api_pb2.Status.Name(end.session_end_info.status)
