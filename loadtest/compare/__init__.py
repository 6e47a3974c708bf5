"""Comparing two environments on one seeded schedule."""
