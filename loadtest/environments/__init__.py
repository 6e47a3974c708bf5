"""Where load goes: named environments (a URL, or a local simulated fleet behind a gateway),
starting and always stopping local ones, and sampling their replicas while a run lasts."""
