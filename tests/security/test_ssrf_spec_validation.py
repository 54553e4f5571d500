"""SSRF at load time: a spec may not let the model pick scheme, host or port.

A ``{param}`` in the authority lets the model choose where the spec's credentials go
(``https://{tenant}.crm.example/…`` with ``tenant = "evil.test/x?"``). Such specs are
rejected with ``file:line field: problem``; the same placeholder in the path is fine.
"""

from __future__ import annotations

import pytest

from skills.spec import SpecValidationError, load_spec_text, validate_paths

TEMPLATE = """\
name: crm
description: CRM.
instructions: Help.
tools:
  - name: lookup
    description: Look up.
    http:
      method: GET
      url: "{url}"
    parameters:
      p: {{type: string}}
"""

MESSAGE = (
    "placeholders may only fill the path, query or fragment: the scheme, host and port must "
    "be fixed in the spec (a model-chosen host could send this tool's credentials anywhere)"
)


@pytest.mark.parametrize(
    "url",
    [
        "https://{p}.crm.example.com/orders",
        "https://crm.example.com:{p}/orders",
        "{p}://crm.example.com/orders",
        "https://{p}/orders",
        "https://crm.example.com{p}",  # "@evil.test" would move the host
        "https://crm.{p}/x",
        "${BASE}{p}",
    ],
)
def test_ssrf_placeholder_in_scheme_host_or_port_is_a_validation_error(url: str) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec_text(
            TEMPLATE.format(url=url), filename="crm.yaml", env={"BASE": "https://crm.example.com"}
        )
    assert [str(issue) for issue in info.value.issues] == [
        f"crm.yaml:9 tools[0].http.url: {MESSAGE}"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://crm.example.com/orders/{p}",
        "https://crm.example.com:8443/orders?id={p}",
        "https://crm.example.com/#{p}",
        "${BASE}/orders/{p}",
    ],
)
def test_ssrf_positive_control_placeholders_in_path_and_query_load(url: str) -> None:
    spec = load_spec_text(
        TEMPLATE.format(url=url), filename="crm.yaml", env={"BASE": "https://crm.example.com"}
    )
    assert spec.http_tools[0].name == "lookup"


def test_ssrf_validate_command_reports_the_file_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "crm.yaml"
    path.write_text(TEMPLATE.format(url="https://{p}.example.com/"))
    assert [str(i) for i in validate_paths([path], env={})] == [
        f"{path}:9 tools[0].http.url: {MESSAGE}"
    ]
