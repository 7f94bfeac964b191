import sys

from pruning_optuna_sweeper.cli import main

sys.exit(main())
