"""Running a sweep on Ray Tune: the only package of nncli that imports ray.

A trial is one configuration of the sweep: a Ray Tune function trainable that runs the
training of ``nncli train`` on arrays the driver read once and put into Ray's object store
(``tune.with_parameters``): workers on other machines need neither the file nor a shared
filesystem for the data. In a cross-validated sweep (``--folds K``) a trial is still one
configuration: it trains it on each of the K folds, the folds in step, and reports the mean
over the folds. Every trial reports its metrics after every epoch (no file written), so ASHA
can stop it between epochs; it checkpoints only now and then (see ``trials``), and a trial
whose worker dies is restarted from its last checkpoint (``--max-failures``).

Checkpoints and Tune's own state live under ``storage`` (default: the sweep's folder). On a
cluster of several machines that folder must be one every node can write (a shared mount, or
an ``s3://``/``gs://`` URI): Ray Tune moves checkpoints through it. One module per step:

    session   ray_session, check_reachable: a local Ray started and stopped, or a cluster joined
    trials    trial, fold_trial, TuneSink, Cadence: what runs on the workers
    runner    Plan, run, Outcome, asha_rungs: the sweep on Ray Tune, and what it came to
"""

from ray import tune

from nncli.sweep.tuning.session import (JOIN_SECONDS, RAY_ENV, check_reachable, cpu_slots,
                                        ray_session)
from nncli.sweep.tuning.trials import (FINISHED_KEY, FOLDS_KEY, MODEL_FILE, Cadence, TuneSink,
                                       fold_file, fold_trial, trial)
from nncli.sweep.tuning.runner import (REDUCTION_FACTOR, TUNE_NAME, Outcome, Plan, asha_rungs,
                                       run)

__all__ = ["tune", "JOIN_SECONDS", "RAY_ENV", "check_reachable", "cpu_slots", "ray_session",
           "FINISHED_KEY", "FOLDS_KEY", "MODEL_FILE", "Cadence", "TuneSink", "fold_file",
           "fold_trial", "trial",
           "REDUCTION_FACTOR", "TUNE_NAME", "Outcome", "Plan", "asha_rungs", "run"]
