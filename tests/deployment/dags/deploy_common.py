"""What the deployment DAGs share (this file defines no DAG)."""

import os
from datetime import datetime

IMAGE = os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")
START = datetime(2026, 1, 1)
# The tasks' project: a folder next to the DAG files (listed in .airflowignore), so that
# Docker mounts and ECS ships a small known folder rather than the whole DAG folder.
PROJECT = {"project_dir": "project"}
