"""`loadtest study`: every strategy against an oracle, over load, in virtual time."""
