"""Playing a schedule through simulated fleets in virtual time: the engine model with the
gateway's own strategies and replica pool, at any load, seconds for 100k requests, the same
answer for the same seed. What `loadtest compare --virtual`, sweeps and studies stand on."""
