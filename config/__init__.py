"""Settings for newsbot: defaults in `defaults.toml`, overridden by a config file and NEWSBOT_* variables."""

from config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
