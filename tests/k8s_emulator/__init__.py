"""Kubernetes API emulator for tests: the core/v1 REST API of the official ``kubernetes``
client, whose pods really run as Docker containers.

    from tests.k8s_emulator import KubeEmulator

    with KubeEmulator() as emu:
        emu.write_kubeconfig(path)
        api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(path)))
        ...

See ``emulator.KubeEmulator`` for the API and README.md for what is (not) modelled.
"""

from ._api import RecordedRequest
from ._kubelet import LABEL, LABEL_INSTANCE, expand, image_reference
from .emulator import KubeEmulator

__all__ = ["LABEL", "LABEL_INSTANCE", "KubeEmulator", "RecordedRequest", "expand", "image_reference"]
