"""Run the command as an AWS ECS task (Digdag's ``ecs`` executor, spec §6).

The worker packs the project and the IO dir into an archive in temporal storage (S3 or GCS), starts
an ECS task whose container downloads it through a presigned URL, runs the command, uploads the IO
dir through another presigned URL and prints an end marker (``container_script.py``); meanwhile the worker
streams the container's CloudWatch log, and afterwards drains it to the marker, collects the outputs
and deletes every temporal object.

The steps are the ``RemoteBackend`` ones over a JSON handle (Digdag's ``commandStatus``). The handle
is saved before anything is uploaded (its object keys and the RunTask ``clientToken``), so a worker
that dies at any moment leaves nothing that a later try cannot find: RunTask with the same token
returns the task the dead worker started, if it did (review M15).
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from airflow_cmdexec_provider import config
from airflow_cmdexec_provider.aws import THROTTLING_CODES, aws_message, boto_session, error_code
from airflow_cmdexec_provider.backends.base import (
    CommandGone,
    CommandRequest,
    CommandResult,
    Handle,
    LineSink,
    RemoteBackend,
    TaskSettings,
    WatchError,
)
from airflow_cmdexec_provider.backends.container_script import (
    ENV_SCRIPT,
    EXIT_DOWNLOAD_FAILED,
    EXIT_UPLOAD_FAILED,
    PHASE_DOWNLOAD,
    PHASE_SETUP,
    PHASE_UPLOAD,
    container_script,
    env_script,
    parse_marker_line,
)
from airflow_cmdexec_provider.backends.shipping import (
    download_outputs,
    object_prefix,
    presigned_urls,
    upload_project,
)
from airflow_cmdexec_provider.config import EcsConfig, StorageConfig
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError
from airflow_cmdexec_provider.storage import open_storage
from airflow_cmdexec_provider.storage.base import TemporalStorage
from airflow_cmdexec_provider.tempfiles import private_tempdir

log = logging.getLogger(__name__)

IMAGE_TAG = "digdag.docker.image"
RUN_TOKEN_TAG = "io.github.cmdexec.run-token"
# AWS rejects RunTask when the container overrides' JSON is longer than 8192 characters.
OVERRIDES_LIMIT = 8192
OVERRIDES_HEADROOM = 400
RUN_TASK_ATTEMPTS = 3  # TaskFailedToStart / AGENT failures: start again, up to this many tasks in all
MISSING_POLLS_LIMIT = 30  # DescribeTasks is eventually consistent right after RunTask (Digdag #1149)


class TaskDefinitionCache(Protocol):
    """Where the image -> task definition family lookup is remembered between tasks."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


class VariableTaskDefinitionCache:
    """Image -> task definition family, remembered in the Airflow Variable ``cmdexec_ecs_task_definitions``.

    A Variable, not process memory: every Airflow task is a new process, and the Variable is shared
    by all workers, so the scan of every task definition happens once per image, not once per task.
    It remembers the *family*: one DescribeTaskDefinition of the family returns its newest ACTIVE
    revision, so a newer revision registered for the same image wins at once (review M6). A failure
    to read or write the cache only costs a scan.
    """

    variable = "cmdexec_ecs_task_definitions"

    def _load(self) -> dict[str, str]:
        from airflow.sdk import Variable

        try:
            data = Variable.get(self.variable, default=None, deserialize_json=True)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be read is only slower
            log.warning("Cannot read the Variable %s (%s): scanning task definitions", self.variable, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def set(self, key: str, value: str) -> None:
        from airflow.sdk import Variable

        data = self._load()
        data[key] = value
        try:
            Variable.set(
                self.variable,
                data,
                serialize_json=True,
                description="airflow-cmdexec-provider: ECS task definition family by docker.image tag",
            )
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written is only slower
            log.warning("Cannot write the Variable %s (%s): the next task scans again", self.variable, exc)


class MemoryCache(dict[str, str]):
    """A cache that lives as long as the backend (tests and the CLI)."""

    def set(self, key: str, value: str) -> None:
        self[key] = value


class EcsBackend(RemoteBackend):
    """Run requests as ECS tasks of one cluster, shipping files through temporal storage."""

    name = "ecs"
    fallback = ("docker", "local")

    @classmethod
    def from_settings(cls, settings: TaskSettings) -> EcsBackend:
        ecs_config, storage_config = config.ecs_setup(settings.ecs, settings.docker, settings.task_label)
        # The output URL must stay valid for the task's whole life (Digdag's 600 s default lost the
        # outputs of long tasks, spec §6.11): execution_timeout plus an hour, else the 7-day maximum.
        url_ttl = int(settings.timeout_seconds) + 3600 if settings.timeout_seconds else None
        return cls(ecs_config, storage_config, td_cache=VariableTaskDefinitionCache(), url_ttl=url_ttl)

    def __init__(
        self,
        config: EcsConfig,
        storage_config: StorageConfig,
        *,
        td_cache: TaskDefinitionCache | None = None,
        url_ttl: int | None = None,
        session: Any = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.storage_config = storage_config
        self.td_cache = td_cache if td_cache is not None else MemoryCache()
        self.url_ttl = url_ttl
        self.poll_interval = config.poll_interval
        self._session = session
        self._ecs: Any = None
        self._logs: dict[str | None, Any] = {}
        self._storage: TemporalStorage | None = None
        self._last_overrides: dict[str, Any] = {}
        self._last_save = 0.0

    @property
    def label(self) -> str:
        return f"Task {self.config.task_label}"

    # -- clients ---------------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = boto_session(
                access_key_id=self.config.access_key_id,
                secret_access_key=self.config.secret_access_key,
                aws_conn_id=self.config.aws_conn_id,
                region=self.config.region,
                client_type="ecs",
            )
        return self._session

    @property
    def region(self) -> str:
        region = self.config.region or self.session.region_name
        if not region:
            raise CmdExecConfigError(
                f"{self.label}: ECS connection {self.config.conn_id!r} has no region "
                "(extra 'region', Digdag ecs.<name>.region) and none comes from the AWS credentials"
            )
        return region

    def _client(self, service: str, region: str | None = None) -> Any:
        from botocore.config import Config

        boto_config = Config(retries={"mode": "standard", "total_max_attempts": self.config.max_retries + 1})
        return self.session.client(
            service,
            region_name=region or self.region,
            endpoint_url=self.config.endpoint_url,
            config=boto_config,
        )

    @property
    def ecs(self) -> Any:
        if self._ecs is None:
            self._ecs = self._client("ecs")
        return self._ecs

    def logs(self, region: str | None = None) -> Any:
        """The CloudWatch Logs client of the region the task definition's awslogs names (review L11)."""
        if region not in self._logs:
            self._logs[region] = self._client("logs", region)
        return self._logs[region]

    @property
    def storage(self) -> TemporalStorage:
        if self._storage is None:
            self._storage = open_storage(self.storage_config)
        return self._storage

    def _call(self, client: Any, operation: str, **kwargs: Any) -> Any:
        """Call an AWS API, retrying throttling with backoff (Digdag retries it up to 60 times)."""
        from botocore.exceptions import ClientError

        for attempt in range(1, 11):
            try:
                return getattr(client, operation)(**kwargs)
            except ClientError as exc:
                if error_code(exc) not in THROTTLING_CODES or attempt == 10:
                    raise
                delay = min(2.0**attempt, 20.0) * (0.5 + random.random() / 2)
                log.warning("AWS throttled %s (attempt %d); retrying in %.1fs", operation, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, request: CommandRequest, log_line: LineSink, earlier: Handle | None = None) -> Handle:
        """Find the task definition, ship the project, start the ECS task; return its handle.

        With ``earlier`` (the handle of a try that died while starting) the same keys and RunTask
        token are used, so the task that try may have started is the one this try follows.
        """
        td = self.task_definition()
        container = td["containerDefinitions"][0]
        if len(td["containerDefinitions"]) > 1:
            log_line(
                f"Task definition {td['taskDefinitionArn']} has {len(td['containerDefinitions'])} "
                f"containers: the command runs in the first one, {container['name']!r}"
            )
        if earlier is not None:
            handle = dict(earlier)
            log_line(
                "An earlier try of this task died while starting its ECS task: starting it again with the "
                "same RunTask token, which returns that task if it was started"
            )
        else:
            base_key = self._base_key(request)
            handle = {
                "backend": self.name,
                "starting": True,
                "cluster": self.config.cluster_name,
                "container_name": container["name"],
                "keys": {"input": f"{base_key}/input.tar.gz", "output": f"{base_key}/output.tar.gz"},
                "end_marker": f"--cmdexec-end-{uuid.uuid4().hex}--",
                "run_token": uuid.uuid4().hex,
                "task_arn": None,
            }
        handle["task_definition_arn"] = td["taskDefinitionArn"]
        handle["awslogs"] = self._awslogs(container, log_line)
        handle["log_token"] = None
        self._save(handle)  # before anything exists remotely: a crash from here on leaves a findable handle
        self._current = handle
        try:
            overrides = self._ship(request, handle, container["name"], log_line)
            self._start(handle, overrides, log_line)
        except BaseException:
            self.discard(handle, log_line)
            self._current = None
            raise
        handle.pop("starting", None)
        self._save(handle)
        return handle

    def _save(self, handle: Handle) -> None:
        if self.save_handle is not None:
            self.save_handle(handle)

    def task_definition(self) -> dict[str, Any]:
        """Describe the task's task definition: by ARN, or by its ``digdag.docker.image`` tag.

        The tag lookup remembers image -> family in ``td_cache``; a remembered family costs one
        DescribeTaskDefinition, which returns its newest ACTIVE revision and validates it (still
        tagged with the image). Only a miss scans, newest first (Digdag scans on every task, #1488).
        """
        from botocore.exceptions import ClientError

        if self.config.task_definition_arn:
            try:
                return self._describe_td(self.config.task_definition_arn)
            except ClientError as exc:
                raise CmdExecConfigError(
                    f"{self.label}: ecs.task_definition_arn {self.config.task_definition_arn!r} cannot be "
                    f"used: {aws_message(exc)}"
                ) from exc
        image = self.config.image
        if not image:
            raise CmdExecConfigError(f"{self.label}: set ecs.task_definition_arn or docker.image")
        cache_key = f"{self.config.conn_id}|{self.region}|{image}"
        family = self.td_cache.get(cache_key)
        if family:
            try:
                td = self._describe_td(family)
                if td.get("status") == "ACTIVE" and _image_tag(td) == image:
                    return td
            except ClientError:
                pass  # the family is gone: scan
        paginator = self.ecs.get_paginator("list_task_definitions")
        for page in paginator.paginate(status="ACTIVE", sort="DESC"):
            for arn in page.get("taskDefinitionArns", []):
                tags = self._call(self.ecs, "list_tags_for_resource", resourceArn=arn).get("tags", [])
                if any(t.get("key") == IMAGE_TAG and t.get("value") == image for t in tags):
                    # arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>
                    family = arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]
                    self.td_cache.set(cache_key, family)
                    newest = self._describe_td(family)  # the newest revision wins, whatever the list order
                    return newest if _image_tag(newest) == image else self._describe_td(arn)
        raise CmdExecConfigError(
            f"{self.label}: no ACTIVE ECS task definition is tagged {IMAGE_TAG}={image!r}; register one with "
            "that tag, or set ecs.task_definition_arn, or run this task with executor='docker'"
        )

    def _describe_td(self, name: str) -> dict[str, Any]:
        response = self._call(self.ecs, "describe_task_definition", taskDefinition=name, include=["TAGS"])
        td: dict[str, Any] = response["taskDefinition"]
        td["tags"] = response.get("tags", [])
        if not td.get("containerDefinitions"):
            raise CmdExecConfigError(f"{self.label}: task definition {name} has no containers")
        return td

    def _awslogs(self, container: Mapping[str, Any], log_line: LineSink) -> dict[str, str] | None:
        log_config = container.get("logConfiguration") or {}
        options = log_config.get("options") or {}
        if log_config.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
            log_line(
                "WARNING: the task definition's container does not use the awslogs log driver: "
                "its output cannot be shown here"
            )
            return None
        prefix = options.get("awslogs-stream-prefix")
        if not prefix:
            log_line(
                "WARNING: the awslogs configuration has no awslogs-stream-prefix: the log stream "
                "cannot be found, its output cannot be shown here"
            )
            return None
        return {
            "group": options["awslogs-group"],
            "stream_prefix": f"{prefix}/{container['name']}",
            "region": options.get("awslogs-region") or self.region,
        }

    def _base_key(self, request: CommandRequest) -> str:
        return object_prefix(self.storage_config, request)

    # -- shipping ------------------------------------------------------------------------------------
    def _ship(
        self, request: CommandRequest, handle: Handle, container_name: str, log_line: LineSink
    ) -> dict[str, Any]:
        """Upload the archive (and env file) and return the RunTask overrides."""
        keys = handle["keys"]
        urls = presigned_urls(
            input_storage=self.storage,
            input_config=self.storage_config,
            input_key=keys["input"],
            output_storage=self.storage,
            output_config=self.storage_config,
            output_key=keys["output"],
            output_lifetime=self.url_ttl,
            task=self.label,
        )
        env = dict(request.env)
        overrides = self._overrides(request, handle, container_name, {**env, **urls}, [], False)
        too_large = len(json.dumps(overrides["containerOverrides"])) > OVERRIDES_LIMIT - OVERRIDES_HEADROOM
        if too_large or self.config.use_environment_file or request.secret_env:
            env_files, sourced = self._env_elsewhere(request, handle, env, too_large, log_line)
            overrides = self._overrides(request, handle, container_name, urls, env_files, sourced)
            if len(json.dumps(overrides["containerOverrides"])) > OVERRIDES_LIMIT:
                raise CmdExecConfigError(
                    f"{self.label}: ECS container overrides exceed {OVERRIDES_LIMIT} "
                    "characters even without the environment"
                )
        elif env:
            # Digdag passes the environment this way too; say where it is readable (review M7).
            log_line(
                f"The command's environment ({len(env)} variables) is in the RunTask container overrides, "
                "readable with ecs:DescribeTasks and in CloudTrail; set use_environment_file to send it in "
                "an S3 object instead"
            )
        upload_project(request, self.storage, keys["input"], "ECS", log_line, cancel=self._killed)
        return overrides

    def _overrides(
        self,
        request: CommandRequest,
        handle: Handle,
        container_name: str,
        environment: Mapping[str, str],
        env_files: list[dict[str, str]],
        sourced: bool,
    ) -> dict[str, Any]:
        script = container_script(
            request,
            source_env_script=sourced,
            end_marker=handle["end_marker"],
            retry_downloads=self.config.retry_task_scripts_downloads,
            retry_uploads=self.config.retry_task_output_uploads,
            fail_on_upload=self.config.enable_curl_fail_opt_on_uploads,
        )
        container: dict[str, Any] = {
            "name": container_name,
            "command": ["/bin/bash", "-c", script],
            "environment": [{"name": k, "value": v} for k, v in environment.items()],
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

    def _env_elsewhere(
        self,
        request: CommandRequest,
        handle: Handle,
        env: Mapping[str, str],
        too_large: bool,
        log_line: LineSink,
    ) -> tuple[list[dict[str, str]], bool]:
        """Move the command's environment out of the overrides: an S3 env file, else a sourced script.

        ECS env files hold one ``KEY=VALUE`` per line with no quoting, so values with line breaks (and
        everything on GCS, which ECS cannot read env files from) travel in the archive as a script.
        Returns the ``environmentFiles`` entries and whether the container must source the script.
        """
        file_env = {}
        if self.storage.type == "s3":
            file_env = {k: v for k, v in env.items() if "\n" not in v and "\r" not in v}
        env_files: list[dict[str, str]] = []
        if file_env:
            key = handle["keys"]["env_file"] = handle["keys"]["input"].replace(
                "input.tar.gz", "variables.env"
            )
            self._save(handle)  # the new key must be deleted too if this worker dies now
            with private_tempdir("env") as tmp:
                path = tmp / "variables.env"
                path.write_text("".join(f"{k}={v}\n" for k, v in file_env.items()), encoding="utf-8")
                self.storage.upload_file(key, path)
            arn = self.storage.env_file_arn(key)
            if arn:
                env_files = [{"type": "s3", "value": arn}]
        sourced = {k: v for k, v in env.items() if k not in file_env}
        if sourced:
            (request.io_dir / ENV_SCRIPT).write_text(env_script(sourced), encoding="utf-8")
        why = (
            "is too large for the ECS overrides limit"
            if too_large
            else "is kept out of the overrides (use_environment_file)"
            if self.config.use_environment_file
            else "holds a secret, kept out of the overrides"
        )
        log_line(
            f"Environment ({len(env)} variables) {why}: {len(file_env)} passed in an S3 environment "
            f"file, {len(sourced)} in the shipped archive"
        )
        return env_files, bool(sourced)

    # -- RunTask -----------------------------------------------------------------------------------
    def _run_task_kwargs(
        self, handle: Mapping[str, Any], overrides: dict[str, Any], token: str
    ) -> dict[str, Any]:
        config = self.config
        kwargs: dict[str, Any] = {
            "cluster": config.cluster_name,
            "taskDefinition": handle["task_definition_arn"],
            "count": 1,
            "overrides": overrides,
            "startedBy": (config.started_by or "airflow-cmdexec")[:36],
            "clientToken": token,
        }
        if config.launch_type:
            kwargs["launchType"] = config.launch_type
        if config.platform_version:
            kwargs["platformVersion"] = config.platform_version
        if config.subnets:
            vpc: dict[str, Any] = {
                "subnets": list(config.subnets),
                "assignPublicIp": "ENABLED" if config.assign_public_ip else "DISABLED",
            }
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

    def _start(self, handle: Handle, overrides: dict[str, Any], log_line: LineSink) -> None:
        """RunTask, retrying once on an AGENT failure (Digdag #1723). Errors are task failures, never
        fallbacks."""
        from botocore.exceptions import ClientError

        if self._killed.is_set():
            raise BackendError(f"{self.label}: killed before its ECS task was started")
        self._last_overrides = overrides
        handle.setdefault("attempts", 0)
        for retry in (0, 1):
            # A new token per distinct start (an AGENT retry, a TaskFailedToStart restart); the same
            # one when an earlier try's start is repeated, so ECS returns that try's task.
            token = handle["run_token"] + (
                f"-{handle['attempts']}-{retry}" if handle["attempts"] or retry else ""
            )
            try:
                response = self._call(self.ecs, "run_task", **self._run_task_kwargs(handle, overrides, token))
            except ClientError as exc:
                raise BackendError(
                    f"{self.label}: ECS RunTask on cluster {self.config.cluster_name!r} failed: "
                    f"{aws_message(exc)}"
                ) from exc
            tasks = response.get("tasks") or []
            failures = response.get("failures") or []
            if tasks:
                break
            reasons = (
                ", ".join(
                    f"{f.get('reason')} ({f.get('arn', '')}{': ' + f['detail'] if f.get('detail') else ''})"
                    for f in failures
                )
                or "no task and no failure reported"
            )
            if retry == 0 and any(f.get("reason") == "AGENT" for f in failures):
                log_line(f"ECS RunTask failed with an AGENT failure ({reasons}); retrying in 3 s")
                time.sleep(3)
                continue
            raise BackendError(f"{self.label}: ECS RunTask started no task: {reasons}")
        task = tasks[0]
        handle["task_arn"] = task["taskArn"]
        handle["attempts"] += 1
        if handle["awslogs"] is not None:
            handle["awslogs"]["stream"] = (
                f"{handle['awslogs']['stream_prefix']}/{task['taskArn'].rsplit('/', 1)[-1]}"
            )
        handle["log_token"] = None
        handle.pop("marker", None)
        log_line(f"Started ECS task {task['taskArn']} on cluster {self.config.cluster_name}")
        self._save(handle)

    # -- following ---------------------------------------------------------------------------------
    def describe(self, handle: Mapping[str, Any]) -> dict[str, Any] | None:
        """The task's description, or None if ECS does not (or not yet) know it. ``WatchError`` on failure."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._call(
                self.ecs, "describe_tasks", cluster=handle["cluster"], tasks=[handle["task_arn"]]
            )
        except (ClientError, BotoCoreError) as exc:
            raise WatchError(f"ECS DescribeTasks failed: {aws_message(exc)}") from exc
        tasks = response.get("tasks") or []
        return tasks[0] if tasks else None

    def exists(self, handle: Handle) -> bool:
        return bool(handle.get("task_arn")) and self.describe(handle) is not None

    def poll(self, handle: Handle, log_line: LineSink) -> CommandResult | None:
        task = self.describe(handle)
        return self.on_description(handle, task, log_line)

    def on_description(
        self, handle: Handle, task: Mapping[str, Any] | None, log_line: LineSink
    ) -> CommandResult | None:
        """One look at the task (from DescribeTasks): forward new log lines; once it stopped, drain the
        log and return the result."""
        if task is None:
            handle["missing_polls"] = handle.get("missing_polls", 0) + 1
            if handle["missing_polls"] > MISSING_POLLS_LIMIT:
                raise CommandGone(f"{self.label}: ECS task {handle['task_arn']} no longer exists")
            return None
        handle.pop("missing_polls", None)
        status = task.get("lastStatus")
        if status != handle.get("last_status"):
            log_line(f"ECS task {handle['task_arn'].rsplit('/', 1)[-1]} is {status}")
            handle["last_status"] = status
        if status != "STOPPED":
            self.fetch_logs(handle, log_line)
            self._save_progress(handle)
            return None
        restartable = self._last_overrides and not self._killed.is_set()
        if (
            task.get("stopCode") == "TaskFailedToStart"
            and restartable
            and handle.get("attempts", 1) < RUN_TASK_ATTEMPTS
        ):
            log_line(f"ECS task failed to start ({task.get('stoppedReason')}); starting it again")
            self._start(handle, self._last_overrides, log_line)
            handle["last_status"] = None
            return None
        return self._finish(handle, task, log_line)

    def _save_progress(self, handle: Handle) -> None:
        """Persist the log position (at most once a second), so a re-attach does not repeat lines."""
        if self.save_handle is None or handle.get("log_token") == handle.get("saved_token"):
            return
        now = time.monotonic()
        if now - self._last_save >= 1.0:
            handle["saved_token"] = handle.get("log_token")
            self.save_handle(handle)
            self._last_save = now

    def _finish(self, handle: Handle, task: Mapping[str, Any], log_line: LineSink) -> CommandResult:
        exit_code = self.exit_code(handle, task)
        if exit_code is None:
            # The container never ran to the end (image pull failed, never started, ...): its log and
            # marker will not come, so read once what is there and report at once (reviews M4, #1724).
            self.fetch_logs(handle, log_line)
        else:
            self.drain_logs(handle, log_line, failed=exit_code != 0)
        return self.result(handle, task)

    def exit_code(self, handle: Handle, task: Mapping[str, Any]) -> int | None:
        container = next(
            (c for c in task.get("containers") or [] if c.get("name") == handle["container_name"]), None
        )
        return (container or {}).get("exitCode")

    def result(self, handle: Handle, task: Mapping[str, Any]) -> CommandResult:
        """How a STOPPED task ended, from its description and the end marker's phase (if it arrived)."""
        containers = task.get("containers") or []
        container = next((c for c in containers if c.get("name") == handle["container_name"]), None)
        exit_code = self.exit_code(handle, task)
        reasons = [
            r for r in (task.get("stopCode"), task.get("stoppedReason"), (container or {}).get("reason")) if r
        ]
        if not containers:
            reasons.append("no container information")
        if exit_code is None:
            return CommandResult(1, "ECS task stopped without an exit code: " + "; ".join(reasons))
        if self._killed.is_set():
            return CommandResult(exit_code, "stopped by Airflow: " + "; ".join(reasons))
        marker = handle.get("marker")
        phase = marker.get("phase") if marker else None
        if phase in (PHASE_SETUP, PHASE_DOWNLOAD) or (exit_code == EXIT_DOWNLOAD_FAILED and marker is None):
            return CommandResult(exit_code, "the container could not download or unpack the project archive")
        if phase == PHASE_UPLOAD or (exit_code == EXIT_UPLOAD_FAILED and marker is None):
            return CommandResult(exit_code, "the container could not upload its outputs")
        if exit_code != 0 and reasons and task.get("stopCode") != "EssentialContainerExited":
            return CommandResult(exit_code, "; ".join(reasons))
        return CommandResult(exit_code)

    def drain_limit(self, failed: bool) -> int:
        return (
            self.config.max_wait_for_fetch_log_events_non_zero_status
            if failed
            else self.config.max_wait_for_fetch_log_events
        )

    def watch_key(self) -> tuple[Any, ...]:
        """What makes two backends' tasks followable with the same clients (see ``ecs_watch``)."""
        config = self.config
        return (
            config.conn_id,
            config.endpoint_url,
            self.region,
            config.access_key_id,
            config.aws_conn_id,
            config.cluster_name,
        )

    async def watch(self, handle: Handle, log_line: LineSink) -> CommandResult:
        """In the triggerer: batched with every other ECS task of the cluster (``ecs_watch``)."""
        from airflow_cmdexec_provider.backends.ecs_watch import follow

        return await follow(self, handle, log_line)

    def fetch_logs(self, handle: Handle, log_line: LineSink) -> bool:
        """Forward new CloudWatch events; return True once the end marker was seen. Read errors are
        warnings: a log that cannot be read must not end the command (review M1)."""
        from botocore.exceptions import BotoCoreError, ClientError

        awslogs = handle.get("awslogs")
        if not awslogs or not awslogs.get("stream"):
            return False
        while "marker" not in handle:
            kwargs: dict[str, Any] = {
                "logGroupName": awslogs["group"],
                "logStreamName": awslogs["stream"],
                "startFromHead": True,
            }
            if handle.get("log_token"):
                kwargs["nextToken"] = handle["log_token"]
            try:
                response = self._call(self.logs(awslogs.get("region")), "get_log_events", **kwargs)
            except ClientError as exc:
                if (
                    error_code(exc) != "ResourceNotFoundException"
                ):  # else: the stream appears when the container starts
                    log_line(
                        f"WARNING: could not read the container's log ({aws_message(exc)}); "
                        "the command goes on"
                    )
                return False
            except BotoCoreError as exc:
                log_line(f"WARNING: could not read the container's log ({exc}); the command goes on")
                return False
            self.forward_events(handle, response.get("events", []), log_line)
            token = response.get("nextForwardToken")
            done = not response.get("events") or token == handle.get("log_token")
            handle["log_token"] = token or handle.get("log_token")
            if done:
                break
        return "marker" in handle

    def forward_events(self, handle: Handle, events: Sequence[Mapping[str, Any]], log_line: LineSink) -> None:
        """Log CloudWatch events up to the end marker (found anywhere in a line; the text before it is
        kept)."""
        for event in events:
            if "marker" in handle:
                return
            message = str(event.get("message", "")).rstrip("\n")
            parsed = parse_marker_line(message, handle["end_marker"])
            if parsed is None:
                log_line(message)
                handle["log_lines"] = handle.get("log_lines", 0) + 1  # saved with the position: how far it is
                continue
            before, phase, code = parsed
            if before:
                log_line(before)
                handle["log_lines"] = handle.get("log_lines", 0) + 1
            handle["marker"] = {"phase": phase, "code": code}

    def drain_logs(self, handle: Handle, log_line: LineSink, failed: bool) -> dict[str, Any] | None:
        """After the task stopped, read the log to the end marker, waiting a bounded time for it."""
        if not handle.get("awslogs"):
            return None
        limit = self.drain_limit(failed)
        deadline = time.monotonic() + limit
        while not self.fetch_logs(handle, log_line):
            if time.monotonic() >= deadline or self._killed.is_set():
                log_line(
                    f"WARNING: the end of the container's log did not arrive within {limit} s; "
                    "the log above may be incomplete"
                )
                return None
            time.sleep(min(1.0, self.poll_interval))
        marker: dict[str, Any] = handle["marker"]
        return marker

    def fetch_outputs(self, handle: Handle, io_dir: Path, result: CommandResult) -> None:
        download_outputs(
            self.storage, handle["keys"]["output"], io_dir, result, f"{self.label}: the ECS task"
        )

    # -- ending ------------------------------------------------------------------------------------
    def stop(self, handle: Handle, reason: str) -> None:
        # A stopped task never prints the end marker: do not wait minutes for it while draining.
        self._killed.set()
        if not handle.get("task_arn"):
            return
        try:
            self._call(
                self.ecs, "stop_task", cluster=handle["cluster"], task=handle["task_arn"], reason=reason[:255]
            )
            log.info("Stopped ECS task %s: %s", handle["task_arn"], reason)
        except Exception as exc:  # noqa: BLE001 - the task may be gone already; cleanup must go on
            log.warning("StopTask %s failed: %s", handle["task_arn"], exc)

    def cleanup(self, handle: Handle, log_line: LineSink) -> None:
        """Stop the task if it still runs, and delete every temporal object, whatever happened."""
        try:
            if handle.get("task_arn"):
                task = self.describe(handle)
                if task is not None and task.get("lastStatus") != "STOPPED":
                    self.stop(handle, "Stopped by Airflow: the task ended before its ECS task")
                    log_line(f"Stopped ECS task {handle['task_arn']}")
        finally:
            keys = [k for k in handle.get("keys", {}).values() if k]
            self.storage.delete(keys)


def _image_tag(td: Mapping[str, Any]) -> str | None:
    return next((t.get("value") for t in td.get("tags", []) if t.get("key") == IMAGE_TAG), None)
