"""What TensorBoard shows of a real sweep's trials, read back from their event files as TensorBoard does."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.events import hparams, load_events, scalar_curve, session
from tests.sweep_helpers import load, trial_run_dir

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

# How each Optuna state shows in HParams: (outcome hparam, session status).
SHOWN = {
    TrialState.COMPLETE: ("complete", "STATUS_SUCCESS"),
    TrialState.PRUNED: ("pruned", "STATUS_FAILURE"),
    TrialState.FAIL: ("failed", "STATUS_FAILURE"),
}


def test_hparams_name_each_trial_number_first_with_its_outcome_and_no_hparam_scalars(swept_study: Path):
    study = load(swept_study)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    for t in trials:
        events = load_events(trial_run_dir(swept_study, study, t.number))
        assert session(events) == (f"trial-{t.number:04d} {study.study_name}", SHOWN[t.state][1])
        logged = hparams(events)
        assert logged["outcome"] == SHOWN[t.state][0]
        # 3, 3, 2 (pruned), 0 (diverged in epoch 1)
        assert logged["epochs_trained"] == len(t.intermediate_values)
        scalars = events.Tags()["scalars"]
        assert not [tag for tag in scalars if tag.startswith("hparam/")]
        if t.intermediate_values:  # the metrics HParams shows: the curves' last points
            assert scalar_curve(events, "accuracy/test") == pytest.approx(t.intermediate_values, abs=1e-6)


def test_the_confusion_image_is_a_labelled_figure_of_the_last_epoch(swept_study: Path) -> None:
    study = load(swept_study)
    for t in study.get_trials():
        events = load_events(trial_run_dir(swept_study, study, t.number))
        if not t.intermediate_values:  # diverged before an epoch ended: nothing to show
            assert "confusion/test" not in events.Tags()["images"]
            continue
        [image] = events.Images("confusion/test")
        assert image.step == max(t.intermediate_values)
        png = image.encoded_image_string
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        # A drawn figure (axes, ticks, counts, colour scale), not the 240x240 grey squares of old.
        assert (image.width, image.height) == struct.unpack(">II", png[16:24])
        assert image.width >= 400 and image.height >= 350 and len(png) > 15_000
        [text] = events.Tensors("confusion/test/text_summary")
        assert "true \\ predicted" in text.tensor_proto.string_val[0].decode()
