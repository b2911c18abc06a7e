"""Simulators: sensor physics, scenarios, and publishing them as device feeds."""
