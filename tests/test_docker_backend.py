"""DockerBackend against the real Docker Engine, through both ways it talks to it: the Engine API
(the default) and the docker CLI (``docker.docker`` set, or CLI flags in ``run_options``).

These tests call the backend directly (DAG-level tests: ``test_docker_dag.py``, deferrable mode:
``test_docker_deferrable.py``). Every Docker test checks afterwards that no container of this test
session is left, running or stopped. The Engine API is observed through ``EngineRecorder`` (a proxy
in front of the real daemon), the CLI through a wrapper script that records its calls.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import io
import json
import os
import re
import signal
import socketserver
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import airflow.sdk  # noqa: F401  # first: importing the provider's config before airflow is a circular import
import pytest
from docker_helpers import (
    DAG_PREFIX,
    IMAGE,
    TRANSPORTS,
    BackgroundRun,
    EngineRecorder,
    Project,
    Sink,
    backend,
    cli_command,
    cmdlines_containing,
    docker,
    inspect_container,
    leftovers_checked,
    private_dirs,
    recording_proxy,
    remove_image,
    require_docker,
    unique_labels,
    wait_for,
    wait_running,
    wrapper_calls,
    wrapper_done,
    write_wrapper,
)

from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile
from airflow_cmdexec_provider.backends.docker import (
    LABEL_PREFIX,
    MAX_OUTPUT_ENTRIES,
    _LogCursor,
    build_tag,
    container_name,
    extract_outputs,
    workspace_archive,
)
from airflow_cmdexec_provider.backends.docker_transports import (
    ENV_FILE_MAX_LINE,
    EngineApi,
    cli_env,
    speakable_version,
)
from airflow_cmdexec_provider.config import docker_config
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError, CommandNotFound

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path)


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    yield from leftovers_checked()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineRecorder]:
    yield from recording_proxy(monkeypatch)


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> dict[str, str]:
    """The docker params that select a transport: ``{}`` (Engine API) or ``{"docker": "docker"}`` (CLI)."""
    return TRANSPORTS[request.param]


def _labels_of(labels: dict[str, str]) -> list[str]:
    """``docker create`` arguments for the labels the backend gives a container of these task labels."""
    pairs = {"managed": "true", **labels}.items()
    return [arg for key, value in pairs for arg in ("--label", f"{LABEL_PREFIX}{key}={value}")]


# -- where and how the command runs -----------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_command_runs_in_its_own_container_on_a_copy_of_the_project(
    project: Project, transport: dict
) -> None:
    """The container gets a copy of the project (what ECS ships: no dot-paths, no .digdagignore'd
    paths, modes and in-project links kept) at the same paths, runs in the workdir, and whatever it
    does to the project stays in the container (review H6); its IO dir comes back."""
    (project.root / "sub").mkdir()
    (project.root / "sub" / "data.txt").write_text("from the host\n")
    (project.root / "sub" / "link.txt").symlink_to("data.txt")
    tool = project.root / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    (project.root / ".secret").write_text("dot files stay home\n")
    (project.root / ".digdagignore").write_text("ignored/\n")
    (project.root / "ignored").mkdir()
    (project.root / "ignored" / "x").write_text("ignored\n")
    private = f"/tmp/cmdexec-inside-{uuid.uuid4().hex}"
    script = (
        'echo "pwd=$(pwd)"\n'
        'echo "pid=$$"\n'
        "cat data.txt link.txt\n"
        "../tool.sh\n"
        "test -e ../.secret && echo dot=copied || echo dot=absent\n"
        "test -e ../ignored/x && echo ignored=copied || echo ignored=absent\n"
        f'echo private > {private} && echo "private=written"\n'
        "echo changed > data.txt && rm ../tool.sh && echo new > written.txt && echo project=changed\n"
        f"echo result > {project.io_dir}/result.txt\n"
    )
    sink = Sink()
    result = backend(transport).run(
        project.sh_request(script, labels=unique_labels("inside"), workdir="sub"), sink
    )
    assert result.exit_code == 0, sink.text
    assert f"pwd={project.root / 'sub'}" in sink.lines
    assert "pid=1" in sink.lines  # PID 1 of its own PID namespace: a container
    assert sink.lines.count("from the host") == 2
    assert "tool ran" in sink.lines
    assert "dot=absent" in sink.lines
    assert "ignored=absent" in sink.lines
    assert "private=written" in sink.lines
    assert not Path(private).exists()
    assert "project=changed" in sink.lines
    # The worker's project is untouched; the IO dir came back.
    assert (project.root / "sub" / "data.txt").read_text() == "from the host\n"
    assert tool.exists()
    assert not (project.root / "sub" / "written.txt").exists()
    assert (project.io_dir / "result.txt").read_text() == "result\n"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_task_makes_these_engine_api_calls_and_no_more(project: Project, recorder) -> None:
    """The per-task cost on the Engine API: no inspect before the create, one log stream while it
    runs, the state once, the rest of the log (Docker may end a follow early), the IO dir, gone."""
    assert (
        backend().run(project.sh_request("echo hello", labels=unique_labels("calls")), Sink()).exit_code == 0
    )

    def short(
        call: str,
    ) -> str:  # "GET /v1.41/containers/cmdexec-.../logs?...&follow=1" -> ".../C/logs?follow=1"
        path, _, query = call.partition("?")
        path = re.sub(
            r"/containers/cmdexec-[\w.-]+", "/containers/C", re.sub(r"^(\w+) /v[\d.]+/", r"\1 /", path)
        )
        follow = re.search(r"follow=(\d)", query)
        return f"{path}?follow={follow[1]}" if path.endswith("/logs") else path

    assert [short(call) for call in recorder.calls()] == [
        "GET /_ping",  # the API version, as the docker CLI learns it (GET /version costs the daemon more)
        "POST /containers/create",
        "PUT /containers/C/archive",
        "POST /containers/C/start",
        "GET /containers/C/logs?follow=1",
        "GET /containers/C/json",
        "GET /containers/C/logs?follow=0",
        "GET /containers/C/archive",
        "DELETE /containers/C",
    ]


@pytest.mark.docker
def test_the_client_speaks_the_daemons_api_version_learnt_from_its_ping() -> None:
    """The version the SDK's ``version="auto"`` would pick (the daemon's own), without ``GET /version``."""
    require_docker()
    from docker.constants import DEFAULT_DOCKER_API_VERSION
    from docker.utils import version_lt

    offered = json.loads(docker("version", "--format", "{{json .Server.APIVersion}}").stdout)
    client = EngineApi(docker_config({"image": IMAGE}, "dockertest.version")).new_client()
    try:
        expected = offered if version_lt(offered, DEFAULT_DOCKER_API_VERSION) else DEFAULT_DOCKER_API_VERSION
        assert client.api_version == expected
        assert client.ping()
    finally:
        client.close()


def test_the_spoken_api_version_is_the_older_of_the_daemons_and_the_sdks() -> None:
    from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
    from docker.errors import InvalidVersion

    assert speakable_version("1.41") == "1.41"
    assert speakable_version(MINIMUM_DOCKER_API_VERSION) == MINIMUM_DOCKER_API_VERSION
    assert speakable_version("1.99") == DEFAULT_DOCKER_API_VERSION
    with pytest.raises(InvalidVersion, match=r"speaks Docker API 1\.12; the docker SDK needs"):
        speakable_version("1.12")


class _OldDaemon(http.server.BaseHTTPRequestHandler):
    """A daemon from before API 1.25: its ping names no version, ``/version`` does."""

    api_version = "1.24"

    def do_GET(self) -> None:  # the http.server hook
        body = b"OK" if self.path == "/_ping" else json.dumps({"ApiVersion": self.api_version}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("api_version", "error"), [("1.24", None), ("1.19", "the docker SDK needs 1.24")])
def test_a_daemon_whose_ping_names_no_version_is_asked_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_version: str, error: str | None
) -> None:
    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    handler = type("Handler", (_OldDaemon,), {"api_version": api_version})
    sock = tmp_path / "d.sock"
    with Server(str(sock), handler) as server:
        server.client_address = ("local", 0)  # http.server logs it; a unix socket has none
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
        api = EngineApi(docker_config({"image": IMAGE}, "dockertest.old"))
        try:
            if error is None:
                assert api.new_client().api_version == api_version
            else:
                with pytest.raises(BackendError, match=f"Task dockertest.old: the Docker daemon .*{error}"):
                    api.new_client()
        finally:
            server.shutdown()


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_command_whose_io_dir_is_not_needed_is_not_copied_out(project: Project, recorder) -> None:
    """sh> reports only its exit code: its IO dir stays in the container (a copy costs the daemon a
    process)."""
    request = dataclasses.replace(
        project.sh_request("echo hello", labels=unique_labels("noout")), needs_outputs=False
    )
    assert backend().run(request, Sink()).exit_code == 0
    calls = recorder.calls()
    assert any(c.startswith("PUT ") and c.split("?")[0].endswith("/archive") for c in calls)
    assert not any(c.startswith("GET ") and c.split("?")[0].endswith("/archive") for c in calls), calls


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_an_image_user_that_is_not_root_can_write_the_workspace(project: Project) -> None:
    (project.root / "sub").mkdir()
    (project.root / "sub" / "in.txt").write_text("x\n")
    script = f"id -u\necho fresh > new.txt && cat new.txt\necho out > {project.io_dir}/out.txt\n"
    sink = Sink()
    result = backend(run_options=["--user", "65534:65534"]).run(
        project.sh_request(script, labels=unique_labels("nonroot"), workdir="sub"), sink
    )
    assert result.exit_code == 0, sink.text
    assert sink.lines[-2:] == ["65534", "fresh"]
    assert (project.io_dir / "out.txt").read_text() == "out\n"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_name_labels_and_kill_while_running(project: Project, transport: dict) -> None:
    """Unique name and labels per try; the script runs in exactly that container; kill() from another
    thread stops it (sh as PID 1 ignores TERM: KILL after the grace) and it is removed."""
    labels = unique_labels("labels", try_number=3)
    extra = {"run_options": ["-m", "64m", "--hostname", "xyz"]} if transport else {}
    docker_backend = backend({**transport, **extra}, stop_grace=2)
    token = uuid.uuid4().hex
    script = f"echo {token} > /tmp/cmdexec-proof\necho started\nsleep 300\n"
    run = BackgroundRun(docker_backend, project.sh_request(script, labels=labels)).start()
    info = wait_running(run.name)
    wait_for(lambda: "started" in run.sink.lines, 60, "the script to start")
    assert docker("exec", run.name, "cat", "/tmp/cmdexec-proof").stdout.strip() == token
    assert info["Name"] == "/" + container_name(labels)
    assert info["Config"]["Labels"] == {
        f"{LABEL_PREFIX}managed": "true",
        **{f"{LABEL_PREFIX}{key}": value for key, value in labels.items()},
    }
    assert info["Config"]["WorkingDir"] == str(project.root)
    assert info["Config"]["Image"] == IMAGE
    assert info["HostConfig"]["Binds"] in (None, [])  # nothing of the worker is mounted
    if extra:
        assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert info["Config"]["Hostname"] == "xyz"

    killer = threading.Thread(target=docker_backend.kill, name="on-kill")
    killer.start()
    result = run.join(timeout=120)
    killer.join(timeout=120)
    assert not killer.is_alive()
    assert result.exit_code in (137, 143)
    assert inspect_container(run.name) is None  # removed, not merely stopped


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_kill_sends_term_first(project: Project) -> None:
    """kill() is docker stop: the command gets TERM (and can clean up) before any KILL (which would
    give 137)."""
    docker_backend = backend(stop_grace=60)
    script = "trap 'echo got TERM; exit 42' TERM\necho ready\nsleep 300 &\nwait\n"
    run = BackgroundRun(docker_backend, project.sh_request(script, labels=unique_labels("term"))).start()
    wait_for(lambda: "ready" in run.sink.lines, 60, "the script to start")
    docker_backend.kill()
    result = run.join(timeout=120)
    assert "got TERM" in run.sink.lines
    assert result.exit_code == 42


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_kill_before_the_container_starts_prevents_it_api(project: Project, recorder) -> None:
    """A kill while the workspace is copied in (the copy is held by the proxy) means no start at all."""
    recorder.hold(r"^PUT .*/archive")
    docker_backend = backend()
    run = BackgroundRun(
        docker_backend, project.sh_request("echo ran\n", labels=unique_labels("early"))
    ).start()
    assert recorder.held.wait(120), "the copy into the container never came"
    docker_backend.kill()
    recorder.release()
    error = run.join_error(timeout=120)
    assert isinstance(error, BackendError), error
    assert "was killed before its container started" in str(error), error
    assert recorder.calls(r"/start$") == []
    assert "ran" not in run.sink.lines
    assert inspect_container(run.name) is None


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_kill_before_the_container_starts_prevents_it_cli(project: Project, tmp_path: Path) -> None:
    calls, go = tmp_path / "calls.log", tmp_path / "go"
    cli = write_wrapper(tmp_path / "held-docker", calls, hold_on="cp", go=go)
    docker_backend = backend(docker=str(cli))
    run = BackgroundRun(
        docker_backend, project.sh_request("echo ran\n", labels=unique_labels("early"))
    ).start()
    wait_for(
        lambda: any(cli_command(c) == "cp" for c in wrapper_calls(calls)), 120, "the copy into the container"
    )
    docker_backend.kill()
    go.touch()
    error = run.join_error(timeout=120)
    assert isinstance(error, BackendError), error
    assert "was killed before its container started" in str(error), error
    assert not any(cli_command(c) == "start" for c in wrapper_calls(calls))
    assert "ran" not in run.sink.lines
    assert inspect_container(run.name) is None


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_failed_container_removal_is_reported_not_swallowed(project: Project, tmp_path: Path) -> None:
    """Review L19: a ``docker rm`` that fails leaves the container; the task log must say so, naming it,
    and the command's own result still stands."""
    calls = tmp_path / "calls.log"
    refuse_rm = (
        'if [ "$cmd" = "rm" ]; then echo "Error response from daemon: removal refused by the test" >&2; '
        "exit 1; fi\n"
    )
    cli = write_wrapper(tmp_path / "docker-no-rm", calls, extra=refuse_rm)
    sink = Sink()
    labels = unique_labels("rm-fails")
    try:
        result = backend(docker=str(cli)).run(project.sh_request("echo done", labels=labels), sink)
        assert result.exit_code == 0, sink.text
        assert "done" in sink.lines
        name = container_name(labels)
        warnings = [line for line in sink.lines if line.startswith("WARNING: could not clean up")]
        assert warnings, sink.text
        assert name in warnings[0], warnings
        assert "removal refused by the test" in warnings[0], warnings
        assert inspect_container(name) is not None  # really left: that is what the warning reports
    finally:
        docker("rm", "--force", container_name(labels))


# -- what earlier attempts and tries left ------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_leftover_container_of_the_same_try_is_replaced(project: Project, transport: dict) -> None:
    """A container of this very try (same name, labels naming this try) is removed, then the task runs."""
    labels = unique_labels("leftover")
    name = container_name(labels)
    docker("create", "--name", name, *_labels_of(labels), IMAGE, "true")
    sink = Sink()
    result = backend(transport).run(project.sh_request("echo fresh", labels=labels), sink)
    assert result.exit_code == 0
    assert f"Removing leftover container {name} of an earlier attempt of this try" in sink.lines, sink.text
    assert sink.lines[-1] == "fresh"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_container_whose_labels_name_another_task_is_never_removed(project: Project) -> None:
    labels = unique_labels("foreign")
    name = container_name(labels)
    docker("create", "--name", name, *_labels_of({**labels, "task_id": "another_task"}), IMAGE, "true")
    try:
        with pytest.raises(
            BackendError, match=f"the container name {name} is taken by a container of another task"
        ):
            backend().run(project.sh_request("echo never", labels=labels), Sink())
        assert inspect_container(name) is not None
    finally:
        docker("rm", "--force", name, check=False)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_the_next_try_removes_what_an_earlier_try_left_and_nothing_else(project: Project) -> None:
    first = unique_labels("tries", try_number=1)
    earlier = container_name(first)
    sibling = container_name({**first, "task_id": "sibling"})
    other_run = container_name({**first, "run_id": f"manual__{uuid.uuid4().hex}"})
    docker("create", "--name", earlier, *_labels_of(first), IMAGE, "true")
    docker("create", "--name", sibling, *_labels_of({**first, "task_id": "sibling"}), IMAGE, "true")
    docker("create", "--name", other_run, *_labels_of({**first, "run_id": "another-run"}), IMAGE, "true")
    try:
        sink = Sink()
        result = backend().run(
            project.sh_request("echo second try", labels={**first, "try_number": "2"}), sink
        )
        assert result.exit_code == 0
        assert sink.lines[-1] == "second try"
        assert f"Removing container {earlier}, left by try 1 of this task" in sink.lines
        assert inspect_container(earlier) is None
        assert inspect_container(sibling) is not None
        assert inspect_container(other_run) is not None
    finally:
        docker("rm", "--force", earlier, sibling, other_run, check=False)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_starting_handle_of_a_container_that_was_not_started_makes_a_new_one(project: Project) -> None:
    """A try that died between create and start: the next one removes that container and starts its own."""
    first = unique_labels("created", try_number=1)
    earlier = container_name(first)
    docker("create", "--name", earlier, *_labels_of(first), IMAGE, "true")
    starting = {"backend": "docker", "starting": True, "container": earlier, "io_dir": str(project.io_dir)}
    sink = Sink()
    second = {**first, "try_number": "2"}
    result = backend().resume(starting, project.sh_request("echo second try", labels=second), sink)
    assert result is not None
    assert result.exit_code == 0
    assert (
        f"Removing container {earlier}, which an earlier try of this task created but did not start"
        in sink.lines
    )
    assert f"Started container {container_name(second)}" in sink.lines
    assert sink.lines[-1] == "second try"
    assert inspect_container(earlier) is None


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_starting_handle_of_a_started_container_is_taken_over(project: Project, recorder) -> None:
    """A try that died after start but before saving its full handle: the next one follows that
    container (its log, its result, its outputs) and creates none."""
    first = unique_labels("adopt", try_number=1)
    script = (
        "echo first\nwhile [ ! -e /tmp/go ]; do sleep 0.1; done\necho second\n"
        f"echo out > {project.io_dir}/out.txt\n"
    )
    handle = backend().submit(project.sh_request(script, labels=first), Sink())
    wait_for(lambda: docker("logs", handle["container"]).stdout.strip() == "first", 60, "the first line")
    creates = len(recorder.calls(r"^POST .*/containers/create"))
    later_io = project.io_dir.parent / "later-io"
    later_io.mkdir()
    request = CommandRequest(
        task_label="d.t",
        project_dir=project.root,
        workdir="",
        io_dir=later_io,
        command=("/bin/sh", IoFile("runner.sh")),
        labels={**first, "try_number": "2"},
    )
    sink, results = Sink(), []
    resumed = threading.Thread(
        target=lambda: results.append(backend().resume({**handle, "starting": True}, request, sink)),
        daemon=True,
    )
    resumed.start()
    wait_for(lambda: "first" in sink.lines, 60, "the log of the earlier container")
    docker("exec", handle["container"], "touch", "/tmp/go")
    resumed.join(120)
    assert results, sink.text
    assert results[0].exit_code == 0, sink.text
    taking_over = f"Taking over container {handle['container']}, which an earlier try of this task started"
    assert any(line.startswith(taking_over) for line in sink.lines), sink.text
    assert sink.lines[-2:] == ["first", "second"]
    assert len(recorder.calls(r"^POST .*/containers/create")) == creates
    assert (later_io / "out.txt").read_text() == "out\n"
    assert inspect_container(handle["container"]) is None


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_short_command_saves_its_handle_once_a_long_one_again_after_a_second(project: Project) -> None:
    """Issue 11: a state-store write is an API round trip. A command that ends within a second saves
    its handle once (before its container starts); a longer one also saves its started handle with
    the log position, at most once a second."""
    saves: list[dict] = []
    short = backend()
    short.save_handle = lambda handle: saves.append(dict(handle))
    began = time.monotonic()
    result = short.run(project.sh_request("echo quick", labels=unique_labels("save-short", 1)), Sink())
    took = time.monotonic() - began
    assert result.exit_code == 0
    assert saves[0].get("starting") is True
    # A loaded machine may stretch even `echo` past a second (CI did): then one position save may follow.
    assert len(saves) <= 1 + int(took), (took, saves)
    if took < 1:
        assert len(saves) == 1, saves

    saves.clear()
    long = backend()
    long.save_handle = lambda handle: saves.append(dict(handle))
    script = "for i in 1 2 3; do echo line $i; sleep 1; done\n"
    result = long.run(project.sh_request(script, labels=unique_labels("save-long", 1)), Sink())
    assert result.exit_code == 0
    assert saves[0].get("starting") is True
    assert len(saves) >= 2, saves
    assert all(not save.get("starting") for save in saves[1:])
    assert saves[-1].get("log_since")  # the position, so a re-attach does not repeat lines


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_the_handle_is_saved_while_the_container_is_made_and_before_it_starts(project: Project) -> None:
    """Issue 11: the state-store write and the daemon's create and copy overlap (one wait, not two),
    but the container starts only once its handle is saved: a crash leaves no started container that
    no handle names."""
    seen: list[str] = []

    def slow_save(handle: dict) -> None:
        if not handle.get("starting"):
            return  # a later save of the log position (a command that outlives a second; a slow machine)
        # The container appears while this save is still in flight...
        wait_for(lambda: inspect_container(handle["container"]) is not None, 60, "the container")
        time.sleep(0.5)
        # ...and is not started before the save returns.
        seen.append(inspect_container(handle["container"])["State"]["Status"])

    docker_backend = backend()
    docker_backend.save_handle = slow_save
    sink = Sink()
    result = docker_backend.run(
        project.sh_request("echo saved", labels=unique_labels("save-overlap", 1)), sink
    )
    assert result.exit_code == 0
    assert seen == ["created"]
    assert sink.lines[-1] == "saved"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_the_handle_is_forgotten_while_the_container_is_removed(project: Project) -> None:
    """Issue 11: forgetting the handle (an API round trip) overlaps the container's removal; if it
    fails, the command's result stands, the container is still removed and the hook tries again."""
    forgotten: list[str] = []

    def forget() -> None:
        forgotten.append("once")
        raise RuntimeError("the API server is away")

    docker_backend = backend()
    docker_backend.save_handle = lambda handle: None
    docker_backend.forget_handle = forget
    labels = unique_labels("forget-overlap", 1)
    result = docker_backend.run(project.sh_request("exit 3", labels=labels), Sink())
    assert result.exit_code == 3
    assert forgotten == ["once"]
    assert inspect_container(container_name(labels)) is None


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_handle_of_a_container_that_is_gone_does_not_wedge_the_next_try(project: Project) -> None:
    """review H4: the handle names a removed container; resume says so and the command runs again."""
    handle = backend().submit(project.sh_request("sleep 300", labels=unique_labels("gone", 1)), Sink())
    docker("rm", "--force", handle["container"])
    docker_backend, sink = backend(), Sink()
    request = project.sh_request("echo again", labels=unique_labels("gone", 2))
    assert docker_backend.exists(handle) is False
    assert docker_backend.resume(handle, request, sink) is None
    assert any("no longer exists: running the command again" in line for line in sink.lines)
    assert docker_backend.run(request, sink).exit_code == 0
    assert sink.lines[-1] == "again"


# -- side by side (review H1) ---------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_sibling_tasks_whose_ids_share_a_long_prefix_run_side_by_side(tmp_path: Path) -> None:
    """Two tasks of one TaskGroup whose full ids share their first 30+ characters, running at the same
    time in the same DAG run: each has its own container and neither disturbs the other."""
    run_id = f"scheduled__{uuid.uuid4().hex}"
    runs = []
    for suffix in ("a", "b"):
        (tmp_path / suffix).mkdir()
        proj = Project.create(tmp_path / suffix)
        labels = {
            "dag_id": f"{DAG_PREFIX}_h1",
            "task_id": f"extract_group_with_a_long_name.load_table_{suffix}",
            "run_id": run_id,
            "try_number": "1",
            "map_index": "-1",
        }
        script = (
            f"echo I am {suffix}\nwhile [ ! -e /tmp/go ]; do sleep 0.1; done\n"
            f"echo {suffix} > {proj.io_dir}/who\n"
        )
        runs.append((BackgroundRun(backend(), proj.sh_request(script, labels=labels)).start(), proj, suffix))
    assert runs[0][0].name != runs[1][0].name
    for run, _, suffix in runs:
        wait_for(
            lambda run=run, suffix=suffix: f"I am {suffix}" in run.sink.lines, 120, f"task {suffix} to run"
        )
    for run, _, _ in runs:  # both run at the same time now
        assert wait_running(run.name)
        docker("exec", run.name, "touch", "/tmp/go")
    for run, proj, suffix in runs:
        assert run.join(timeout=120).exit_code == 0
        assert (proj.io_dir / "who").read_text() == f"{suffix}\n"
        assert not any("Removing" in line for line in run.sink.lines), run.sink.text


# -- exit codes ---------------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
@pytest.mark.parametrize(
    ("kind", "code"), [("api", 0), ("api", 3), ("api", 125), ("api", 127), ("cli", 125), ("cli", 127)]
)
def test_exit_code_propagates(project: Project, kind: str, code: int) -> None:
    """The container's exit code is the result, also 125-127 (ordinary codes of user commands)."""
    sink = Sink()
    result = backend(TRANSPORTS[kind]).run(
        project.sh_request(f"echo bye\nexit {code}\n", labels=unique_labels(f"exit{code}")), sink
    )
    assert result.exit_code == code
    assert result.reason is None
    assert sink.lines[-1] == "bye"


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
    assert result.reason
    assert "OOMKilled" in result.reason


# -- logs ---------------------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_logs_reach_the_task_log_while_the_container_runs(project: Project, transport: dict) -> None:
    """The first lines are in the task log while the container still waits; a long line (which Docker
    splits into 16 KiB pieces) arrives whole, and so does a last line without a line break."""
    script = (
        "echo first\necho to-stderr >&2\nwhile [ ! -e /tmp/go ]; do sleep 0.1; done\n"
        "python3 -c \"print('x' * 40000)\"\necho second\nprintf 'no line break'\n"
    )
    run = BackgroundRun(
        backend(transport), project.sh_request(script, labels=unique_labels("stream"))
    ).start()
    wait_for(lambda: {"first", "to-stderr"} <= set(run.sink.lines), 60, "the first lines")
    assert inspect_container(run.name)["State"]["Running"]
    assert "second" not in run.sink.lines
    docker("exec", run.name, "touch", "/tmp/go")
    assert run.join(timeout=120).exit_code == 0
    assert run.sink.lines[-3:] == ["x" * 40000, "second", "no line break"]


def _entry(at: str, text: str) -> bytes:
    return f"2026-01-01T00:00:{at}Z {text}\n".encode()


def test_log_position_survives_timestamps_out_of_order() -> None:
    """Docker stamps stdout and stderr apart, so its log is not in timestamp order. A re-read from the
    saved position (the daemon returns the entries since the anchor second, in log order) shows
    exactly the lines not shown before."""
    log = [
        _entry("10.500000000", "a"),
        _entry("10.200000000", "b"),
        _entry("11.100000000", "c"),
        _entry("12.000000001", "d"),
        _entry("11.900000000", "e"),
        _entry("13.000000000", "f"),
    ]

    def since(anchor: int | None) -> list[bytes]:  # what the daemon returns: entries stamped at or after
        return [e for e in log if anchor is None or int(e[17:19]) >= anchor % 60]

    for shown in range(1, len(log) + 1):
        handle: dict = {}
        first = Sink()
        cursor = _LogCursor(handle, first)
        for entry in since(None)[:shown]:
            cursor.feed(entry)
        rest = Sink()
        resumed = _LogCursor(dict(handle), rest)
        for entry in since(handle["log_since"]):
            resumed.feed(entry)
        assert first.lines + rest.lines == list("abcdef"), (shown, handle)


# -- environment --------------------------------------------------------------------------------------
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
    "LONG": "x" * (ENV_FILE_MAX_LINE + 5000),
    # 30,000 characters are 90,000 bytes: over the env file's 64 KiB line limit (review M14).
    "LONG_UTF8": "日" * 30000,
    "PATH": "/custom/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_env_reaches_the_container_intact_and_the_worker_env_does_not(
    project: Project, transport: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_only = f"CMDEXEC_WORKER_ONLY_{uuid.uuid4().hex}"
    monkeypatch.setenv(worker_only, "must-not-leak")
    out = project.io_dir / "env.json"
    dump = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    sink = Sink()
    result = backend(transport).run(
        project.sh_request(f'exec python3 -c "{dump}" {out}\n', labels=unique_labels("env"), env=ENV_CASES),
        sink,
    )
    assert result.exit_code == 0, sink.text
    seen = json.loads(out.read_text())
    for key, value in ENV_CASES.items():
        assert seen.get(key) == value, f"{key}: sent {value[:80]!r}, got {seen.get(key, '<missing>')[:80]!r}"
    assert worker_only not in seen
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST"):
        assert key not in seen, f"the worker's {key} leaked into the container"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_value_only_the_cli_environment_can_carry_may_not_change_the_cli(project: Project) -> None:
    """On the CLI, a multi-line or over-long value travels in the CLI's own environment: a name that
    would change the CLI is refused (review M14) before any container exists. The API takes it."""
    for env in (
        {"DOCKER_HOST": "a\nb"},
        {"LD_PRELOAD": "/x.so " + " " * (ENV_FILE_MAX_LINE + 10)},
        {"SSL_CERT_FILE": "a\nb"},
        {"http_proxy": "a\nb"},
    ):
        (name,) = env
        with pytest.raises(CmdExecConfigError, match=f"env var '{name}' has a multi-line or very long value"):
            backend(docker="docker").run(
                project.sh_request("true", labels=unique_labels("clienv"), env=env), Sink()
            )
    sink = Sink()
    result = backend().run(
        project.sh_request(
            'printf "%s|" "$DOCKER_HOST"', labels=unique_labels("apienv"), env={"DOCKER_HOST": "a\nb"}
        ),
        sink,
    )
    assert result.exit_code == 0
    assert sink.lines[-2:] == ["a", "b|"]


def test_cli_env_measures_the_line_limit_in_bytes() -> None:
    fits = "x" * (ENV_FILE_MAX_LINE - len("NAME="))
    assert cli_env({"NAME": fits}, "t") == {}
    assert cli_env({"NAME": fits + "x"}, "t") == {"NAME": fits + "x"}
    assert cli_env({"NAME": "é" * (ENV_FILE_MAX_LINE // 2)}, "t") != {}  # 2 bytes each
    assert cli_env({"NAME": "a\rb", "OTHER": "c"}, "t") == {"NAME": "a\rb"}


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_env_values_never_appear_on_a_command_line(project: Project, transport: dict, tmp_path: Path) -> None:
    """While the container runs, no process on the host has a secret in its /proc/PID/cmdline, and
    the CLI's env file no longer exists (it lives only while docker create reads it)."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    secret_line = f"multi-{uuid.uuid4().hex}"
    marker = f"cmdexec-marker-{uuid.uuid4().hex}"
    env = {"SECRET_TOKEN": secret, "SECRET_MULTI": f"first\n{secret_line}\nlast"}
    calls = tmp_path / "calls.log"
    params = {"docker": str(write_wrapper(tmp_path / "docker-wrapper", calls))} if transport else {}
    docker_backend = backend(params, stop_grace=1)
    script = (
        f'test "$SECRET_TOKEN" = "{secret}" && echo token-ok\necho ready\nexec sh -c "sleep 300" {marker}\n'
    )
    run = BackgroundRun(
        docker_backend, project.sh_request(script, labels=unique_labels("secret"), env=env)
    ).start()
    try:
        wait_for(lambda: "ready" in run.sink.lines, 60, "the script to start")
        assert "token-ok" in run.sink.lines
        wait_for(lambda: cmdlines_containing(marker.encode()), 60, "the container's process in /proc")
        assert cmdlines_containing(secret.encode()) == []
        assert cmdlines_containing(secret_line.encode()) == []
        assert private_dirs(os.getpid()) == []
    finally:
        docker_backend.kill()
        run.join(timeout=120)
    for argv in wrapper_calls(calls):
        joined = "\x00".join(argv)
        assert secret not in joined
        assert secret_line not in joined
    if transport:
        (create,) = [c for c in wrapper_calls(calls) if cli_command(c) == "create"]
        assert "--env-file" in create
        assert create[create.index("-e") + 1] == "SECRET_MULTI"


WORKER = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]
import airflow.sdk
from pathlib import Path
from docker_helpers import Project, Sink, backend
project = Project(Path({root_dir!r}), Path({io_dir!r}))
request = project.sh_request("sleep 300", labels={labels!r}, env={{"SECRET": {secret!r}}})
backend(docker={cli!r}).run(request, Sink())
"""


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_the_env_file_is_gone_after_create_even_when_the_worker_is_killed(
    project: Project, tmp_path: Path
) -> None:
    """SIGKILL the worker while docker create runs: the shell around the CLI removes the private
    dir (env file included) as soon as the CLI returned."""
    calls, go = tmp_path / "calls.log", tmp_path / "go"
    cli = write_wrapper(tmp_path / "held-docker", calls, hold_on="create", go=go)
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    labels = unique_labels("killed")
    code = WORKER.format(
        tests=str(TESTS),
        root=str(TESTS.parent),
        root_dir=str(project.root),
        io_dir=str(project.io_dir),
        labels=labels,
        secret=secret,
        cli=str(cli),
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: any(cli_command(c) == "create" for c in wrapper_calls(calls)), 300, "docker create")
        (private,) = private_dirs(worker.pid)
        env_file = private / "env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert private.stat().st_mode & 0o777 == 0o700
        assert f"SECRET={secret}" in env_file.read_text(encoding="utf-8")
        worker.send_signal(signal.SIGKILL)
        worker.wait(60)
        go.touch()
        wait_for(lambda: [c for c, _ in wrapper_done(calls) if c == "create"], 120, "docker create to return")
        wait_for(lambda: not private.exists(), 60, "the private dir to be removed")
    finally:
        if worker.poll() is None:
            worker.kill()
        go.touch()
        docker("rm", "--force", container_name(labels), check=False)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_private_dirs_of_killed_workers_are_removed_by_a_later_task(project: Project) -> None:
    """Left only if the shell around docker create died too: removed once old and their process is gone."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    root = Path(tempfile.gettempdir())
    old_dead = root / f"cmdexec-env-{dead.pid}-{uuid.uuid4().hex[:8]}"
    young_dead = root / f"cmdexec-env-{dead.pid}-{uuid.uuid4().hex[:8]}"
    old_alive = root / f"cmdexec-env-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for path in (old_dead, young_dead, old_alive):
        path.mkdir(mode=0o700)
        (path / "env").write_text("SECRET=x\n")
    ten_minutes_ago = time.time() - 600
    for path in (old_dead, old_alive):
        os.utime(path, (ten_minutes_ago, ten_minutes_ago))
    try:
        request = project.sh_request("true", labels=unique_labels("sweep"))
        assert backend(docker="docker").run(request, Sink()).exit_code == 0
        assert not old_dead.exists()
        assert young_dead.exists()
        assert old_alive.exists()
    finally:
        for path in (old_dead, young_dead, old_alive):
            subprocess.run(["rm", "-rf", str(path)], check=False)


# -- CLI path and keys --------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_docker_cli_path_and_run_options(project: Project, tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    cli = write_wrapper(tmp_path / "my docker", calls)  # a space in the path, too
    (project.root / "sub").mkdir()
    sink = Sink()
    labels = unique_labels("cli")
    result = backend(docker=str(cli), run_options=["--hostname", "via-wrapper"]).run(
        project.sh_request("hostname", labels=labels, workdir="sub"), sink
    )
    assert result.exit_code == 0
    assert sink.lines[-1] == "via-wrapper"
    assert f"runs in Docker through the docker CLI {cli} (docker.docker is set)" in sink.lines[0]
    recorded = wrapper_calls(calls)
    commands = [cli_command(c) for c in recorded]
    assert commands == ["create", "cp", "start", "logs", "container", "logs", "cp", "rm"]
    create = recorded[0]
    assert create[1:3] == ["--hostname", "via-wrapper"]  # run_options right after "create", verbatim
    assert create[create.index("--name") + 1] == container_name(labels)
    assert create[create.index("-w") + 1] == str(project.root / "sub")


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_relative_paths_in_run_options_resolve_in_the_working_dir(project: Project) -> None:
    """review M12: Digdag runs docker in the task's working dir; so do we."""
    (project.root / "sub").mkdir()
    (project.root / "sub" / "extra.env").write_text("EXTRA=from the relative env file\n")
    sink = Sink()
    result = backend(run_options=["--env-file", "extra.env"]).run(
        project.sh_request('echo "$EXTRA"', labels=unique_labels("relative"), workdir="sub"), sink
    )
    assert result.exit_code == 0, sink.text
    assert sink.lines[-1] == "from the relative env file"


def test_cli_not_found_is_a_config_error(project: Project) -> None:
    missing = r"docker CLI '/nonexistent/bin/docker' was not found \(key docker\.docker\)"
    with pytest.raises(CmdExecConfigError, match=missing):
        backend(docker="/nonexistent/bin/docker").run(
            project.sh_request("true", labels=unique_labels("nocli")), Sink()
        )


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_pull_always_fails_clearly_without_a_registry(project: Project, transport: dict) -> None:
    """pull_always pulls even a local image; with no registry reachable that is an error naming the image."""
    with pytest.raises(BackendError, match=f"pulling the image {IMAGE} failed \\(docker.pull_always\\)"):
        backend(transport, pull_always=True).run(
            project.sh_request("true", labels=unique_labels("pull")), Sink()
        )


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_missing_image_is_an_error_naming_it(project: Project, transport: dict) -> None:
    image = f"cmdexec-no-such-image:{uuid.uuid4().hex[:8]}"
    sink = Sink()
    with pytest.raises(
        BackendError, match=f"the image {image} is not on this Docker host and could not be pulled"
    ):
        backend(transport, image=image).run(project.sh_request("true", labels=unique_labels("noimage")), sink)
    assert any(line.startswith(f"Unable to find image '{image}' locally") for line in sink.lines), sink.text


@pytest.mark.docker
def test_unreachable_daemon_is_an_error(
    project: Project, transport: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_docker()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(BackendError, match=r"the Docker daemon is not reachable .*/nonexistent\.sock"):
        backend(transport).run(project.sh_request("true", labels=unique_labels("nodaemon")), Sink())


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_missing_program_in_image_is_command_not_found(project: Project, transport: dict) -> None:
    for program in ("python9", "/usr/bin/python9"):
        request = CommandRequest(
            task_label="dockertest.noprog",
            project_dir=project.root,
            workdir="",
            io_dir=project.io_dir,
            command=(program, IoFile("runner.py")),
            labels=unique_labels("noprog"),
        )
        with pytest.raises(CommandNotFound) as info:
            backend(transport).run(request, Sink())
        assert info.value.program == program
        assert IMAGE in info.value.where


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_mount_error_is_not_reported_as_a_missing_program(project: Project) -> None:
    """review M11: a failing bind mount of run_options is the daemon's error, not "program not found"."""
    options = ["--mount", f"type=bind,source=/nonexistent-{uuid.uuid4().hex},target=/data"]
    with pytest.raises(BackendError) as info:
        backend(run_options=options).run(project.sh_request("true", labels=unique_labels("mount")), Sink())
    assert not isinstance(info.value, CommandNotFound)
    assert "bind source path does not exist" in str(info.value)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_a_link_leaving_the_project_fails_the_task_and_leaves_nothing(project: Project) -> None:
    (project.root / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(
        CmdExecConfigError, match=r"Task dockertest\.task: project file 'passwd' is a symbolic link"
    ):
        backend().run(project.sh_request("true", labels=unique_labels("badlink")), Sink())


# -- registry login (review M9) ---------------------------------------------------------------------------
REGISTRY = "registry.invalid:5000"


@pytest.fixture
def registry_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    password = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_TEST_REGISTRY",
        json.dumps(
            {
                "conn_type": "docker",
                "host": "registry.invalid",
                "port": 5000,
                "login": "robot",
                "password": password,
            }
        ),
    )
    return password


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_registry_login_goes_with_the_pull_api(project: Project, recorder, registry_connection: str) -> None:
    image = f"{REGISTRY}/cmdexec/private:{uuid.uuid4().hex[:8]}"
    sink = Sink()
    with pytest.raises(BackendError, match=f"the image {image} is not on this Docker host"):
        backend(image=image, docker_conn_id="cmdexec_test_registry").run(
            project.sh_request("true", labels=unique_labels("registry")), sink
        )
    (pull,) = [
        r for r in recorder.requests if r.method == "POST" and r.path.split("?")[0].endswith("/images/create")
    ]
    auth = json.loads(base64.urlsafe_b64decode(pull.headers["x-registry-auth"] + "=="))
    assert auth == {"username": "robot", "password": registry_connection, "serveraddress": REGISTRY}
    assert registry_connection not in sink.text


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_registry_login_goes_to_every_cli_call_that_may_pull(
    project: Project, tmp_path: Path, registry_connection: str
) -> None:
    calls, configs = tmp_path / "calls.log", tmp_path / "configs.log"
    copy_config = (
        f'if [ "$1" = "--config" ]; then cat "$2/config.json" >> \'{configs}\'; echo >> \'{configs}\'; fi\n'
    )
    cli = write_wrapper(tmp_path / "docker-wrapper", calls, extra=copy_config)
    image = f"{REGISTRY}/cmdexec/private:{uuid.uuid4().hex[:8]}"
    with pytest.raises(BackendError, match=f"pulling the image {image} failed"):
        backend(image=image, docker=str(cli), pull_always=True, docker_conn_id="cmdexec_test_registry").run(
            project.sh_request("true", labels=unique_labels("registry")), Sink()
        )
    with pytest.raises(BackendError, match=f"the image {image} is not on this Docker host"):
        backend(image=image, docker=str(cli), docker_conn_id="cmdexec_test_registry").run(
            project.sh_request("true", labels=unique_labels("registry")), Sink()
        )
    assert [cli_command(c) for c in wrapper_calls(calls) if c[0] == "--config"] == ["pull", "create"]
    expected = base64.b64encode(f"robot:{registry_connection}".encode()).decode()
    for line in configs.read_text().splitlines():
        assert json.loads(line) == {"auths": {REGISTRY: {"auth": expected}}}
    assert private_dirs(os.getpid()) == []


# -- build --------------------------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_build_makes_a_project_tagged_image_and_reuses_it(
    project: Project, tmp_path: Path, transport: dict
) -> None:
    token = uuid.uuid4().hex
    params = {
        "build": [
            f"echo {token} > /cmdexec-build-token",
            "echo line-a >> /cmdexec-build-lines\necho line-b >> /cmdexec-build-lines",
        ],
        **transport,
    }
    calls = tmp_path / "calls.log"
    if transport:  # build_options need the CLI; they are passed verbatim
        params.update(
            docker=str(write_wrapper(tmp_path / "docker-wrapper", calls)),
            build_options=["--label", f"io.github.cmdexec.test-build={token}"],
        )
    tag = build_tag(docker_config({"image": IMAGE, **params}, "t"), project.root)
    script = "cat /cmdexec-build-token /cmdexec-build-lines"
    try:
        first = Sink()
        result = backend(params).run(project.sh_request(script, labels=unique_labels("build")), first)
        assert result.exit_code == 0, first.text
        assert f"Building docker image {tag} from {IMAGE}" in first.lines
        assert first.lines[-3:] == [token, "line-a", "line-b"]
        if transport:
            (build,) = [c for c in wrapper_calls(calls) if cli_command(c) == "build"]
            assert build[1:3] == ["--label", f"io.github.cmdexec.test-build={token}"]
            assert "--pull" not in build
        second = Sink()
        result = backend(params).run(project.sh_request(script, labels=unique_labels("build")), second)
        assert result.exit_code == 0, second.text
        assert f"Reusing docker image {tag}" in second.lines
        assert second.lines[-3:] == [token, "line-a", "line-b"]
        assert len([c for c in wrapper_calls(calls) if cli_command(c) == "build"]) == (1 if transport else 0)
    finally:
        remove_image(tag)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_pull_always_makes_the_build_pull_its_base(project: Project, tmp_path: Path, recorder) -> None:
    """review L12: with pull_always a moved base tag is picked up (here no registry has the base: it
    fails)."""
    calls = tmp_path / "calls.log"
    for params in ({}, {"docker": str(write_wrapper(tmp_path / "docker-wrapper", calls))}):
        with pytest.raises(BackendError, match="docker build failed"):
            backend(params, build=["true"], pull_always=True).run(
                project.sh_request("true", labels=unique_labels("buildpull")), Sink()
            )
    assert [r for r in recorder.calls(r"^POST .*/build") if "pull=True" in r]
    (build,) = [c for c in wrapper_calls(calls) if cli_command(c) == "build"]
    assert "--pull" in build


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers")
def test_failed_build_is_an_error(project: Project, transport: dict) -> None:
    # One failing step: a successful step before it would stay behind as a (dangling) cache layer.
    params = {"build": [f"echo building {uuid.uuid4().hex}; exit 7"], **transport}
    tag = build_tag(docker_config({"image": IMAGE, **params}, "t"), project.root)
    try:
        with pytest.raises(BackendError, match="docker build failed"):
            backend(params).run(project.sh_request("true", labels=unique_labels("badbuild")), Sink())
        assert docker("image", "inspect", tag, check=False).returncode != 0
    finally:
        remove_image(tag)


# -- unit tests of names, tags, archives (no Docker needed) --------------------------------------------------
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
    assert len({container_name(labels), *(container_name(o) for o in others)}) == 1 + len(others)


def test_container_names_of_tasks_sharing_a_long_prefix_differ() -> None:
    """review H1: the old names kept 24 characters of each id and hashed only the run."""
    base = {
        "dag_id": "a_dag_with_a_rather_long_name_indeed",
        "run_id": "scheduled__2026-01-01T00:00:00+00:00",
        "try_number": "1",
        "map_index": "-1",
    }
    names = {
        container_name({**base, "task_id": f"extract_group_with_a_long_name.load_table_{s}"}) for s in "ab"
    }
    assert len(names) == 2
    weird = container_name({**base, "dag_id": "a b/c" * 40, "task_id": "ü" * 300})
    assert all(ch.isalnum() or ch in "_.-" for ch in weird)
    assert len(weird) < 128


def test_build_tag_depends_on_the_project_image_build_lines_and_options() -> None:
    base = docker_config({"image": "img:1", "build": ["apt-get install x"]}, "t")
    assert build_tag(base, Path("/p")) == build_tag(
        docker_config({"image": "img:1", "build": ["apt-get install x"]}, "t"), Path("/p")
    )
    assert build_tag(base, Path("/p")).startswith("cmdexec-build-")
    variants = [build_tag(base, Path("/q"))] + [
        build_tag(docker_config(v, "t"), Path("/p"))
        for v in (
            {"image": "img:2", "build": ["apt-get install x"]},
            {"image": "img:1", "build": ["apt-get install y"]},
            {"image": "img:1", "build": ["apt-get install x"], "build_options": ["--build-arg", "V=2"]},
        )
    ]
    assert len({build_tag(base, Path("/p")), *variants}) == 5


def _tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> list[bytes]:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return [out.getvalue()]


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def test_outputs_are_extracted_and_unsafe_entries_refused(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    extract_outputs(
        _tar_of(
            (_info("io", tarfile.DIRTYPE), b""),
            (_info("io/output.json", size=2), b"{}"),
            (_info("io/link", tarfile.SYMTYPE, link="output.json"), b""),
        ),
        good,
        "io",
        "Task t",
    )
    assert (good / "output.json").read_text() == "{}"
    assert os.readlink(good / "link") == "output.json"
    unsafe = [
        (_info("/etc/evil", size=1), b"x"),
        (_info("io/../../evil", size=1), b"x"),
        (_info("elsewhere/x", size=1), b"x"),
        (_info("io/out", tarfile.SYMTYPE, link="/etc/passwd"), b""),
        (_info("io/up", tarfile.SYMTYPE, link="../../.."), b""),
        (_info("io/dev", tarfile.CHRTYPE), b""),
    ]
    for member in unsafe:
        dest = tmp_path / uuid.uuid4().hex
        dest.mkdir()
        with pytest.raises(BackendError, match="refused"):
            extract_outputs(_tar_of(member), dest, "io", "Task t")
    dest = tmp_path / "through-a-link"
    dest.mkdir()
    with pytest.raises(BackendError, match="refused"):  # a link to outside, then a file written through it
        extract_outputs(
            _tar_of((_info("io/l", tarfile.SYMTYPE, link="/tmp"), b""), (_info("io/l/x", size=1), b"x")),
            dest,
            "io",
            "Task t",
        )
    many = [(_info(f"io/f{i}", size=0), b"") for i in range(MAX_OUTPUT_ENTRIES + 1)]
    with pytest.raises(BackendError, match="more than"):
        extract_outputs(_tar_of(*many), tmp_path / "many", "io", "Task t")


def test_workspace_archive_keeps_modes_makes_folders_writable_and_refuses_escaping_links(
    tmp_path: Path,
) -> None:
    proj = Project.create(tmp_path)
    (proj.root / "a" / "b").mkdir(parents=True)
    (proj.root / "a" / "b" / "run.sh").write_text("echo\n")
    (proj.root / "a" / "b" / "run.sh").chmod(0o750)
    (proj.root / "a" / "in").symlink_to("b/run.sh")
    request = proj.sh_request("true", labels=unique_labels("archive"), workdir="a")
    with tarfile.open(fileobj=io.BytesIO(b"".join(workspace_archive(request))), mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
    root = str(proj.root).lstrip("/")
    assert members[f"{root}/a/b/run.sh"].mode == 0o750
    assert members[f"{root}/a/in"].issym()
    assert members[f"{root}/a/in"].linkname == "b/run.sh"
    for folder in (root, f"{root}/a", f"{root}/a/b", str(proj.io_dir).lstrip("/")):
        assert members[folder].isdir(), folder
        assert members[folder].mode == 0o777, folder
    assert f"{str(proj.io_dir).lstrip('/')}/runner.sh" in members
    (proj.root / "escape").symlink_to("/etc")
    with pytest.raises(CmdExecConfigError, match="outside the project"):
        b"".join(workspace_archive(request))


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


def test_docker_config_tells_an_unset_cli_path_from_a_set_one() -> None:
    config = docker_config({"image": "img:1", "build": "echo one"}, "d.t")
    assert config.cli is None
    assert config.docker == "docker"
    assert config.run_options == ()
    assert config.build_options == ()
    assert config.pull_always is False
    assert config.selinux is False
    assert config.build == ("echo one",)
    assert docker_config({"image": "img:1", "docker": "docker"}, "d.t").cli == "docker"
