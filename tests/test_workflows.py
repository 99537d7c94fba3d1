"""The publishing workflow cannot run here: check its syntax against GitHub's workflow
schema (vendored in check-jsonschema, no network) and what it must do."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(workflow):
    cli = shutil.which("check-jsonschema")
    assert cli, "check-jsonschema is missing: bash scripts/install.sh installs it"
    result = subprocess.run([cli, "--builtin-schema", "vendor.github-workflows", str(workflow)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps:\n      - run: echo no runner\n")
    result = subprocess.run([shutil.which("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
                            capture_output=True, text=True)
    assert result.returncode != 0, "a job without runs-on must fail the schema"


def test_book_workflow_builds_and_publishes_to_pages():
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = flow.get(True, flow.get("on"))  # YAML 1.1 reads the key `on` as True
    assert "main" in triggers["push"]["branches"]
    assert flow["permissions"]["pages"] == "write" and flow["permissions"]["id-token"] == "write"
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    runs = "\n".join(step.get("run", "") for step in build["steps"])
    uses = [step.get("uses", "") for step in build["steps"]] + [s.get("uses", "") for s in deploy["steps"]]
    assert "bash scripts/build_book.sh" in runs, "the workflow builds with the README's command"
    for script in {line.split()[1] for line in runs.splitlines() if line.startswith("bash ")}:
        assert (ROOT / script).is_file(), f"the workflow runs {script}, which does not exist"
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert deploy["needs"] == "build"


def test_readme_names_the_published_site():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    owner, repo = config["repository"]["url"].rstrip("/").split("/")[-2:]
    readme = (ROOT / "README.md").read_text()
    assert f"https://{owner}.github.io/{repo}/" in readme
    assert f"{owner}/{repo}/actions/workflows/book.yml/badge.svg" in readme
