"""Packaging for source-telecmi, the Airbyte source connector for TeleCMI call records."""

from setuptools import find_packages, setup

MAIN_REQUIREMENTS = [
    # Bounded so an image built next month behaves like today's: 7.x only.
    "airbyte-cdk>=7.39,<8",
    "requests>=2.31,<3",
    "jsonschema>=4.17,<5",
    # Imported by the connector itself (transport.py, ledger.py), not only through the CDK.
    "orjson>=3.10,<4",
]

TEST_REQUIREMENTS = [
    "pytest>=8,<10",
    # Tests run in parallel workers (`make unit`, `make test`: pytest -n).
    "pytest-xdist>=3.6,<4",
    # Never imported by the tests, but needed: the CDK's HttpMocker (unit_tests/conftest.py) imports it
    # and the CDK does not declare it.
    "requests-mock>=1.11,<2",
    # The rules and the format the code is checked against change with ruff's minor versions.
    "ruff>=0.17,<0.18",
    # The Airbyte protocol's own models (the pydantic 2 build), to validate every line the connector prints.
    "airbyte-protocol-models-pdv2>=0.17,<1",
    # The docs' warehouse SQL, run on a real sync loaded into DuckDB (integration_tests/test_audit_sql.py).
    "duckdb>=1.1,<3",
    # A real audio library opens the recordings the simulator serves and the connector delivers.
    "mutagen>=1.47,<2",
]

setup(
    name="source-telecmi",
    version="0.4.0",
    description="Airbyte source connector for TeleCMI call detail records.",
    author="source-telecmi developers",
    license="MIT",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["source_telecmi", "source_telecmi.*"]),
    install_requires=MAIN_REQUIREMENTS,
    extras_require={"tests": TEST_REQUIREMENTS},
    package_data={"source_telecmi": ["spec.json", "schemas/*.json", "schemas/shared/*.json"]},
    entry_points={"console_scripts": ["source-telecmi=source_telecmi.run:main"]},
)
