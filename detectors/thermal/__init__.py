"""Hot spots in thermal frames (counts or degrees C), with pre-alarm and alarm levels and hysteresis."""
