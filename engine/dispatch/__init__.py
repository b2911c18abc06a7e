"""Dispatch: routes over the site hierarchy, response plans, and the sinks that deliver incident events."""
