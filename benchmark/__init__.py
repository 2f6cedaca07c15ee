"""Engine: registries, the runner, the results table and the command line."""
