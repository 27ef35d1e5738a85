"""Training machinery every paper shares: the trainer factory (devices, strategy, checkpoints,
loggers), batch sizes under a changing number of processes, gathering for scoring, and the machine's facts."""
