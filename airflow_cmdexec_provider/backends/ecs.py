"""Run the command as an AWS ECS task (Digdag's ``ecs`` executor, spec §6).

The worker packs the project and the IO dir into an archive in temporal storage (S3 or GCS), starts
an ECS task whose container downloads it through a presigned URL, runs the command, uploads the IO
dir through another presigned URL and prints an end marker; meanwhile the worker streams the
container's CloudWatch log, and afterwards drains it to the marker, collects the outputs and deletes
every temporal object.

The steps are separate methods over a JSON-serialisable ``handle`` (Digdag's ``commandStatus``) so
that a later process can re-attach to a running task: ``submit`` -> ``wait`` -> ``collect`` ->
``cleanup``; ``run`` chains them for the blocking path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from airflow_cmdexec_provider.backends.base import CommandRequest, CommandResult, LineSink
from airflow_cmdexec_provider.backends.ecs_script import (
    ENV_SCRIPT,
    EXIT_DOWNLOAD_FAILED,
    EXIT_UPLOAD_FAILED,
    INPUT_URL_VAR,
    OUTPUT_URL_VAR,
    container_script,
    env_script,
)
from airflow_cmdexec_provider.config import MAX_PRESIGN_SECONDS, EcsConfig, StorageConfig
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError
from airflow_cmdexec_provider.runner.workdir import pack_to, unpack_outputs
from airflow_cmdexec_provider.storage import open_storage
from airflow_cmdexec_provider.storage.base import TemporalStorage

log = logging.getLogger(__name__)

IMAGE_TAG = "digdag.docker.image"
# AWS rejects RunTask when the container overrides' JSON is longer than 8192 characters.
OVERRIDES_LIMIT = 8192
OVERRIDES_HEADROOM = 400
THROTTLING_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
RUN_TASK_ATTEMPTS = 3  # TaskFailedToStart / AGENT failures: start again, up to this many tasks in all


class TaskDefinitionCache(Protocol):
    """Where the image -> task definition lookup is remembered between tasks."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


class MemoryCache(dict):
    """A cache that lives as long as the backend (the hook passes a shared one)."""

    def set(self, key: str, value: str) -> None:
        self[key] = value


class EcsBackend:
    """Run requests as ECS tasks of one cluster, shipping files through temporal storage."""

    name = "ecs"

    def __init__(
        self,
        config: EcsConfig,
        storage_config: StorageConfig,
        *,
        td_cache: TaskDefinitionCache | None = None,
        url_ttl: int | None = None,
        save_handle: Callable[[dict[str, Any]], None] | None = None,
        poll_interval: float = 2.0,
        session: Any = None,
    ) -> None:
        self.config = config
        self.storage_config = storage_config
        self.td_cache = td_cache if td_cache is not None else MemoryCache()
        self.url_ttl = url_ttl
        self.save_handle = save_handle
        self.poll_interval = poll_interval
        self._session = session
        self._ecs: Any = None
        self._logs: Any = None
        self._storage: TemporalStorage | None = None
        self._current: dict[str, Any] | None = None
        self._kill_requested = threading.Event()
        self._last_overrides: dict[str, Any] = {}
        self._last_save = 0.0
        self.api_calls: dict[str, int] = {}

    # -- clients ---------------------------------------------------------------------------------
    @property
    def ecs(self) -> Any:
        if self._ecs is None:
            self._ecs, self._logs = self._clients()
        return self._ecs

    @property
    def logs(self) -> Any:
        if self._logs is None:
            self._ecs, self._logs = self._clients()
        return self._logs

    @property
    def storage(self) -> TemporalStorage:
        if self._storage is None:
            self._storage = open_storage(self.storage_config)
        return self._storage

    def _clients(self) -> tuple[Any, Any]:
        from botocore.config import Config

        session = self._session or _session(self.config)
        region = self.config.region or session.region_name
        if not region:
            raise CmdExecConfigError(
                f"Task {self.config.task_label}: ECS connection {self.config.conn_id!r} has no region "
                "(extra 'region', Digdag ecs.<name>.region) and none comes from the AWS credentials"
            )
        boto_config = Config(retries={"mode": "standard", "total_max_attempts": self.config.max_retries + 1})
        ecs = session.client("ecs", region_name=region, endpoint_url=self.config.endpoint_url, config=boto_config)
        logs = session.client("logs", region_name=region, endpoint_url=self.config.endpoint_url,
                              config=boto_config)
        for client in (ecs, logs):
            client.meta.events.register("before-call.*.*", self._count_call)
        return ecs, logs

    def _count_call(self, model: Any, **_: Any) -> None:
        self.api_calls[model.name] = self.api_calls.get(model.name, 0) + 1

    def _call(self, client: Any, operation: str, **kwargs: Any) -> Any:
        """Call an AWS API, retrying throttling with backoff (Digdag retries it up to 60 times)."""
        from botocore.exceptions import ClientError

        for attempt in range(1, 11):
            try:
                return getattr(client, operation)(**kwargs)
            except ClientError as exc:
                if _error_code(exc) not in THROTTLING_CODES or attempt == 10:
                    raise
                delay = min(2.0**attempt, 20.0) * (0.5 + random.random() / 2)
                log.warning("AWS throttled %s (attempt %d); retrying in %.1fs", operation, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -- blocking path -----------------------------------------------------------------------------
    def run(self, request: CommandRequest, log_line: LineSink) -> CommandResult:
        handle = self.submit(request, log_line)
        try:
            result = self.wait(handle, log_line)
            return self.collect(handle, request.io_dir, result)
        finally:
            self.cleanup(handle, log_line)

    def kill(self) -> None:
        """Stop the running ECS task; ``wait`` then returns with its exit code."""
        self._kill_requested.set()
        handle = self._current
        if handle is not None:
            self.stop(handle, "Stopped by Airflow: the task was killed or timed out")

    # -- steps -------------------------------------------------------------------------------------
    def submit(self, request: CommandRequest, log_line: LineSink) -> dict[str, Any]:
        """Find the task definition, ship the project, start the ECS task; return its handle."""
        td = self.task_definition()
        container = td["containerDefinitions"][0]
        if len(td["containerDefinitions"]) > 1:
            log_line(f"Task definition {td['taskDefinitionArn']} has {len(td['containerDefinitions'])} "
                     f"containers: the command runs in the first one, {container['name']!r}")
        base_key = self._base_key(request)
        handle: dict[str, Any] = {
            "backend": self.name,
            "cluster": self.config.cluster_name,
            "task_definition_arn": td["taskDefinitionArn"],
            "container_name": container["name"],
            "awslogs": self._awslogs(container, log_line),
            "keys": {"input": f"{base_key}/input.tar.gz", "output": f"{base_key}/output.tar.gz"},
            "end_marker": f"--cmdexec-end-{uuid.uuid4().hex}--",
            "log_token": None,
            "task_arn": None,
        }
        self._current = handle
        try:
            overrides = self._ship(request, handle, container["name"], log_line)
            self._start(handle, overrides, log_line)
        except BaseException:
            self.cleanup(handle, log_line)
            raise
        return handle

    def task_definition(self) -> dict[str, Any]:
        """Describe the task's task definition: by ARN, or by its ``digdag.docker.image`` tag.

        The tag lookup remembers image -> ARN in ``td_cache``; a remembered ARN costs one
        DescribeTaskDefinition that also validates it (still ACTIVE, still tagged with the image).
        Only a miss scans, newest revisions first (Digdag scans every definition on every task, #1488).
        """
        from botocore.exceptions import ClientError

        label = f"Task {self.config.task_label}"
        if self.config.task_definition_arn:
            try:
                return self._describe_td(self.config.task_definition_arn)
            except ClientError as exc:
                raise CmdExecConfigError(
                    f"{label}: ecs.task_definition_arn {self.config.task_definition_arn!r} cannot be used: "
                    f"{_aws_message(exc)}"
                ) from exc
        image = self.config.image
        if not image:
            raise CmdExecConfigError(f"{label}: set ecs.task_definition_arn or docker.image")
        cache_key = f"{self.ecs.meta.region_name}|{image}"
        cached = self.td_cache.get(cache_key)
        if cached:
            try:
                td = self._describe_td(cached)
                if td.get("status") == "ACTIVE" and _image_tag(td) == image:
                    return td
            except ClientError:
                pass
        paginator = self.ecs.get_paginator("list_task_definitions")
        for page in paginator.paginate(status="ACTIVE", sort="DESC"):
            for arn in page.get("taskDefinitionArns", []):
                tags = self._call(self.ecs, "list_tags_for_resource", resourceArn=arn).get("tags", [])
                if any(t.get("key") == IMAGE_TAG and t.get("value") == image for t in tags):
                    self.td_cache.set(cache_key, arn)
                    return self._describe_td(arn)
        raise CmdExecConfigError(
            f"{label}: no ACTIVE ECS task definition is tagged {IMAGE_TAG}={image!r}; register one with that "
            "tag, or set ecs.task_definition_arn, or run this task with executor='docker'"
        )

    def _describe_td(self, arn: str) -> dict[str, Any]:
        response = self._call(self.ecs, "describe_task_definition", taskDefinition=arn, include=["TAGS"])
        td = response["taskDefinition"]
        td["tags"] = response.get("tags", [])
        if not td.get("containerDefinitions"):
            raise CmdExecConfigError(f"Task {self.config.task_label}: task definition {arn} has no containers")
        return td

    def _awslogs(self, container: Mapping[str, Any], log_line: LineSink) -> dict[str, str] | None:
        log_config = container.get("logConfiguration") or {}
        options = log_config.get("options") or {}
        if log_config.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
            log_line("WARNING: the task definition's container does not use the awslogs log driver: "
                     "its output cannot be shown here")
            return None
        prefix = options.get("awslogs-stream-prefix")
        if not prefix:
            log_line("WARNING: the awslogs configuration has no awslogs-stream-prefix: the log stream "
                     "cannot be found, its output cannot be shown here")
            return None
        return {"group": options["awslogs-group"], "stream_prefix": f"{prefix}/{container['name']}"}

    def _base_key(self, request: CommandRequest) -> str:
        labels = request.labels
        run_key = hashlib.sha1(f"{labels.get('run_id')}|{labels.get('map_index')}".encode()).hexdigest()[:12]
        parts = [self.storage_config.prefix, labels.get("dag_id", "dag"), labels.get("task_id", "task"), run_key,
                 f"try{labels.get('try_number', '1')}-{uuid.uuid4().hex[:8]}"]
        return "/".join(p.strip("/") for p in parts if p)

    def _ttl(self, configured: int | None) -> int:
        return min(configured or self.url_ttl or MAX_PRESIGN_SECONDS, MAX_PRESIGN_SECONDS)

    def _ship(
        self, request: CommandRequest, handle: dict[str, Any], container_name: str, log_line: LineSink
    ) -> dict[str, Any]:
        """Upload the archive (and env file) and return the RunTask overrides."""
        keys = handle["keys"]
        inline_env = dict(request.env)
        storage = self.storage
        # The URLs travel as environment variables and reach curl on its stdin: never on a command line.
        urls = {
            INPUT_URL_VAR: storage.presigned_get(keys["input"], self._ttl(self.storage_config.direct_download_expiration)),
            OUTPUT_URL_VAR: storage.presigned_put(keys["output"], self._ttl(self.storage_config.direct_upload_expiration)),
        }
        script_args = dict(
            end_marker=handle["end_marker"],
            retry_downloads=self.config.retry_task_scripts_downloads,
            retry_uploads=self.config.retry_task_output_uploads,
            fail_on_upload=self.config.enable_curl_fail_opt_on_uploads,
        )

        def overrides_for(environment: Mapping[str, str], env_files: list[dict[str, str]], sourced: bool):
            container: dict[str, Any] = {
                "name": container_name,
                "command": ["/bin/bash", "-c", container_script(request, source_env_script=sourced, **script_args)],
                "environment": [{"name": k, "value": v} for k, v in {**environment, **urls}.items()],
            }
            if env_files:
                container["environmentFiles"] = env_files
            if self.config.container_cpu is not None:
                container["cpu"] = self.config.container_cpu
            if self.config.container_memory is not None:
                container["memory"] = self.config.container_memory
            overrides: dict[str, Any] = {"containerOverrides": [container]}
            if self.config.task_cpu:
                overrides["cpu"] = self.config.task_cpu
            if self.config.task_memory:
                overrides["memory"] = self.config.task_memory
            return overrides

        overrides = overrides_for(inline_env, [], False)
        too_large = len(json.dumps(overrides["containerOverrides"])) > OVERRIDES_LIMIT - OVERRIDES_HEADROOM
        if too_large or self.config.use_environment_file:
            overrides = self._env_elsewhere(request, handle, inline_env, overrides_for, too_large, log_line)
        with storage.upload_stream(keys["input"]) as upload:
            packed = pack_to(upload, request.project_dir, request.io_dir, cancel=self._kill_requested)
        log_line(f"Shipped the project to {storage.type}://{storage.bucket}/{keys['input']} "
                 f"({packed.entries} entries, {packed.size / 1e6:.1f} MB)")
        return overrides

    def _env_elsewhere(
        self, request, handle, env, overrides_for, too_large: bool, log_line: LineSink
    ) -> dict[str, Any]:
        """Move the command's environment out of the overrides: an S3 env file, else a sourced script.

        ECS env files hold one ``KEY=VALUE`` per line with no quoting, so values with line breaks (and
        everything on GCS, which ECS cannot read env files from) travel in the archive as a script.
        """
        file_env = {}
        if self.storage.type == "s3":
            file_env = {k: v for k, v in env.items() if "\n" not in v and "\r" not in v}
        env_files: list[dict[str, str]] = []
        if file_env:
            key = handle["keys"]["env_file"] = handle["keys"]["input"].replace("input.tar.gz", "variables.env")
            with tempfile.TemporaryDirectory(prefix="cmdexec-env-") as tmp:
                path = Path(tmp) / "variables.env"
                path.write_text("".join(f"{k}={v}\n" for k, v in file_env.items()))
                self.storage.upload_file(key, path)
            env_files = [{"type": "s3", "value": self.storage.env_file_arn(key)}]
        sourced = {k: v for k, v in env.items() if k not in file_env}
        if sourced:
            (request.io_dir / ENV_SCRIPT).write_text(env_script(sourced))
        why = "too large for the ECS overrides limit" if too_large else "use_environment_file is set"
        log_line(f"Environment ({len(env)} variables) is {why}: {len(file_env)} passed in an S3 environment "
                 f"file, {len(sourced)} in the shipped archive")
        overrides = overrides_for({}, env_files, bool(sourced))
        if len(json.dumps(overrides["containerOverrides"])) > OVERRIDES_LIMIT:
            raise CmdExecConfigError(f"Task {self.config.task_label}: ECS container overrides exceed "
                                     f"{OVERRIDES_LIMIT} characters even without the environment")
        return overrides

    def _run_task_kwargs(self, handle: Mapping[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        config = self.config
        kwargs: dict[str, Any] = {
            "cluster": config.cluster_name,
            "taskDefinition": handle["task_definition_arn"],
            "count": 1,
            "overrides": overrides,
            "startedBy": (config.started_by or "airflow-cmdexec")[:36],
        }
        if config.launch_type:
            kwargs["launchType"] = config.launch_type
        if config.platform_version:
            kwargs["platformVersion"] = config.platform_version
        if config.subnets:
            vpc: dict[str, Any] = {"subnets": list(config.subnets),
                                   "assignPublicIp": "ENABLED" if config.assign_public_ip else "DISABLED"}
            if config.security_groups:
                vpc["securityGroups"] = list(config.security_groups)
            kwargs["networkConfiguration"] = {"awsvpcConfiguration": vpc}
        if config.capacity_provider_name:
            kwargs["capacityProviderStrategy"] = [{"capacityProvider": config.capacity_provider_name}]
        if config.placement_strategy_type:
            strategy = {"type": config.placement_strategy_type}
            if config.placement_strategy_field:
                strategy["field"] = config.placement_strategy_field
            kwargs["placementStrategy"] = [strategy]
        return kwargs

    def _start(self, handle: dict[str, Any], overrides: dict[str, Any], log_line: LineSink) -> None:
        """RunTask, retrying once on an AGENT failure (Digdag #1723). Errors are task failures, never fallbacks."""
        from botocore.exceptions import ClientError

        if self._kill_requested.is_set():
            raise BackendError(f"Task {self.config.task_label}: killed before its ECS task was started")
        self._last_overrides = overrides
        kwargs = self._run_task_kwargs(handle, overrides)
        for attempt in (1, 2):
            try:
                response = self._call(self.ecs, "run_task", **kwargs)
            except ClientError as exc:
                raise BackendError(
                    f"Task {self.config.task_label}: ECS RunTask on cluster {self.config.cluster_name!r} failed: "
                    f"{_aws_message(exc)}"
                ) from exc
            tasks = response.get("tasks") or []
            failures = response.get("failures") or []
            if tasks:
                break
            reasons = ", ".join(f"{f.get('reason')} ({f.get('arn', '')}{': ' + f['detail'] if f.get('detail') else ''})"
                                for f in failures) or "no task and no failure reported"
            if attempt == 1 and any(f.get("reason") == "AGENT" for f in failures):
                log_line(f"ECS RunTask failed with an AGENT failure ({reasons}); retrying in 3 s")
                time.sleep(3)
                continue
            raise BackendError(f"Task {self.config.task_label}: ECS RunTask started no task: {reasons}")
        task = tasks[0]
        handle["task_arn"] = task["taskArn"]
        handle.setdefault("attempts", 0)
        handle["attempts"] += 1
        handle["submitted_at"] = time.time()
        if handle["awslogs"] is not None:
            handle["awslogs"]["stream"] = f"{handle['awslogs']['stream_prefix']}/{task['taskArn'].rsplit('/', 1)[-1]}"
        handle["log_token"] = None
        log_line(f"Started ECS task {task['taskArn']} on cluster {self.config.cluster_name}")
        if self.save_handle is not None:
            self.save_handle(handle)

    def describe(self, handle: Mapping[str, Any]) -> dict[str, Any] | None:
        response = self._call(self.ecs, "describe_tasks", cluster=handle["cluster"], tasks=[handle["task_arn"]])
        tasks = response.get("tasks") or []
        return tasks[0] if tasks else None

    def wait(self, handle: dict[str, Any], log_line: LineSink) -> CommandResult:
        """Stream logs until the task stops, drain them to the end marker, and return the exit code."""
        while True:
            result = self.poll(handle, log_line)
            if result is not None:
                return result
            time.sleep(self.poll_interval)

    def poll(self, handle: dict[str, Any], log_line: LineSink) -> CommandResult | None:
        """One look at the task: forward new log lines; once it stopped, drain the log and return the result."""
        task = self.describe(handle)
        if task is None:
            # DescribeTasks is eventually consistent right after RunTask (Digdag #1149).
            handle["missing_polls"] = handle.get("missing_polls", 0) + 1
            if handle["missing_polls"] > 30:
                raise BackendError(f"Task {self.config.task_label}: ECS task {handle['task_arn']} disappeared")
            return None
        status = task.get("lastStatus")
        if status != handle.get("last_status"):
            log_line(f"ECS task {handle['task_arn'].rsplit('/', 1)[-1]} is {status}")
            handle["last_status"] = status
        if status != "STOPPED":
            self.fetch_logs(handle, log_line)
            self._save_progress(handle)
            return None
        restartable = self._last_overrides and not self._kill_requested.is_set()
        if task.get("stopCode") == "TaskFailedToStart" and restartable:
            if handle.get("attempts", 1) < RUN_TASK_ATTEMPTS:
                log_line(f"ECS task failed to start ({task.get('stoppedReason')}); starting it again")
                self._start(handle, self._last_overrides, log_line)
                handle["last_status"] = None
                return None
        return self._finish(handle, task, log_line)

    def _save_progress(self, handle: dict[str, Any]) -> None:
        """Persist the log position (at most once a second), so a re-attach does not repeat lines."""
        if self.save_handle is None or handle.get("log_token") == handle.get("saved_token"):
            return
        now = time.monotonic()
        if now - self._last_save >= 1.0:
            handle["saved_token"] = handle.get("log_token")
            self.save_handle(handle)
            self._last_save = now

    def resume(self, handle: dict[str, Any], request: CommandRequest, log_line: LineSink) -> CommandResult | None:
        """Re-attach to the ECS task of an earlier try: stream the rest of its log and collect its result.

        Returns None when that task no longer exists (nothing to re-attach to; its objects are deleted).
        """
        self._current = handle
        try:
            task = self.describe(handle) if handle.get("task_arn") else None
            if task is None:
                log_line(f"The ECS task {handle.get('task_arn')} of an earlier try no longer exists")
                return None
            log_line(f"Re-attached to ECS task {handle['task_arn']} ({task.get('lastStatus')}) started by an "
                     "earlier try of this task: not starting another one")
            handle.pop("missing_polls", None)
            result = self.wait(handle, log_line)
            return self.collect(handle, request.io_dir, result)
        finally:
            self.cleanup(handle, log_line)

    def _finish(self, handle: dict[str, Any], task: Mapping[str, Any], log_line: LineSink) -> CommandResult:
        containers = task.get("containers") or []
        container = next((c for c in containers if c.get("name") == handle["container_name"]), None)
        exit_code = container.get("exitCode") if container else None
        failed = exit_code is None or exit_code != 0
        marker_seen = self.drain_logs(handle, log_line, failed)
        reasons = [r for r in (task.get("stopCode"), task.get("stoppedReason"),
                               (container or {}).get("reason")) if r]
        if not containers:
            reasons.append("no container information")
        if exit_code is None:
            # A stopped container without an exit code never ran to the end (Digdag #1724): a failure.
            return CommandResult(1, "ECS task stopped without an exit code: " + "; ".join(reasons))
        if self._kill_requested.is_set():
            return CommandResult(exit_code, "stopped by Airflow: " + "; ".join(reasons))
        if exit_code == EXIT_DOWNLOAD_FAILED and not marker_seen:
            return CommandResult(exit_code, "the container could not download the project archive")
        if exit_code == EXIT_UPLOAD_FAILED:
            return CommandResult(exit_code, "the container could not upload its outputs")
        if exit_code != 0 and reasons and task.get("stopCode") != "EssentialContainerExited":
            return CommandResult(exit_code, "; ".join(reasons))
        return CommandResult(exit_code)

    def fetch_logs(self, handle: dict[str, Any], log_line: LineSink) -> bool:
        """Forward new CloudWatch events; return True once the end marker was seen."""
        from botocore.exceptions import ClientError

        awslogs = handle.get("awslogs")
        if not awslogs or not awslogs.get("stream"):
            return False
        seen = False
        while True:
            kwargs: dict[str, Any] = {"logGroupName": awslogs["group"], "logStreamName": awslogs["stream"],
                                      "startFromHead": True}
            if handle.get("log_token"):
                kwargs["nextToken"] = handle["log_token"]
            try:
                response = self._call(self.logs, "get_log_events", **kwargs)
            except ClientError as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    return False  # the stream appears when the container starts
                raise
            for event in response.get("events", []):
                message = event.get("message", "")
                if message.strip() == handle["end_marker"]:
                    seen = True
                    handle["marker_seen"] = True
                else:
                    log_line(message.rstrip("\n"))
            token = response.get("nextForwardToken")
            if not response.get("events") or token == handle.get("log_token"):
                handle["log_token"] = token or handle.get("log_token")
                return seen or bool(handle.get("marker_seen"))
            handle["log_token"] = token

    def drain_logs(self, handle: dict[str, Any], log_line: LineSink, failed: bool) -> bool:
        """After the task stopped, read the log to the end marker, waiting a bounded time for it."""
        if not handle.get("awslogs"):
            return False
        limit = (self.config.max_wait_for_fetch_log_events_non_zero_status if failed
                 else self.config.max_wait_for_fetch_log_events)
        deadline = time.monotonic() + limit
        while True:
            if self.fetch_logs(handle, log_line):
                return True
            if time.monotonic() >= deadline or self._kill_requested.is_set():
                log_line(f"WARNING: the end of the container's log did not arrive within {limit} s; "
                         "the log above may be incomplete")
                return False
            time.sleep(min(1.0, self.poll_interval))

    def collect(self, handle: Mapping[str, Any], io_dir: Path, result: CommandResult) -> CommandResult:
        """Download the output archive into the IO dir. Missing outputs fail a successful command."""
        with tempfile.TemporaryDirectory(prefix="cmdexec-output-") as tmp:
            archive = Path(tmp) / "output.tar.gz"
            found = self.storage.download_file(handle["keys"]["output"], archive)
            if found:
                unpack_outputs(archive, io_dir)
            elif result.exit_code == 0:
                raise BackendError(
                    f"Task {self.config.task_label}: the ECS task exited 0 but uploaded no output archive "
                    f"({handle['keys']['output']}); see the log above"
                )
        return result

    def stop(self, handle: Mapping[str, Any], reason: str) -> None:
        # A stopped task never prints the end marker: do not wait minutes for it while draining.
        self._kill_requested.set()
        if not handle.get("task_arn"):
            return
        try:
            self._call(self.ecs, "stop_task", cluster=handle["cluster"], task=handle["task_arn"], reason=reason[:255])
            log.info("Stopped ECS task %s: %s", handle["task_arn"], reason)
        except Exception as exc:  # the task may be gone already; cleanup must go on
            log.warning("StopTask %s failed: %s", handle["task_arn"], exc)

    def cleanup(self, handle: Mapping[str, Any], log_line: LineSink) -> None:
        """Stop the task if it still runs, and delete every temporal object, whatever happened."""
        try:
            if handle.get("task_arn"):
                task = self.describe(handle)
                if task is not None and task.get("lastStatus") != "STOPPED":
                    self.stop(handle, "Stopped by Airflow: the task ended before its ECS task")
                    log_line(f"Stopped ECS task {handle['task_arn']}")
        finally:
            keys = [k for k in handle.get("keys", {}).values() if k]
            try:
                self.storage.delete(keys)
            except Exception as exc:
                log_line(f"WARNING: could not delete temporal objects {keys}: {exc}")
            self._current = None


def _session(config: EcsConfig) -> Any:
    import boto3

    if config.access_key_id and config.secret_access_key:
        return boto3.session.Session(aws_access_key_id=config.access_key_id,
                                     aws_secret_access_key=config.secret_access_key,
                                     region_name=config.region)
    if config.aws_conn_id:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=config.aws_conn_id, client_type="ecs").get_session(config.region)
    return boto3.session.Session(region_name=config.region)


def _image_tag(td: Mapping[str, Any]) -> str | None:
    return next((t.get("value") for t in td.get("tags", []) if t.get("key") == IMAGE_TAG), None)


def _error_code(exc: Exception) -> str | None:
    return (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")


def _aws_message(exc: Exception) -> str:
    error = (getattr(exc, "response", None) or {}).get("Error", {})
    return f"{error.get('Code')}: {error.get('Message')}" if error else str(exc)
