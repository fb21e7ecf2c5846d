"""``airflow-cmdexec import-digdag-config`` and ``show-config``, for real, in a throw-away Airflow home.

The docs' example file round-trips (import, then show-config gives it back with secrets as ***),
imports are idempotent, ``--dry-run`` writes nothing, invalid values are errors naming the key and
the Airflow field and write nothing, unknown keys are warnings, and no secret is ever printed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_cli_support import (
    DOCS_EXAMPLE,
    VENV_BIN,
    CmdexecHome,
    masked,
    migrated_template,
    properties,
    read_connection,
)

from airflow_cmdexec_provider.cli import CliError, format_property, parse_properties

SECRETS = (
    "<SECRET KEY>",
    "k8s-Token-0005",
    "k8s-Token-0006",
    "s3cr3t-ecs-Key-0001",
    "s3cr3t-default-Key-0002",
    "gcs-private-Key-0003",
    "s3cr3t-other-Key-0004",
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory):
    return migrated_template(tmp_path_factory)


@pytest.fixture(scope="module")
def imported_template(tmp_path_factory: pytest.TempPathFactory, template):
    """A metadata DB with the docs' example already imported."""
    home = CmdexecHome(tmp_path_factory.mktemp("cmdexec-cli-imported"), template)
    result = home.run("import-digdag-config", home.write("digdag.properties", DOCS_EXAMPLE))
    assert result.returncode == 0, result
    return home.path


@pytest.fixture
def home(tmp_path, template) -> CmdexecHome:
    return CmdexecHome(tmp_path / "home", template)


@pytest.fixture
def imported_home(tmp_path, imported_template) -> CmdexecHome:
    return CmdexecHome(tmp_path / "home", imported_template)


def assert_no_secrets(*results) -> None:
    for result in results:
        for secret in SECRETS:
            assert secret not in result.output, f"secret {secret!r} printed by\n{result}"


def show(home: CmdexecHome) -> dict[str, str]:
    result = home.run("show-config")
    assert result.returncode == 0, result
    assert_no_secrets(result)
    return properties(result.stdout)


def connection(home: CmdexecHome, conn_id: str) -> dict | None:
    return read_connection(home, conn_id)


# -- the properties parser -------------------------------------------------------------------------
def test_java_properties_syntax() -> None:
    text = (
        "# comment = not a key\n"
        "  ! another comment\n"
        "\n"
        "a = 1\n"
        "b: two\n"
        "c three\n"
        "d=\n"
        "e = spaces kept inside   \n"
        "f = first \\\n"
        "    second \\\n"
        "    third\n"
        "g\\ key\\:x = v\\=w\n"
        "h = tab\\there \\u00e9 \\\\ end\n"
        "i = \\\n"
        "\n"
        "j = #not a comment\n"
        "k=value\\\\\n"
        "l = last\n"
    )
    props = parse_properties(text)
    got = {p.key: p.value for p in props}
    assert got == {
        "a": "1",
        "b": "two",
        "c": "three",
        "d": "",
        "e": "spaces kept inside   ",
        "f": "first second third",
        "g key:x": "v=w",
        "h": "tab\there \u00e9 \\ end",
        "i": "",
        "j": "#not a comment",
        "k": "value\\",
        "l": "last",
    }
    assert [p.line for p in props if p.key in ("a", "f", "l")] == [4, 9, 18]
    with pytest.raises(CliError, match="line 1"):
        parse_properties("x = \\u12\n")


@pytest.mark.parametrize("value", ["plain", " leading", "a=b:c", "multi\nline", "back\\slash", "#hash"])
def test_show_config_lines_parse_back(value: str) -> None:
    key = "agent.command_executor.ecs.odd name:x.started_by"
    assert {p.key: p.value for p in parse_properties(format_property(key, value))} == {key: value}


# -- import and show-config -------------------------------------------------------------------------
def test_docs_example_dry_run_import_idempotent_round_trip(home: CmdexecHome) -> None:
    path = home.write("digdag.properties", DOCS_EXAMPLE)

    dry = home.run("import-digdag-config", path, "--dry-run")
    assert dry.returncode == 0, dry
    assert "would create Connection 'cmdexec_ecs_default' (cmdexec_ecs)" in dry.stdout
    assert "would create Connection 'cmdexec_storage_default' (cmdexec_storage)" in dry.stdout
    assert "nothing" in dry.stdout.lower() or "not written" in dry.stdout
    assert connection(home, "cmdexec_ecs_default") is None  # dry run: nothing written
    assert connection(home, "cmdexec_storage_default") is None

    first = home.run("import-digdag-config", path)
    assert first.returncode == 0, first
    assert "create Connection 'cmdexec_ecs_default'" in first.stdout
    assert "Imported: 2 created, 0 updated" in first.stdout
    assert "password=***" in first.stdout

    second = home.run("import-digdag-config", path)
    assert second.returncode == 0, second
    assert "unchanged Connection 'cmdexec_ecs_default'" in second.stdout
    assert "Nothing to change" in second.stdout

    dry_again = home.run("import-digdag-config", path, "--dry-run")
    assert "nothing to change" in dry_again.stdout
    assert_no_secrets(dry, first, second, dry_again)

    # show-config gives the file back, secrets masked
    shown = show(home)
    assert shown == masked(properties(DOCS_EXAMPLE))

    # what is stored: keys in Login/Password, the rest typed extras
    ecs = connection(home, "cmdexec_ecs_default")
    assert ecs["conn_type"] == "cmdexec_ecs"
    assert (ecs["login"], ecs["password"]) == ("<ACCESS KEY>", "<SECRET KEY>")
    assert ecs["extra"] == {
        "cluster_name": "digdag-test",
        "launch_type": "FARGATE",
        "region": "us-east-1",
        "subnets": ["subnet-NNNNN"],
        "max_retries": 3,
    }
    storage = connection(home, "cmdexec_storage_default")
    assert storage["extra"] == {"type": "s3", "bucket": "<Bucket>", "endpoint": "s3.amazonaws.com"}
    assert storage["password"] == "<SECRET KEY>"


BAD_VALUES = [
    (
        "agent.command_executor.ecs.digdag-test.max_retries = three",
        ["agent.command_executor.ecs.digdag-test.max_retries", "'extra.max_retries'", "whole number"],
    ),
    (
        "agent.command_executor.ecs.digdag-test.launch_type = LAMBDA",
        [
            "agent.command_executor.ecs.digdag-test.launch_type",
            "'extra.launch_type'",
            "FARGATE, EC2, EXTERNAL",
        ],
    ),
    (
        "agent.command_executor.ecs.temporal_storage.type = ftp",
        ["agent.command_executor.ecs.temporal_storage.type", "'extra.type'", "s3, gcs"],
    ),
    (
        "agent.command_executor.ecs.digdag-test.assign_public_ip = perhaps",
        [
            "agent.command_executor.ecs.digdag-test.assign_public_ip",
            "'extra.assign_public_ip'",
            "true or false",
        ],
    ),
    ("agent.command_executor.type = lambda", ["agent.command_executor.type", "cmdexec_executor_type"]),
]


@pytest.mark.parametrize(("line", "expected"), BAD_VALUES, ids=[b[0].split(".")[-1] for b in BAD_VALUES])
def test_invalid_value_is_an_error_and_nothing_is_written(
    imported_home: CmdexecHome, line: str, expected: list
) -> None:
    home = imported_home
    changed = DOCS_EXAMPLE.replace("max_retries = 3", "max_retries = 7").replace("<Bucket>", "other-bucket")
    bad = home.run("import-digdag-config", home.write("bad.properties", changed + line + "\n"))
    assert bad.returncode == 1, bad
    errors = [row for row in bad.stderr.splitlines() if row.startswith("error: ")]
    assert len(errors) == 1, bad
    for text in expected:
        assert text in errors[0], bad
    assert "nothing was written" in bad.stderr
    assert_no_secrets(bad)
    # the valid changes in the same file were not written either
    assert show(home) == masked(properties(DOCS_EXAMPLE))


def test_several_errors_are_all_reported(home: CmdexecHome) -> None:
    text = DOCS_EXAMPLE + (
        "agent.command_executor.ecs.digdag-test.max_retries = x\n"
        "agent.command_executor.ecs.digdag-test.container_cpu = 1 vcpu\n"
        "agent.command_executor.ecs.temporal_storage.s3.direct_download_expiration = soon\n"
    )
    bad = home.run("import-digdag-config", home.write("bad.properties", text))
    assert bad.returncode == 1
    assert len([row for row in bad.stderr.splitlines() if row.startswith("error: ")]) == 3, bad
    assert "3 error(s): nothing was written" in bad.stderr
    assert connection(home, "cmdexec_ecs_default") is None


def test_whole_connection_validation(home: CmdexecHome) -> None:
    text = (
        "agent.command_executor.ecs.name = c1\n"
        "agent.command_executor.ecs.c1.launch_type = FARGATE\n"
        "agent.command_executor.ecs.c1.capacity_provider_name = spot\n"
        "agent.command_executor.ecs.c1.access_key_id = AKIAONLY\n"
        "agent.command_executor.ecs.temporal_storage.s3.bucket = b\n"
    )
    bad = home.run("import-digdag-config", home.write("bad.properties", text))
    assert bad.returncode == 1, bad
    assert "agent.command_executor.ecs.temporal_storage.type is missing" in bad.stderr
    fixed = text + "agent.command_executor.ecs.temporal_storage.type = s3\n"
    bad = home.run("import-digdag-config", home.write("bad2.properties", fixed))
    assert bad.returncode == 1, bad
    assert "ECS connection 'cmdexec_ecs_default'" in bad.stderr
    assert "'launch_type' or 'capacity_provider_name'" in bad.stderr


def test_unknown_and_unsupported_keys_are_warnings(home: CmdexecHome) -> None:
    text = DOCS_EXAMPLE + (
        "agent.command_executor.kubernetes.k8s.no_such_key = 1\n"
        "agent.command_executor.ecs.digdag-test.no_such_key = 1\n"
        "agent.command_executor.ecs.temporal_storage.gcs.bucket = ignored-for-s3\n"
        "agent.command_executor.ecs.temporal_storage.s3.nope = 1\n"
        "agent.command_executor.foo = bar\n"
        "server.bind = 0.0.0.0\n"
        "agent.command_executor.ecs.digdag-test.max_retries = 4\n"
    )
    result = home.run("import-digdag-config", home.write("digdag.properties", text))
    assert result.returncode == 0, result
    warnings = [row for row in result.stderr.splitlines() if row.startswith("warning: ")]
    assert len(warnings) == 7, result
    joined = "\n".join(warnings)
    assert (
        "agent.command_executor.kubernetes.k8s.no_such_key: unknown Kubernetes command executor key" in joined
    )
    assert "agent.command_executor.ecs.digdag-test.no_such_key: unknown command executor key" in joined
    assert (
        "temporal_storage.gcs.bucket: ignored, agent.command_executor.ecs.temporal_storage.type is s3"
        in joined
    )
    assert "temporal_storage.s3.nope: unknown temporal storage key" in joined
    assert "agent.command_executor.foo: unknown command executor key" in joined
    assert "server.bind: not a command executor key" in joined
    assert "max_retries is set again (first on line 8); the last value wins" in joined
    assert show(home)["agent.command_executor.ecs.digdag-test.max_retries"] == "4"


def test_default_config_other_clusters_gcs_and_executor_type(home: CmdexecHome) -> None:
    text = (
        "agent.command_executor.type = simple\n"
        "agent.command_executor.ecs.name = main\n"
        "agent.command_executor.ecs.main.region = eu-west-1\n"
        "agent.command_executor.ecs.main.subnets = subnet-1,subnet-2\n"
        "agent.command_executor.ecs.main.assign_public_ip = false\n"
        "agent.command_executor.ecs.main.use_environment_file = true\n"
        "agent.command_executor.ecs.main.placement_strategy_type = binpack\n"
        "agent.command_executor.ecs.main.placement_strategy_field = memory\n"
        "agent.command_executor.ecs.other.region = us-west-2\n"
        "agent.command_executor.ecs.other.access_key_id = AKIAOTHER\n"
        "agent.command_executor.ecs.other.secret_access_key = s3cr3t-other-Key-0004\n"
        "agent.command_executor.ecs.__default_config__.access_key_id = AKIADEFAULT\n"
        "agent.command_executor.ecs.__default_config__.secret_access_key = s3cr3t-default-Key-0002\n"
        "agent.command_executor.ecs.retry_task_scripts_downloads = 3\n"
        "agent.command_executor.ecs.enable_curl_fail_opt_on_uploads = false\n"
        "agent.command_executor.ecs.max_wait_for_fetch_log_events.non_zero_status = 120\n"
        "agent.command_executor.ecs.temporal_storage.type = gcs\n"
        "agent.command_executor.ecs.temporal_storage.gcs.bucket = my-gcs\n"
        "agent.command_executor.ecs.temporal_storage.gcs.credentials.json.content = "
        '{"type": "service_account", "private_key": "gcs-private-Key-0003"}\n'
        "agent.command_executor.ecs.temporal_storage.gcs.direct_upload_expiration = 3600\n"
    )
    path = home.write("digdag.properties", text)
    result = home.run("import-digdag-config", path)
    assert result.returncode == 0, result
    assert "create Variable 'cmdexec_executor_type': 'local'" in result.stdout
    assert "create Connection 'cmdexec_ecs_other' (cmdexec_ecs)" in result.stdout
    assert "create Connection 'cmdexec_aws_default' (aws)" in result.stdout
    assert_no_secrets(result)

    main = connection(home, "cmdexec_ecs_default")
    assert main["extra"]["aws_conn_id"] == "cmdexec_aws_default"  # no keys of its own
    other = connection(home, "cmdexec_ecs_other")
    assert "aws_conn_id" not in other["extra"]
    assert other["extra"]["retry_task_scripts_downloads"] == 3  # global keys: every cluster
    aws = connection(home, "cmdexec_aws_default")
    assert (aws["conn_type"], aws["login"], aws["password"]) == (
        "aws",
        "AKIADEFAULT",
        "s3cr3t-default-Key-0002",
    )
    storage = connection(home, "cmdexec_storage_default")
    assert storage["password"].startswith('{"type": "service_account"')

    assert show(home) == masked(properties(text))
    again = home.run("import-digdag-config", path)
    assert "Nothing to change" in again.stdout, again


def test_update_changes_what_the_file_sets_and_keeps_the_rest(home: CmdexecHome) -> None:
    """A key removed from the file is left as it is (and said so), like extras of no Digdag key."""
    add = subprocess.run(
        [
            str(VENV_BIN / "airflow"),
            "connections",
            "add",
            "cmdexec_storage_default",
            "--conn-json",
            json.dumps(
                {
                    "conn_type": "cmdexec_storage",
                    "login": "<ACCESS KEY>",
                    "password": "<SECRET KEY>",
                    "extra": {
                        "type": "s3",
                        "bucket": "old-bucket",
                        "endpoint": "s3.amazonaws.com",
                        "team_note": "kept",
                    },
                }
            ),
        ],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert add.returncode == 0, add.stderr
    first = home.run("import-digdag-config", home.write("a.properties", DOCS_EXAMPLE))
    assert first.returncode == 0, first
    assert (
        "update Connection 'cmdexec_storage_default' (cmdexec_storage): bucket: 'old-bucket' -> '<Bucket>'"
        in first.stdout
    ), first
    assert "Imported: 1 created, 1 updated, 0 unchanged" in first.stdout
    assert connection(home, "cmdexec_storage_default")["extra"]["team_note"] == "kept"

    changed = (
        DOCS_EXAMPLE.replace("max_retries = 3", "max_retries = 5")
        .replace("agent.command_executor.ecs.digdag-test.subnets = subnet-NNNNN\n", "")
        .replace(
            "<SECRET KEY>\nagent.command_executor.ecs.digdag-test.launch_type",
            "s3cr3t-ecs-Key-0001\nagent.command_executor.ecs.digdag-test.launch_type",
        )
    )
    path = home.write("b.properties", changed)
    dry = home.run("import-digdag-config", path, "--dry-run")
    assert (
        "would update Connection 'cmdexec_ecs_default' (cmdexec_ecs): password: *** -> ***, "
        "max_retries: 3 -> 5\n"
        "  would leave alone (the file does not set them): subnets\n"
        "unchanged Connection 'cmdexec_storage_default' (cmdexec_storage)\n"
        "  would leave alone (the file does not set them): team_note\n" in dry.stdout
    ), dry
    assert show(home) == masked(properties(DOCS_EXAMPLE))
    result = home.run("import-digdag-config", path)
    assert result.returncode == 0, result
    assert "  left alone (the file does not set them): subnets" in result.stdout
    assert "Imported: 0 created, 1 updated, 1 unchanged" in result.stdout
    assert_no_secrets(first, dry, result)
    with_subnets = changed + "agent.command_executor.ecs.digdag-test.subnets = subnet-NNNNN\n"
    assert show(home) == masked(properties(with_subnets))
    assert connection(home, "cmdexec_ecs_default")["password"] == "s3cr3t-ecs-Key-0001"
    assert connection(home, "cmdexec_storage_default")["extra"]["team_note"] == "kept"


EDIT_CONNECTION = """
import json, sys
from sqlalchemy import select
from airflow.models import Connection
from airflow.utils.session import create_session
fields = json.loads(sys.argv[2])
with create_session() as session:
    conn = session.scalar(select(Connection).where(Connection.conn_id == sys.argv[1]))
    conn.extra = json.dumps({**conn.extra_dejson, **fields.pop("extra", {})})
    for name, value in fields.items():
        setattr(conn, name, value)
"""


def edit_connection(home: CmdexecHome, conn_id: str, **fields) -> None:
    """Change fields of a stored connection, as the UI's Edit Connection form does."""
    proc = subprocess.run(
        [sys.executable, "-c", EDIT_CONNECTION, conn_id, json.dumps(fields)],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


UI_SECRET = "ui-set-Secret-0007"
PLAIN_FILE = """\
agent.command_executor.ecs.name = plain
agent.command_executor.ecs.plain.region = eu-west-1
agent.command_executor.ecs.temporal_storage.type = s3
agent.command_executor.ecs.temporal_storage.s3.bucket = plain-bucket
"""


def test_reimport_keeps_what_was_set_in_the_ui(home: CmdexecHome) -> None:
    """Review L18: Login/Password and extras such as aws_conn_id set in the UI survive a re-import."""
    assert home.run("import-digdag-config", home.write("a.properties", PLAIN_FILE)).returncode == 0
    edit_connection(
        home,
        "cmdexec_ecs_default",
        login="AKIAUISET",
        password=UI_SECRET,
        extra={"aws_conn_id": "team_aws", "subnets": ["subnet-ui"]},
    )
    edit_connection(
        home,
        "cmdexec_storage_default",
        login="AKIAUISTORAGE",
        password=UI_SECRET,
        extra={"aws_conn_id": "team_aws"},
    )

    moved = home.write("b.properties", PLAIN_FILE.replace("eu-west-1", "us-east-1"))
    dry = home.run("import-digdag-config", moved, "--dry-run")
    assert dry.returncode == 0, dry
    assert (
        "would update Connection 'cmdexec_ecs_default' (cmdexec_ecs): region: 'eu-west-1' -> 'us-east-1'\n"
        "  would leave alone (the file does not set them): login, password, aws_conn_id, subnets\n"
        "unchanged Connection 'cmdexec_storage_default' (cmdexec_storage)\n"
        "  would leave alone (the file does not set them): login, password, aws_conn_id\n" in dry.stdout
    ), dry
    result = home.run("import-digdag-config", moved)
    assert result.returncode == 0, result
    assert "Imported: 0 created, 1 updated, 1 unchanged" in result.stdout
    assert_no_secrets(dry, result)
    assert UI_SECRET not in dry.output + result.output

    ecs = connection(home, "cmdexec_ecs_default")
    assert (ecs["login"], ecs["password"]) == ("AKIAUISET", UI_SECRET)
    assert ecs["extra"] == {
        "cluster_name": "plain",
        "region": "us-east-1",
        "aws_conn_id": "team_aws",
        "subnets": ["subnet-ui"],
    }
    storage = connection(home, "cmdexec_storage_default")
    assert (storage["login"], storage["password"]) == ("AKIAUISTORAGE", UI_SECRET)
    assert storage["extra"] == {"type": "s3", "bucket": "plain-bucket", "aws_conn_id": "team_aws"}


def test_a_field_the_file_sets_replaces_its_alternatives(home: CmdexecHome) -> None:
    """Of launch_type / capacity_provider_name, and of the ways to reach a cluster, a connection
    holds one: the one in the file wins, so the re-imported connection is one a task can load."""
    first = home.run("import-digdag-config", home.write("a.properties", KUBERNETES_EXAMPLE + PLAIN_FILE))
    assert first.returncode == 0, first
    edit_connection(home, "cmdexec_ecs_default", extra={"capacity_provider_name": "spot"})
    switched = (
        KUBERNETES_EXAMPLE.replace("k8s.master = https://k8s.example:6443", "k8s.use_kube_config = true")
        .replace(
            "k8s.certs_ca_data = LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t", "k8s.kube_config_path = /etc/k.yaml"
        )
        .replace("agent.command_executor.kubernetes.k8s.oauth_token = k8s-Token-0005\n", "")
        + PLAIN_FILE
        + "agent.command_executor.ecs.plain.launch_type = FARGATE\n"
    )
    result = home.run("import-digdag-config", home.write("b.properties", switched))
    assert result.returncode == 0, result
    assert (
        "update Connection 'cmdexec_kubernetes_default' (kubernetes): kube_config: *** -> (unset), "
        "kube_config_path: (unset) -> '/etc/k.yaml'" in result.stdout
    ), result
    assert (
        "update Connection 'cmdexec_ecs_default' (cmdexec_ecs): capacity_provider_name: 'spot' -> (unset), "
        "launch_type: (unset) -> 'FARGATE'" in result.stdout
    ), result
    assert_no_secrets(result)
    assert "kube_config" not in connection(home, "cmdexec_kubernetes_default")["extra"]
    assert "capacity_provider_name" not in connection(home, "cmdexec_ecs_default")["extra"]


def test_the_connection_as_it_would_be_stored_is_validated(home: CmdexecHome) -> None:
    """What the file sets plus what it keeps must load as a task loads it, or nothing is written."""
    assert home.run("import-digdag-config", home.write("a.properties", PLAIN_FILE)).returncode == 0
    edit_connection(home, "cmdexec_ecs_default", extra={"poll_interval": 0})
    moved = PLAIN_FILE.replace("eu-west-1", "us-east-1")
    bad = home.run("import-digdag-config", home.write("b.properties", moved))
    assert bad.returncode == 1, bad
    assert (
        "error: ECS connection 'cmdexec_ecs_default': extra 'poll_interval' must be at least 1 second, got 0 "
        "(kept from the stored connection: poll_interval)" in bad.stderr
    ), bad
    assert "nothing was written" in bad.stderr
    assert connection(home, "cmdexec_ecs_default")["extra"]["region"] == "eu-west-1"


def test_show_config_on_an_empty_home(home: CmdexecHome) -> None:
    empty = home.run("show-config")
    assert empty.returncode == 0, empty
    assert properties(empty.stdout) == {}
    assert "# agent.command_executor.type = ecs  (default" in empty.stdout


def test_show_config_with_defaults(imported_home: CmdexecHome) -> None:
    full = imported_home.run("show-config", "--with-defaults")
    assert "# agent.command_executor.ecs.digdag-test.assign_public_ip = true  (default)" in full.stdout
    assert "# agent.command_executor.ecs.temporal_storage.prefix = cmdexec  (default)" in full.stdout
    assert properties(full.stdout) == masked(properties(DOCS_EXAMPLE))


def test_show_config_reports_a_broken_connection(home: CmdexecHome) -> None:
    add = subprocess.run(
        [
            str(VENV_BIN / "airflow"),
            "connections",
            "add",
            "cmdexec_ecs_default",
            "--conn-json",
            json.dumps(
                {
                    "conn_type": "cmdexec_ecs",
                    "password": "s3cr3t-ecs-Key-0001",
                    "extra": {"cluster_name": "c", "max_retries": "lots"},
                }
            ),
        ],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert add.returncode == 0, add.stderr
    result = home.run("show-config")
    assert result.returncode == 1, result
    assert (
        "error: agent.command_executor.ecs.c.max_retries: Connection 'cmdexec_ecs_default' field "
        "'extra.max_retries' (Digdag max_retries) must be a whole number, got 'lots'"
    ) in result.stderr
    assert_no_secrets(result)


def test_missing_file_and_unmigrated_db(tmp_path) -> None:
    home = CmdexecHome(tmp_path / "fresh")  # no DB at all
    missing = home.run("import-digdag-config", str(tmp_path / "nope.properties"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
    result = home.run("import-digdag-config", home.write("a.properties", DOCS_EXAMPLE))
    assert result.returncode == 1, result
    assert "airflow db migrate" in result.stderr
    assert "Traceback" not in result.output
    assert_no_secrets(result)


# -- Kubernetes -------------------------------------------------------------------------------------
KUBERNETES_EXAMPLE = """\
agent.command_executor.type = kubernetes
agent.command_executor.kubernetes.name = k8s
agent.command_executor.kubernetes.k8s.master = https://k8s.example:6443
agent.command_executor.kubernetes.k8s.certs_ca_data = LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
agent.command_executor.kubernetes.k8s.oauth_token = k8s-Token-0005
agent.command_executor.kubernetes.k8s.namespace = batch
agent.command_executor.kubernetes.other.use_kube_config = true
agent.command_executor.kubernetes.other.kube_config_path = /etc/airflow/other.kubeconfig
agent.command_executor.kubernetes.default_pod_ttl = 600s
agent.command_executor.kubernetes.poll_interval = 5
agent.command_executor.kubernetes.config_storage.in.type = s3
agent.command_executor.kubernetes.config_storage.in.s3.bucket = k8s-in
agent.command_executor.kubernetes.config_storage.in.s3.endpoint = s3.amazonaws.com
agent.command_executor.kubernetes.config_storage.out.type = s3
agent.command_executor.kubernetes.config_storage.out.s3.bucket = k8s-out
agent.command_executor.kubernetes.config_storage.out.s3.credentials.access-key-id = AKIAOUT
agent.command_executor.kubernetes.config_storage.out.s3.credentials.secret-access-key = s3cr3t-other-Key-0004
"""


def test_kubernetes_keys_import_show_and_round_trip(home: CmdexecHome) -> None:
    path = home.write("digdag.properties", KUBERNETES_EXAMPLE)
    result = home.run("import-digdag-config", path)
    assert result.returncode == 0, result
    assert "create Variable 'cmdexec_executor_type': 'kubernetes'" in result.stdout
    assert (
        "create Connection 'cmdexec_kubernetes_default' (kubernetes): cmdexec_cluster_name='k8s', "
        "namespace='batch', kube_config=***" in result.stdout
    )
    assert "create Connection 'cmdexec_kubernetes_other' (kubernetes)" in result.stdout
    assert "create Connection 'cmdexec_storage_kubernetes_in' (cmdexec_storage)" in result.stdout
    assert "create Connection 'cmdexec_storage_kubernetes_out' (cmdexec_storage)" in result.stdout
    assert "Imported: 5 created" in result.stdout
    assert_no_secrets(result)

    default = connection(home, "cmdexec_kubernetes_default")
    assert default["conn_type"] == "kubernetes"
    assert default["login"] is None
    assert default["password"] is None
    extra = default["extra"]
    kube_config = json.loads(extra["kube_config"])
    assert kube_config["current-context"] == "k8s"
    assert kube_config["clusters"][0]["cluster"] == {
        "server": "https://k8s.example:6443",
        "certificate-authority-data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
    }
    assert kube_config["users"][0]["user"] == {"token": "k8s-Token-0005"}
    assert {k: v for k, v in extra.items() if k != "kube_config"} == {
        "cmdexec_cluster_name": "k8s",
        "namespace": "batch",
        "cmdexec_default_pod_ttl": 600,
        "cmdexec_poll_interval": 5,
        "cmdexec_storage_in_conn_id": "cmdexec_storage_kubernetes_in",
        "cmdexec_storage_out_conn_id": "cmdexec_storage_kubernetes_out",
    }
    other = connection(home, "cmdexec_kubernetes_other")["extra"]
    assert other["kube_config_path"] == "/etc/airflow/other.kubeconfig"
    assert "kube_config" not in other
    assert other["cmdexec_default_pod_ttl"] == 600  # global keys: every cluster
    assert connection(home, "cmdexec_storage_kubernetes_out")["password"] == "s3cr3t-other-Key-0004"

    assert show(home) == masked(properties(KUBERNETES_EXAMPLE))
    again = home.run("import-digdag-config", path)
    assert "Nothing to change" in again.stdout, again

    rotated = KUBERNETES_EXAMPLE.replace("k8s-Token-0005", "k8s-Token-0006").replace("600s", "1h")
    update = home.run("import-digdag-config", home.write("rotated.properties", rotated))
    assert update.returncode == 0, update
    assert (
        "update Connection 'cmdexec_kubernetes_default' (kubernetes): cmdexec_default_pod_ttl: 600 -> 3600, "
        "kube_config: *** -> ***" in update.stdout
    )
    assert_no_secrets(update)
    assert json.loads(connection(home, "cmdexec_kubernetes_default")["extra"]["kube_config"])["users"][0][
        "user"
    ] == {"token": "k8s-Token-0006"}
    assert show(home)["agent.command_executor.kubernetes.default_pod_ttl"] == "3600s"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            (
                "agent.command_executor.kubernetes.name = k8s\n"
                "agent.command_executor.kubernetes.k8s.master = https://k\n"
            ),
            (
                "agent.command_executor.kubernetes.k8s.certs_ca_data, "
                "agent.command_executor.kubernetes.k8s.oauth_token "
                "missing"
            ),
        ),
        (
            (
                "agent.command_executor.kubernetes.name = k8s\n"
                "agent.command_executor.kubernetes.k8s.use_kube_config = true\n"
            ),
            "use_kube_config is true but agent.command_executor.kubernetes.k8s.kube_config_path is not set",
        ),
        (
            (
                "agent.command_executor.kubernetes.name = k8s\n"
                "agent.command_executor.kubernetes.k8s.use_kube_config = true\n"
                "agent.command_executor.kubernetes.k8s.kube_config_path = /k\n"
                "agent.command_executor.kubernetes.default_pod_ttl = soon\n"
            ),
            "'extra.cmdexec_default_pod_ttl' (Digdag default_pod_ttl) must be a duration",
        ),
        (
            "agent.command_executor.kubernetes.config_storage.in.s3.bucket = b\n",
            "agent.command_executor.kubernetes.config_storage.in.type is missing",
        ),
    ],
    ids=["partial-access", "no-path", "bad-ttl", "storage-without-type"],
)
def test_kubernetes_errors_name_the_key(home: CmdexecHome, lines: str, expected: str) -> None:
    bad = home.run("import-digdag-config", home.write("bad.properties", lines))
    assert bad.returncode == 1, bad
    assert expected in bad.stderr, bad
    assert "nothing was written" in bad.stderr
    assert connection(home, "cmdexec_kubernetes_default") is None


def test_show_config_of_a_kube_config_that_digdag_cannot_express(home: CmdexecHome) -> None:
    kube_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://k"}}],
        "users": [
            {"name": "u", "user": {"client-certificate-data": "x", "client-key-data": "k8s-Token-0005"}}
        ],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
    }
    add = subprocess.run(
        [
            str(VENV_BIN / "airflow"),
            "connections",
            "add",
            "cmdexec_kubernetes_default",
            "--conn-json",
            json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kube_config)}}),
        ],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert add.returncode == 0, add.stderr
    result = home.run("show-config")
    assert result.returncode == 0, result
    assert "agent.command_executor.kubernetes.name = default" in result.stdout
    assert (
        "# extra kube_config: context 'c' is more than Digdag's master, certs_ca_data and oauth_token"
        in result.stdout
    )
    assert "agent.command_executor.kubernetes.default.namespace = ns" in result.stdout
    assert_no_secrets(result)
