"""The topics of the task events a shim publishes (containerd's runtime/events.go).

containerd checks each topic (it must start with ``/``) and forwards the
event, packed in an Any under its bare message name
(``containerd.events.TaskExit``), to its subscribers: ``ctr events``, CRI,
Docker.  Which event comes when, and in what order, is the service's
(``_service``).
"""


class Topic:
    """containerd's task event topics."""

    CREATE = "/tasks/create"
    START = "/tasks/start"
    EXEC_ADDED = "/tasks/exec-added"
    EXEC_STARTED = "/tasks/exec-started"
    EXIT = "/tasks/exit"
    DELETE = "/tasks/delete"
    PAUSED = "/tasks/paused"
    RESUMED = "/tasks/resumed"
    OOM = "/tasks/oom"
    CHECKPOINTED = "/tasks/checkpointed"
