"""Every setting of the pipeline, read once from environment variables.

Inputs: the process environment (names, defaults and help texts declared in ``live`` and
``batch``, documented in ``docs/configuration.md`` and listed in ``.env.example``). Output: a
frozen ``Settings`` (``settings``). The value parsers and ``setting()`` are in ``parsers``;
``python -m volpipe.config`` (``__main__``) prints or renders them.

Only entrypoints call ``Settings.from_env()``; everything else receives the object. Nothing
happens at import time. A missing or malformed value raises ``ConfigError`` naming the
variable, so a bad deployment fails at start, not an hour into a run.
"""

from volpipe.config.parsers import LABEL_MODES, PROJECT_ROOT, comma_list, parse_products
from volpipe.config.settings import Settings, describe, env_names, jaas_quoted, setting_from_env

__all__ = [
    "LABEL_MODES",
    "PROJECT_ROOT",
    "Settings",
    "comma_list",
    "describe",
    "env_names",
    "jaas_quoted",
    "parse_products",
    "setting_from_env",
]
