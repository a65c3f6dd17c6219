"""What every benchmark does with its result: print it as one JSON line, and write it to --json if given."""

import json


def emit_json(result: dict, path: str | None) -> None:
  print(json.dumps(result))
  if path:
    with open(path, 'w') as f:
      json.dump(result, f, indent=2)
