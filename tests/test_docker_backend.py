"""DockerBackend against the real Docker Engine: isolation, env, logs, exit codes, kill, build, CLI keys.

These tests call ``DockerBackend.run`` directly (the DAG-level tests are in ``test_docker_dag.py``).
Every test checks afterwards that no container of the Docker tests is left, running or stopped.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import airflow.sdk  # noqa: F401  # first: importing the provider's config before airflow is a circular import
import pytest

from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile
from airflow_cmdexec_provider.backends.docker import (
    ENV_FILE_MAX_VALUE,
    LABEL_PREFIX,
    DockerBackend,
    build_tag,
    container_name,
)
from airflow_cmdexec_provider.config import DockerConfig, docker_config
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError, CommandNotFound

from docker_helpers import (
    IMAGE,
    BackgroundRun,
    Project,
    Sink,
    backend,
    cmdlines_containing,
    docker,
    managed_containers,
    remove_image,
    require_docker,
    unique_labels,
    wait_for,
    wait_running,
    wrapper_calls,
    write_wrapper,
)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path)


@pytest.fixture
def no_leftovers():
    """Fail the test if any container of the Docker tests exists after it (and clean up)."""
    require_docker()
    before = set(managed_containers())
    yield
    left = [name for name in managed_containers() if name not in before]
    for name in left:
        docker("rm", "--force", name, check=False)
    assert not left, f"containers left behind: {left}"


# -- where and how the command runs -----------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_sh_runs_inside_container_in_project_workdir(project: Project) -> None:
    """The command runs in a container of the image, sees the project at the same path, in the workdir.

    Proof that it ran inside (the worker here may itself be a Debian container with /.dockerenv): the
    shell is PID 1 of its own PID namespace, and a file it writes outside the mounts is not on the host.
    """
    (project.root / "sub").mkdir()
    (project.root / "sub" / "data.txt").write_text("from the host\n")
    private = f"/tmp/cmdexec-inside-{uuid.uuid4().hex}"
    script = (
        'echo "pwd=$(pwd)"\n'
        'echo "pid=$$"\n'
        f'echo private > {private} && echo "private=written"\n'
        'echo "hostname=$(hostname)"\n'
        "cat data.txt\n"
        'echo "written in the container" > written.txt\n'
        f'ls {project.io_dir}/runner.sh >/dev/null && echo "io=visible"\n'
    )
    sink = Sink()
    result = backend(run_options=["--hostname", "cmdexec-xyz"]).run(
        project.sh_request(script, labels=unique_labels("inside"), workdir="sub"), sink
    )
    assert result.exit_code == 0, sink.text
    assert f"pwd={project.root / 'sub'}" in sink.lines
    assert "pid=1" in sink.lines
    assert "private=written" in sink.lines and not Path(private).exists()
    assert "hostname=cmdexec-xyz" in sink.lines  # run_options passed verbatim
    assert "from the host" in sink.lines
    assert "io=visible" in sink.lines
    assert (project.root / "sub" / "written.txt").read_text() == "written in the container\n"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_name_labels_and_run_options_while_running_then_kill(project: Project) -> None:
    """Unique name and labels per try, run_options in effect; kill() from another thread stops, removes it."""
    labels = unique_labels("labels", try_number=3)
    docker_backend = backend(run_options=["-m", "64m", "--hostname", "xyz"], stop_grace=2)
    script = "echo started\ngrep -o 'docker[/-][0-9a-f]*' /proc/self/cgroup | head -n 1\nsleep 300\n"
    run = BackgroundRun(docker_backend, project.sh_request(script, labels=labels)).start()
    info = wait_running(run.name)
    wait_for(lambda: len(run.sink.lines) >= 2, 10, "the script's first lines")
    assert info["Id"] in run.sink.lines[1]  # the script runs in exactly this container
    assert info["Name"] == "/" + container_name(labels)
    assert info["Config"]["Labels"] == {
        f"{LABEL_PREFIX}managed": "true",
        **{f"{LABEL_PREFIX}{key}": value for key, value in labels.items()},
    }
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["Config"]["Hostname"] == "xyz"
    assert info["Config"]["WorkingDir"] == str(project.root)
    assert info["Config"]["Image"] == IMAGE

    t0 = time.monotonic()
    killer = threading.Thread(target=docker_backend.kill, name="on-kill")
    killer.start()
    result = run.join(timeout=60)
    killer.join(timeout=60)
    assert not killer.is_alive()
    # sh as PID 1 ignores TERM, so docker stop escalates to KILL after the 2 s grace.
    assert time.monotonic() - t0 < 20
    assert result.exit_code in (137, 143)
    assert "started" in run.sink.lines
    # Once both have returned, the container is gone (not merely stopped).
    assert docker("container", "inspect", run.name, check=False).returncode != 0


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_kill_sends_term_first(project: Project) -> None:
    """kill() is docker stop: the command gets TERM (and can clean up) before any KILL."""
    docker_backend = backend(stop_grace=30)
    script = "trap 'echo got TERM; exit 42' TERM\necho ready\nsleep 300 &\nwait\n"
    run = BackgroundRun(docker_backend, project.sh_request(script, labels=unique_labels("term"))).start()
    wait_running(run.name)
    wait_for(lambda: "ready" in run.sink.lines, 10, "the script to start")
    t0 = time.monotonic()
    docker_backend.kill()
    result = run.join(timeout=60)
    assert time.monotonic() - t0 < 15  # well inside the 30 s grace: TERM was handled
    assert "got TERM" in run.sink.lines
    assert result.exit_code == 42


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_kill_before_the_container_starts_prevents_it(project: Project, tmp_path: Path) -> None:
    """A kill that arrives while the image is being pulled (pull_always) must not let the command start."""
    calls = tmp_path / "calls.log"
    cli = write_wrapper(tmp_path / "slow-docker", calls, delay_on="pull", delay=3)
    docker_backend = backend(docker=str(cli), pull_always=True)
    marker = project.root / "ran.txt"
    run = BackgroundRun(
        docker_backend, project.sh_request(f"touch {marker}\n", labels=unique_labels("early"))
    ).start()
    wait_for(lambda: any(c[:1] == ["pull"] for c in wrapper_calls(calls)), 10, "the pull")
    docker_backend.kill()
    error = run.join_error(timeout=60)
    assert isinstance(error, BackendError), error
    assert not marker.exists()
    assert not any(c[:1] == ["run"] for c in wrapper_calls(calls))


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_leftover_container_of_the_same_try_is_replaced(project: Project) -> None:
    """A container left by an earlier attempt of the same try (same name) is removed, then the task runs."""
    labels = unique_labels("leftover")
    name = container_name(labels)
    docker(
        "create",
        "--name",
        name,
        "--label",
        f"{LABEL_PREFIX}managed=true",
        "--label",
        f"{LABEL_PREFIX}dag_id={labels['dag_id']}",
        IMAGE,
        "true",
    )
    sink = Sink()
    result = backend().run(project.sh_request("echo fresh", labels=labels), sink)
    assert result.exit_code == 0
    assert any(line.startswith(f"Removing leftover container {name} of an earlier attempt") for line in sink.lines), (
        sink.text
    )
    assert sink.lines[-1] == "fresh"


# -- exit codes -------------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
@pytest.mark.parametrize("code", [0, 3, 125, 127])
def test_exit_code_propagates(project: Project, code: int) -> None:
    """The container's exit code is the result, also 125-127 (ordinary codes of user commands)."""
    sink = Sink()
    result = backend().run(
        project.sh_request(f"echo bye\nexit {code}\n", labels=unique_labels(f"exit{code}")), sink
    )
    assert result.exit_code == code
    assert result.reason is None
    assert sink.lines == ["bye"]


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_oom_kill_is_reported(project: Project) -> None:
    sink = Sink()
    request = project.sh_request(
        "echo allocating\nexec python3 -c 'b = bytearray(512 * 1024 * 1024); print(len(b))'\n",
        labels=unique_labels("oom"),
    )
    result = backend(run_options=["-m", "64m", "--memory-swap", "64m"]).run(request, sink)
    assert result.exit_code == 137, sink.text
    assert result.reason and "OOM" in result.reason


# -- logs -------------------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_logs_stream_line_by_line_while_the_container_runs(project: Project) -> None:
    sink = Sink()
    script = "echo first\necho to-stderr >&2\nsleep 3\necho second\n"
    t0 = time.monotonic()
    result = backend().run(project.sh_request(script, labels=unique_labels("stream")), sink)
    ended = time.monotonic()
    assert result.exit_code == 0
    # stdout and stderr both reach the sink; docker attaches them as two streams, so only the order
    # within one stream is guaranteed.
    assert sorted(sink.lines) == ["first", "second", "to-stderr"]
    assert sink.lines.index("first") < sink.lines.index("second")
    first = sink.times[sink.lines.index("first")]
    assert ended - first >= 2.5, (
        f"first line came {ended - first:.2f}s before the end (started {first - t0:.2f}s in)"
    )
    assert sink.times[sink.lines.index("second")] - first >= 2.5


# -- environment ------------------------------------------------------------------------------------
ENV_CASES = {
    "PLAIN": "plain value",
    "MULTI_LINE": "line one\nline two\n  indented line three  \n\nafter an empty line\n",
    "CRLF": "windows\r\nline\r\n",
    "EQUALS": "a=b=c",
    "QUOTES": 'it\'s "quoted" `$(echo pwned)` ${HOME} \\ end\\',
    "UNICODE": "héllo ✓ 日本語",
    "SPACES": "  leading and trailing  ",
    "EMPTY": "",
    "HASH": "# not a comment",
    "LONG": "x" * (ENV_FILE_MAX_VALUE + 5000),
    "PATH": "/custom/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_env_reaches_container_intact_and_worker_env_does_not(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_only = f"CMDEXEC_WORKER_ONLY_{uuid.uuid4().hex}"
    monkeypatch.setenv(worker_only, "must-not-leak")
    out = project.io_dir / "env.json"
    dump = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    script = f'exec python3 -c "{dump}" {out}\n'
    sink = Sink()
    result = backend().run(project.sh_request(script, labels=unique_labels("env"), env=ENV_CASES), sink)
    assert result.exit_code == 0, sink.text
    seen = json.loads(out.read_text())
    for key, value in ENV_CASES.items():
        assert seen.get(key) == value, f"{key}: sent {value[:80]!r}, got {seen.get(key, '<missing>')[:80]!r}"
    assert worker_only not in seen
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST"):
        assert key not in seen, f"the worker's {key} leaked into the container"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_multiline_value_named_like_a_docker_cli_variable_is_refused(project: Project) -> None:
    """A value that must travel through the CLI's own environment may not change the CLI (DOCKER_HOST ...)."""
    with pytest.raises(CmdExecConfigError, match="DOCKER_HOST"):
        backend().run(
            project.sh_request("true", labels=unique_labels("clienv"), env={"DOCKER_HOST": "a\nb"}), Sink()
        )


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_env_values_never_appear_on_a_command_line(project: Project, tmp_path: Path) -> None:
    """While the container runs, no process on the host has a secret in its /proc/PID/cmdline."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    secret_line = f"multi-{uuid.uuid4().hex}"
    env = {"SECRET_TOKEN": secret, "SECRET_MULTI": f"first\n{secret_line}\nlast"}
    calls = tmp_path / "calls.log"
    cli = write_wrapper(tmp_path / "docker-wrapper", calls)
    docker_backend = backend(docker=str(cli), stop_grace=1)
    script = 'test "$SECRET_TOKEN" = "' + secret + '" && echo token-ok\necho ready\nsleep 300\n'
    run = BackgroundRun(
        docker_backend, project.sh_request(script, labels=unique_labels("secret"), env=env)
    ).start()
    try:
        wait_running(run.name)
        wait_for(lambda: "ready" in run.sink.lines, 10, "the script to start")
        assert "token-ok" in run.sink.lines
        assert cmdlines_containing(secret.encode()) == []
        assert cmdlines_containing(secret_line.encode()) == []
        # The sleeping container process itself is visible in the scan (so the scan does see containers).
        assert cmdlines_containing(b"sleep\x00300") or cmdlines_containing(b"runner.sh")
    finally:
        docker_backend.kill()
        run.join(timeout=60)
    for argv in wrapper_calls(calls):
        joined = "\x00".join(argv)
        assert secret not in joined and secret_line not in joined
    run_call = next(c for c in wrapper_calls(calls) if c[:1] == ["run"])
    assert "--env-file" in run_call


# -- CLI path and keys ------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_docker_cli_path_is_honoured(project: Project, tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    cli = write_wrapper(tmp_path / "my docker", calls)  # a space in the path, too
    sink = Sink()
    labels = unique_labels("cli")
    result = backend(docker=str(cli), run_options=["--hostname", "via-wrapper"]).run(
        project.sh_request("hostname", labels=labels), sink
    )
    assert result.exit_code == 0
    assert sink.lines == ["via-wrapper"]
    recorded = wrapper_calls(calls)
    commands = [c[0] for c in recorded]
    assert "run" in commands and "rm" in commands
    run_call = recorded[commands.index("run")]
    # run_options right after "run", verbatim; the project mounted at the same path; the workdir set.
    assert run_call[1:3] == ["--hostname", "via-wrapper"]
    assert f"{project.root}:{project.root}:rw" in run_call
    assert run_call[run_call.index("-w") + 1] == str(project.root)
    assert run_call[run_call.index("--name") + 1] == container_name(labels)


def test_cli_not_found_is_a_config_error(project: Project) -> None:
    with pytest.raises(CmdExecConfigError, match=r"docker\.docker"):
        backend(docker="/nonexistent/bin/docker").run(
            project.sh_request("true", labels=unique_labels("nocli")), Sink()
        )


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_pull_always_fails_clearly_without_a_registry(project: Project) -> None:
    """pull_always pulls even a local image; with no registry reachable that is an error naming the image."""
    marker = project.root / "ran.txt"
    sink = Sink()
    with pytest.raises(BackendError) as info:
        backend(pull_always=True).run(
            project.sh_request(f"touch {marker}", labels=unique_labels("pull")), sink
        )
    assert f"docker pull {IMAGE} failed" in str(info.value)
    assert not marker.exists()


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_missing_image_is_an_error_naming_it(project: Project) -> None:
    marker = project.root / "ran.txt"
    sink = Sink()
    image = f"cmdexec-no-such-image:{uuid.uuid4().hex[:8]}"
    with pytest.raises(BackendError, match=f"the image {image} is not on this Docker host and could not be pulled"):
        backend(image=image).run(project.sh_request(f"touch {marker}", labels=unique_labels("noimage")), sink)
    assert f"Unable to find image '{image}' locally" in sink.lines
    assert not marker.exists()


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_unreachable_daemon_is_an_error(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    marker = project.root / "ran.txt"
    with pytest.raises(BackendError, match="not reachable"):
        backend().run(project.sh_request(f"touch {marker}", labels=unique_labels("nodaemon")), Sink())
    assert not marker.exists()


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_missing_program_in_image_is_command_not_found(project: Project) -> None:
    labels = unique_labels("noprog")
    request = CommandRequest(
        task_label="dockertest.noprog",
        project_dir=project.root,
        workdir="",
        io_dir=project.io_dir,
        command=("python9", IoFile("runner.py")),
        labels=labels,
    )
    with pytest.raises(CommandNotFound) as info:
        backend().run(request, Sink())
    assert info.value.program == "python9"
    assert IMAGE in info.value.where


# -- build ------------------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_build_makes_a_content_tagged_image_and_reuses_it(project: Project, tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    params = {
        "build": [
            f"echo {token} > /cmdexec-build-token",
            "echo line-a >> /cmdexec-build-lines\necho line-b >> /cmdexec-build-lines",
        ],
        "build_options": ["--label", f"io.github.cmdexec.test-build={token}"],
    }
    tag = build_tag(docker_config({"image": IMAGE, **params}, "t"))
    calls = tmp_path / "calls.log"
    cli = write_wrapper(tmp_path / "docker-wrapper", calls)
    script = "cat /cmdexec-build-token /cmdexec-build-lines"
    try:
        first = Sink()
        result = backend(params, docker=str(cli)).run(
            project.sh_request(script, labels=unique_labels("build")), first
        )
        assert result.exit_code == 0, first.text
        assert f"Building docker image {tag} from {IMAGE}" in first.lines
        assert first.lines[-3:] == [token, "line-a", "line-b"]
        builds = [c for c in wrapper_calls(calls) if c[:1] == ["build"]]
        assert len(builds) == 1
        assert builds[0][1:3] == [
            "--label",
            f"io.github.cmdexec.test-build={token}",
        ]  # build_options verbatim
        image_id = docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
        label = docker(
            "image", "inspect", "--format", '{{index .Config.Labels "io.github.cmdexec.test-build"}}', tag
        ).stdout.strip()
        assert label == token

        calls.unlink()
        second = Sink()
        result = backend(params, docker=str(cli)).run(
            project.sh_request(script, labels=unique_labels("build")), second
        )
        assert result.exit_code == 0, second.text
        assert f"Reusing docker image {tag}" in second.lines
        assert not any("Building" in line or line.startswith("Step ") for line in second.lines)
        assert not [c for c in wrapper_calls(calls) if c[:1] == ["build"]]
        assert second.lines[-3:] == [token, "line-a", "line-b"]
        assert docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip() == image_id
    finally:
        remove_image(tag)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_failed_build_is_an_error(project: Project) -> None:
    marker = project.root / "ran.txt"
    # One failing step: a successful step before it would stay behind as a (dangling) cache layer.
    params = {"build": ["echo building; exit 7"]}
    tag = build_tag(docker_config({"image": IMAGE, **params}, "t"))
    try:
        with pytest.raises(BackendError, match="docker build failed"):
            backend(params).run(
                project.sh_request(f"touch {marker}", labels=unique_labels("badbuild")), Sink()
            )
        assert not marker.exists()
        assert docker("image", "inspect", tag, check=False).returncode != 0
    finally:
        remove_image(tag)


# -- unit tests of names, tags and argv (no Docker needed) ------------------------------------------
def test_container_name_is_unique_per_try_and_deterministic() -> None:
    labels = {"dag_id": "d", "task_id": "t", "run_id": "manual__1", "try_number": "1", "map_index": "-1"}
    assert container_name(labels) == container_name(dict(labels))
    others = [
        {**labels, "try_number": "2"},
        {**labels, "run_id": "manual__2"},
        {**labels, "map_index": "0"},
        {**labels, "task_id": "u"},
        {**labels, "dag_id": "e"},
    ]
    names = {container_name(labels), *(container_name(o) for o in others)}
    assert len(names) == 1 + len(others)
    weird = container_name(
        {**labels, "dag_id": "a b/c" * 20, "run_id": "scheduled__2026-01-01T00:00:00+00:00"}
    )
    assert all(ch.isalnum() or ch in "_.-" for ch in weird)


def test_build_tag_depends_on_image_build_lines_and_build_options() -> None:
    base = docker_config({"image": "img:1", "build": ["apt-get install x"]}, "t")
    same = docker_config({"image": "img:1", "build": ["apt-get install x"]}, "t")
    assert build_tag(base) == build_tag(same)
    assert build_tag(base).startswith("cmdexec-build:")
    variants = [
        {"image": "img:2", "build": ["apt-get install x"]},
        {"image": "img:1", "build": ["apt-get install y"]},
        {"image": "img:1", "build": ["apt-get install x"], "build_options": ["--build-arg", "V=2"]},
    ]
    assert len({build_tag(base), *(build_tag(docker_config(v, "t")) for v in variants)}) == 4


def _argv(config: DockerConfig, tmp_path: Path) -> list[str]:
    request = CommandRequest(
        task_label="d.t",
        project_dir=tmp_path / "p",
        workdir="w",
        io_dir=tmp_path / "io",
        command=("/bin/sh", IoFile("runner.sh")),
        env={"A": "1"},
        labels={"dag_id": "d", "task_id": "t", "run_id": "r", "try_number": "1"},
    )
    return DockerBackend(config)._run_argv(
        "/usr/bin/docker", "name", config.image, request, "/tmp/envfile", {"MULTI": "a\nb"}
    )


def test_run_argv_layout(tmp_path: Path) -> None:
    argv = _argv(
        docker_config({"image": "img:1", "run_options": ["-m", "1G", "--network=none"]}, "d.t"), tmp_path
    )
    project, io_dir = str(tmp_path / "p"), str(tmp_path / "io")
    assert argv[:5] == ["/usr/bin/docker", "run", "-m", "1G", "--network=none"]
    assert argv[argv.index("--name") + 1] == "name"
    assert f"{project}:{project}:rw" in argv and f"{io_dir}:{io_dir}:rw" in argv
    assert argv[argv.index("-w") + 1] == f"{project}/w"
    assert argv[argv.index("--env-file") + 1] == "/tmp/envfile"
    assert argv[argv.index("-e") + 1] == "MULTI"  # the name only, the value stays in the CLI's environment
    assert "1" not in argv and "a\nb" not in " ".join(argv)
    assert argv[-3:] == ["img:1", "/bin/sh", f"{io_dir}/runner.sh"]
    assert f"{LABEL_PREFIX}managed=true" in argv


def test_selinux_relabels_the_mounts(tmp_path: Path) -> None:
    argv = _argv(docker_config({"image": "img:1", "selinux": True}, "d.t"), tmp_path)
    project, io_dir = str(tmp_path / "p"), str(tmp_path / "io")
    assert f"{project}:{project}:rw,Z" in argv and f"{io_dir}:{io_dir}:rw,Z" in argv
    plain = _argv(docker_config({"image": "img:1"}, "d.t"), tmp_path)
    assert not any(a.endswith(",Z") for a in plain)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({}, r"docker\.image is required"),
        ({"image": ""}, r"docker\.image is required"),
        ({"image": "x", "run_options": "-m 1G"}, r"run_options must be a list"),
        ({"image": "x", "pull_always": "maybe"}, r"pull_always must be true or false"),
        ({"image": "x", "imagee": "y"}, r"unknown keys \['imagee'\]"),
        ({"image": "x", "docker": ""}, r"docker\.docker must be the path"),
    ],
)
def test_docker_config_errors(params: dict, match: str) -> None:
    with pytest.raises(CmdExecConfigError, match=match):
        docker_config(params, "d.t")


def test_docker_config_defaults() -> None:
    config = docker_config({"image": "img:1", "build": "echo one"}, "d.t")
    assert config.docker == "docker"
    assert config.run_options == () and config.build_options == ()
    assert config.pull_always is False and config.selinux is False
    assert config.build == ("echo one",)
