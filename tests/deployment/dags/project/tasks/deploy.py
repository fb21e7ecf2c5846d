"""py> methods of the deployment scenarios (run on a worker, in a container or as an ECS task)."""

import os
import time

import digdag


def meet(who, partner, session_uuid):
    """Sibling tasks meet: each one waits until the other one runs too, so both surely run at once."""
    here = os.path.join(os.environ.get("RENDEZVOUS", "rendezvous"), session_uuid)
    os.makedirs(here, exist_ok=True)
    open(os.path.join(here, who), "w").close()
    deadline = time.time() + 90
    while not os.path.exists(os.path.join(here, partner)):
        if time.time() > deadline:
            raise RuntimeError(f"{who}: {partner} did not run at the same time")
        time.sleep(0.2)
    print(f"I am {who}", flush=True)
    time.sleep(3)  # both commands are still running here
    digdag.env.store(who=who)


def count(label, lines=10, pause=2.0):
    """Print numbered lines with pauses (a test can act in between), then store how many."""
    for i in range(1, int(lines) + 1):
        print(f"{label}-line {i}", flush=True)
        time.sleep(float(pause))
    digdag.env.store(label=label, lines=int(lines))
