# Validates a DSC v3 resource manifest against the vendored published schema (Draft 2020-12):
# prints one line per error (JSON path: message) and exits 1 when there is any.
import json
import sys

import jsonschema

schema_path, manifest_path = sys.argv[1], sys.argv[2]
with open(schema_path, encoding="utf-8") as f:
    schema = json.load(f)
with open(manifest_path, encoding="utf-8") as f:
    manifest = json.load(f)
errors = list(jsonschema.Draft202012Validator(schema).iter_errors(manifest))
for error in errors:
    print(f"{error.json_path}: {error.message}")
sys.exit(1 if errors else 0)
