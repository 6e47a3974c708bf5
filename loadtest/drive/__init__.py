"""Driving a target: the HTTP client that measures, the open- and closed-loop runner, live
progress, and the record of each request."""
