"""What the gateway and the load generator share, owned by neither: logging set-up and the
reader of engines' Prometheus /metrics text. Imports nothing of `gateway` or `loadtest`."""
