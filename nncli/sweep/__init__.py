"""nncli sweep: many trainings at once, on this machine or on a Ray cluster, on Ray Tune.

``space`` turns train's options as typed into a search space, ``driver`` checks every
combination, reads the data once and leaves the leaderboard and models behind, ``tuning`` (the
only module that imports ray) runs the trials, each the training ``nncli train`` runs, and
``results`` makes the leaderboard. Importing this package does not import Ray.
"""
