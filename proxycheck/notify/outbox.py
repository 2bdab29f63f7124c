"""Which events go out, and when: de-duplication and a minimum interval per subject.

Rules:
1. Pure, with the clock passed in (``now``, monotonic seconds): a table of inputs gives the same
   output every time.
2. De-duplication: an event whose state is the one last sent for its subject is dropped (a subject
   never sent is ``resolved``: a daemon starts quiet, events.py rule 3).
3. Minimum interval: at most one message per subject per ``min_interval`` seconds. A change within
   it is held, and only the latest held one counts: if the subject is back to the state last sent
   when the interval ends (a flap), nothing is sent; otherwise the latest event goes out then.
"""

from __future__ import annotations

from .events import Event, State


class Outbox:
    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self._sent: dict[str, tuple[State, float]] = {}  # subject -> (state last sent, when)
        self._held: dict[str, Event] = {}

    def offer(self, event: Event) -> None:
        """Hold ``event`` for ``due``, or drop it if its subject already is in that state (rules 2, 3)."""
        sent_state = self._sent.get(event.subject, ("resolved", 0.0))[0]
        if event.state == sent_state:
            self._held.pop(event.subject, None)  # a flap back to what was sent: nothing to say
        else:
            self._held[event.subject] = event

    def due(self, now: float) -> list[Event]:
        """The held events whose subject's interval has passed; they count as sent at ``now``."""
        out = []
        for subject, event in list(self._held.items()):
            last = self._sent.get(subject)
            if last is None or now - last[1] >= self.min_interval:
                out.append(event)
                self._sent[subject] = (event.state, now)
                del self._held[subject]
        return out

    @property
    def held(self) -> int:
        return len(self._held)
