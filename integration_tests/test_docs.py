"""Every code block of README.md and the docs page that a user would paste works as written.

By the block's language (its fence's first word):
- `json` holding `credentials`: valid against the spec the connector prints, and `check` with it
  succeeds against a simulator that accepts its credentials (only `api_url` is pointed there);
  other `json` must parse.
- `sh`, `bash`, `shell`, `console`: each command, in a folder holding `config.json` and
  `catalog.json` for a simulator and `.venv` (this venv): `make T` must name a target; `docker`
  commands run where a Docker engine is (`docker build` in the repo); the rest runs there.
- `python`: runs in PyAirbyte's venv (scripts/pyairbyte_test.sh) with `config.json` in its
  folder; then the `sql` blocks run, in order, on the DuckDB cache it filled.
- any other language (`text`, none): shown, not run. A block right after
  `<!-- not tested: REASON -->` is skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from integration_tests.harness import Connector, calls_for, config_for, configured, endpoints, simulator, stream_entry
from integration_tests.telecmi_simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "docs" / "integrations" / "sources" / "telecmi.md")
SHELL = {"sh", "bash", "shell", "console"}
KIND = "app"  # the config the sandbox's config.json holds


@dataclass
class Block:
    where: str
    language: str
    text: str
    skip: str | None


def blocks(path: Path) -> list[Block]:
    found, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\S*)", lines[i])
        if not fence:
            i += 1
            continue
        start, indent = i, len(fence.group(1))
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        before = next((line for line in reversed(lines[:start]) if line.strip()), "")
        skip = re.match(r"\s*<!--\s*not tested:\s*(.*?)\s*-->", before)
        text = "\n".join(line[indent:] for line in lines[start + 1 : i])
        found.append(Block(f"{path.name}:{start + 1}", fence.group(2).lower(), text, skip and skip.group(1)))
        i += 1
    return found


BLOCKS = [block for path in DOCS if path.exists() for block in blocks(path)]


def of(*languages: str) -> list:
    return [pytest.param(b, id=b.where) for b in BLOCKS if b.language in languages]


def unless_skipped(block: Block) -> None:
    if block.skip:
        pytest.skip(f"marked not tested: {block.skip}")


@pytest.fixture(scope="module")
def spec() -> dict:
    return Connector(Path(".")).run("spec").ok().of("SPEC")[0]["spec"]["connectionSpecification"]


@pytest.fixture
def sandbox(tmp_path: Path):
    """A folder as a user has it: config.json and catalog.json for a running simulator, and .venv."""
    with simulator(calls_for(n=50)) as sim:
        (tmp_path / "config.json").write_text(json.dumps(config_for(sim, KIND)))
        streams = [stream_entry(name) for name in endpoints(KIND)] + [stream_entry("users")]
        (tmp_path / "catalog.json").write_text(json.dumps(configured(streams)))
        (tmp_path / ".venv").symlink_to(Path(sys.prefix))
        yield tmp_path


@pytest.mark.parametrize("block", of("json"))
def test_json_blocks_are_configs_the_connector_accepts(block: Block, spec: dict, tmp_path: Path) -> None:
    unless_skipped(block)
    config = json.loads(block.text)
    if "credentials" not in config:
        return
    errors = [error.message for error in jsonschema.Draft7Validator(spec).iter_errors(config)]
    assert not errors, f"{block.where}: not valid against the spec: {errors}"
    credentials = config["credentials"]
    with Simulator(
        tokens=[credentials.get("token", "")],
        users={credentials.get("user_id", ""): credentials.get("password", "")},
        apps={int(credentials.get("app_id", 0)): credentials.get("app_secret", "")},
    ) as sim:
        status = Connector(tmp_path).run("check", {**config, "api_url": sim.base_url}).ok().connection_status
    assert status["status"] == "SUCCEEDED", f"{block.where}: {status}"


def commands(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        line.strip().removeprefix("$ ")
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("block", of(*SHELL))
def test_shell_blocks_run(block: Block, sandbox: Path) -> None:
    unless_skipped(block)
    for command in commands(block.text):
        word, *args = shlex.split(command, comments=True)
        if word == "make":
            done = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True)
        elif word == "docker" and subprocess.run(["docker", "info"], capture_output=True).returncode:
            pytest.skip(
                "no Docker engine here: the docker commands run where one is (scripts/image_test.sh builds the image)"
            )
        else:
            cwd = ROOT if command.startswith("docker build") else sandbox
            done = subprocess.run(["bash", "-ec", command], cwd=cwd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{block.where}: `{command}` failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}"


@pytest.mark.parametrize("block", of("python"))
def test_python_blocks_run_and_the_sql_answers(block: Block, sandbox: Path) -> None:
    unless_skipped(block)
    if importlib.util.find_spec("airbyte") is None:
        if os.environ.get("PYAIRBYTE_TEST") == "1":
            pytest.fail("PyAirbyte is not importable in the PyAirbyte test's venv")
        pytest.skip("PyAirbyte is not in this venv: scripts/pyairbyte_test.sh runs these blocks in .venv-pyairbyte")
    (sandbox / "snippet.py").write_text(block.text)
    env = {**os.environ, "AIRBYTE_OFFLINE_MODE": "1", "AIRBYTE_CACHE_ROOT": str(sandbox / "cache")}
    done = subprocess.run([sys.executable, "snippet.py"], cwd=sandbox, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{block.where} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    import duckdb

    (database,) = (sandbox / "cache").glob("**/*.duckdb")
    with duckdb.connect(str(database)) as connection:
        for sql in [b for b in BLOCKS if b.language == "sql" and not b.skip]:
            rows = connection.execute(sql.text).fetchall()
            assert rows or sql.text.lstrip().upper().startswith("CREATE"), f"{sql.where}: no rows"


def test_every_block_is_understood() -> None:
    """A block in a language none of the tests above reads is shown only, never run: say so."""
    shown = {"", "text", "yaml", "sql", "json", "python", *SHELL}
    assert not [b.where for b in BLOCKS if b.language not in shown], "a block in a language this test cannot check"


def test_packaging_tells_one_name_and_version() -> None:
    """setup.py, metadata.yaml, the Dockerfile, the changelog and the icon agree."""
    meta = yaml.safe_load((ROOT / "metadata.yaml").read_text())["data"]
    setup = (ROOT / "setup.py").read_text()
    name, version = (re.search(rf'{key}="([^"]+)"', setup).group(1) for key in ("name", "version"))
    label = re.search(r"io.airbyte.version=(\S+)", (ROOT / "Dockerfile").read_text()).group(1)
    changelog = re.findall(r"^\| (\d+\.\d+\.\d+) ", DOCS[1].read_text(), re.MULTILINE)
    assert meta["remoteRegistries"]["pypi"] == {"enabled": True, "packageName": name}
    assert meta["dockerImageTag"] == label == version == changelog[0], (
        meta["dockerImageTag"],
        label,
        version,
        changelog,
    )
    assert (ROOT / meta["icon"]).read_text().lstrip().startswith("<svg")
    assert {"rest.telecmi.com", "piopiy.telecmi.com"} <= set(meta["allowedHosts"]["hosts"])


def test_every_image_tag_the_docs_give_is_metadata_yaml_s() -> None:
    """A tag to build, enter in Airbyte or run (`source-telecmi:X.Y.Z`, "the tag (`X.Y.Z`)") is the one being built."""
    tag = yaml.safe_load((ROOT / "metadata.yaml").read_text())["data"]["dockerImageTag"]
    given = [
        (path.name, found)
        for path in DOCS
        for pattern in (r"source-telecmi:(\d+\.\d+\.\d+\S*)", r"\btag \(`(\d+\.\d+\.\d+\S*)`\)")
        for found in re.findall(pattern, path.read_text())
    ]
    assert given, "the docs name the image's tag somewhere"
    assert [g for g in given if g[1] != tag] == [], f"metadata.yaml builds {tag}"


# Airbyte's docs template: these sections in this order (others may sit between them).
TEMPLATE = (
    "Prerequisites",
    "Setup guide",
    "Supported sync modes",
    "Supported streams",
    "Performance considerations",
    "Data type map",
    "Limitations and troubleshooting",
    "Changelog",
)


def test_the_docs_page_follows_airbyte_s_template_order() -> None:
    text = DOCS[1].read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert [h for h in headings if h in TEMPLATE] == list(TEMPLATE), headings
    changelog = text.split("\n## Changelog\n", 1)[1]
    assert changelog.lstrip().startswith("<details>") and "</details>" in changelog
    assert changelog.index("| Version |") < changelog.index("</details>"), "the changelog's table is inside <details>"
