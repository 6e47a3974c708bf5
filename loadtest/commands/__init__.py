"""The `loadtest` commands: options, printing and exit codes; the work is in the rooms."""
