"""What a million tokens cost on a fleet, from measured throughput and GPU prices."""
