"""The template as ``sam deploy`` hands it to CloudFormation (aws-sam-translator), for local/iam.py
and ``make checkov`` (``main``). Run in a virtualenv of its own (``make sam-translator``,
.venv-samt): aws-sam-translator pins pydantic, and the product's pydantic is the layer's, not a dev
tool's. Imports nothing of this project.
"""

from __future__ import annotations

import json
import sys


def expand(template: dict, parameters: dict, region: str) -> dict:  # type: ignore[type-arg]
    """aws-sam-translator's translation, with the code locations as ``sam package`` leaves them (S3
    URIs)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://local-artifacts/{props[key].strip('/')}"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    expanded: dict = translator.translate(  # type: ignore[type-arg]
        template, parameter_values=parameters, get_managed_policy_map=lambda: {}
    )
    return expanded


def carry_checkov_skips(template: dict, expanded: dict) -> None:  # type: ignore[type-arg]
    """Every generated resource (``CallbackApiStage`` from ``CallbackApi`` ...) gets the skips (with
    their reasons) of the template resource whose logical id begins its own (the longest such id),
    as checkov reads them only from a resource's own ``Metadata``."""
    origins = sorted(template.get("Resources", {}), key=len, reverse=True)
    for logical_id, resource in expanded.get("Resources", {}).items():
        if logical_id in template["Resources"]:
            continue
        origin = next((o for o in origins if logical_id.startswith(o)), None)
        skips = (
            ((template["Resources"].get(origin) or {}).get("Metadata") or {}).get("checkov")
            if origin
            else None
        )
        if skips:
            resource.setdefault("Metadata", {})["checkov"] = skips


def main() -> int:
    """Two ways (local/iam.py calls the first; ``make checkov`` the second, to check what
    CloudFormation will really create):

        python local/sam_expand.py REGION < {"template": {...}, "parameters": {...}} > expanded.json
        python local/sam_expand.py REGION --template template.yaml [--out FILE] [NAME=VALUE ...]
    """
    if "--template" not in sys.argv:
        request = json.load(sys.stdin)
        json.dump(expand(request["template"], request["parameters"], sys.argv[1]), sys.stdout)
        return 0
    import copy

    from samtranslator.yaml_helper import yaml_parse

    args = sys.argv[2:]
    path = args[args.index("--template") + 1]
    out = args[args.index("--out") + 1] if "--out" in args else ""
    parameters = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("--"))
    with open(path, encoding="utf-8") as source:
        template = yaml_parse(source.read())
    expanded = expand(copy.deepcopy(template), parameters, sys.argv[1])
    carry_checkov_skips(template, expanded)
    text = json.dumps(expanded, indent=1)
    if out:
        with open(out, "w", encoding="utf-8") as target:
            target.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
