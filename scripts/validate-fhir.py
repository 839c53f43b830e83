#!/usr/bin/env python3
"""Validate the FHIR R4 JSON resources in DIR with fhir.resources (FHIR 4.0.1 models).

Usage: python3 scripts/validate-fhir.py DIR

Every *.json file in DIR is parsed into its R4 resource model (unknown elements, wrong types
and missing required elements fail). On top of the schema, the questionnaire round trip is
checked: every QuestionnaireResponse names a Questionnaire in DIR, answers only its linkIds
and only with its answer options; every Observation is derivedFrom a QuestionnaireResponse
in DIR.

fhir.resources 6.4.0 is the last release whose models are R4 (4.0.1); 7.x and later model R5
with R4B as a sub-package. It needs pydantic 1. The script installs both into a virtual
environment outside the repository on first use and re-runs itself there.
"""

import json
import os
import pathlib
import subprocess
import sys

REQUIREMENTS = ["fhir.resources==6.4.0", "pydantic>=1.10,<2"]
VENV = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "dta-wide" / "venv-fhir"


def ensure_environment():
    try:
        import fhir.resources  # noqa: F401

        if fhir.resources.__fhir_version__ == "4.0.1":
            return
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if pathlib.Path(sys.prefix).resolve() == VENV.resolve():
        sys.exit("fhir.resources for FHIR 4.0.1 is not importable inside " + str(VENV))
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import fhir.resources as f; assert f.__fhir_version__ == '4.0.1'"],
                           capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
    os.execv(str(python), [str(python), *sys.argv])


def canonical_url(reference):
    return reference.split("|", 1)[0]


def option_codes(item):
    return {(o["valueCoding"].get("system"), o["valueCoding"]["code"]) for o in item.get("answerOption", [])}


def check_response(name, response, questionnaires):
    url = canonical_url(response["questionnaire"])
    questionnaire = questionnaires.get(url)
    if questionnaire is None:
        return [f"{name}: questionnaire {url} is not in the directory"]
    items = {item["linkId"]: item for item in questionnaire.get("item", [])}
    errors = []
    for answered in response.get("item", []):
        item = items.get(answered["linkId"])
        if item is None:
            errors.append(f"{name}: linkId {answered['linkId']} is not in {url}")
            continue
        for answer in answered.get("answer", []):
            coding = answer.get("valueCoding")
            if coding is not None and (coding.get("system"), coding["code"]) not in option_codes(item):
                errors.append(f"{name}: {answered['linkId']} answered {coding} which is not an answerOption")
    return errors


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ensure_environment()
    from fhir.resources import construct_fhir_element

    directory = pathlib.Path(sys.argv[1])
    files = sorted(directory.glob("*.json"))
    if not files:
        sys.exit(f"no *.json files in {directory}")
    resources, errors = {}, []
    for path in files:
        data = json.loads(path.read_text())
        try:
            construct_fhir_element(data["resourceType"], data)
        except Exception as error:  # the model's validation error names the element
            errors.append(f"{path.name}: {error}")
        resources[path.name] = data

    questionnaires = {r["url"]: r for r in resources.values() if r["resourceType"] == "Questionnaire"}
    response_ids = {r.get("id") for r in resources.values() if r["resourceType"] == "QuestionnaireResponse"}
    for name, resource in resources.items():
        if resource["resourceType"] == "QuestionnaireResponse":
            errors.extend(check_response(name, resource, questionnaires))
        if resource["resourceType"] == "Observation":
            for derived in resource.get("derivedFrom", []):
                kind, _, rid = derived["reference"].partition("/")
                if kind != "QuestionnaireResponse" or rid not in response_ids:
                    errors.append(f"{name}: derivedFrom {derived['reference']} is not a QuestionnaireResponse here")

    for error in errors:
        print(error)
    counts = {}
    for resource in resources.values():
        counts[resource["resourceType"]] = counts.get(resource["resourceType"], 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    print(f"FHIR R4 (fhir.resources 4.0.1 models): {summary}")
    print(f"{len(files) - len({e.split(':', 1)[0] for e in errors})} passed, "
          f"{len({e.split(':', 1)[0] for e in errors})} failed")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
