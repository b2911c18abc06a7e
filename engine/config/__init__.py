"""Configuration: pydantic models, the YAML loader with ${ENV} substitution, and error reporting."""

from engine.config.loader import ConfigError, load_config
from engine.config.models import EngineConfig

__all__ = ["ConfigError", "EngineConfig", "load_config"]
