"""``python -m volpipe.config show|env-example|markdown``: the effective settings, or
``.env.example`` / the table of ``docs/configuration.md`` rendered from the declarations."""

from __future__ import annotations

import argparse
import dataclasses

from volpipe.config.settings import Settings, describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m volpipe.config",
        description="Show the effective settings, or render .env.example / the docs table from the declarations.",
    )
    parser.add_argument("what", choices=["show", "env-example", "markdown"], nargs="?", default="show")
    args = parser.parse_args(argv)
    if args.what == "show":
        settings = Settings.from_env()
        for field in dataclasses.fields(Settings):
            print(f"{field.metadata['env']}={getattr(settings, field.name)}")
    elif args.what == "env-example":
        print("# Every setting of the pipeline with its default (python -m volpipe.config env-example).")
        print("# Copy to .env and uncomment what you change; `make` targets read the environment.")
        for name, default, doc in describe():
            print(f"\n# {doc}\n# {name}={default}")
    else:
        print("| variable | default | meaning |\n|---|---|---|")
        for name, default, doc in describe():
            print(f"| `{name}` | `{default}` | {doc} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
