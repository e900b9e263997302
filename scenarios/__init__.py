"""Drives planner and nodes to replay situations and measure them; the demo lives here."""
