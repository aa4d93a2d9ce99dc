"""Child process for test_outbox_kill9: appends groups forever, printing each committed seq.

Run as `python outbox_kill9_child.py PATH SEED` with the keys in env DW_TEST_KEYS (hex, comma separated).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from agent_app.core.outbox import Outbox
from policy_client.schema import EventDraft, EventKind, Severity
from policy_client.secrets import OutboxKeys, key_id_for


def main() -> None:
    path, seed = Path(sys.argv[1]), int(sys.argv[2])
    data_key, chain_key = (bytes.fromhex(part) for part in os.environ["DW_TEST_KEYS"].split(","))
    keys = OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=chain_key)
    rng = random.Random(seed)
    outbox = Outbox(path, keys=keys)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    while True:
        group = [
            EventDraft(kind=EventKind.usb_mounted, severity=rng.choice(list(Severity)), data={"seed": seed, "i": i})
            for i in range(rng.randint(1, 40))
        ]
        seqs = outbox.append(group)
        out.write("".join(f"{seq}\n" for seq in seqs))
        out.flush()
        if rng.random() < 0.2:
            batch = outbox.pending(limit=rng.randint(1, 50))
            outbox.mark_sent([e["seq"] for e in batch])


if __name__ == "__main__":
    main()
