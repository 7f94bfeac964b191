"""The pruning Optuna sweeper's study side: what a task, an app and a user call.

- `current_trial()`: the task's trial (report, should_prune, mark_pruned, upload_artifact,
  save_checkpoint, checkpoint), a no-op outside a sweep but for checkpoints (in the run's folder);
  `pruning_optuna_sweeper.lightning.PruningCallback` does it for a Lightning trainer;
- `SweepHooks`: what an app adds to its sweeps (study identity, range checks, a closing hint);
- `apply_best`: train once more with a study's best parameters; `fetch_best`: or take its stored file;
- `fetch_artifact`: any trial's stored file (an Optuna artifact) copied to a path;
- `python -m pruning_optuna_sweeper`: list, show, trials, recover, export, model, report, serve.
"""

from optuna import TrialPruned

from pruning_optuna_sweeper.artifacts import ArtifactError, fetch_artifact
from pruning_optuna_sweeper.best_of import BestOfError, apply_best, fetch_best
from pruning_optuna_sweeper.hooks import SweepHooks
from pruning_optuna_sweeper.trial import current_trial

__all__ = [
    "ArtifactError",
    "BestOfError",
    "SweepHooks",
    "TrialPruned",
    "apply_best",
    "current_trial",
    "fetch_artifact",
    "fetch_best",
]
