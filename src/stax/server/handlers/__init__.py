"""Every RPC method of stax-server, by family (lifecycle, queries, archives).

Handlers are transport-agnostic (params dict in, JSON-ready result out): the Unix socket
(server/transport.py) and the WebSocket (server/web.py) both dispatch to them.
"""

from __future__ import annotations

from stax.server.handlers.archives import Archives
from stax.server.handlers.compare import Compare
from stax.server.handlers.lifecycle import Lifecycle
from stax.server.handlers.marks import Marks
from stax.server.handlers.queries import MAX_BUCKETS, MAX_TREE_DEPTH, Queries
from stax.server.transport import Handler

__all__ = ["MAX_BUCKETS", "MAX_TREE_DEPTH", "Handler", "Handlers"]


class Handlers(Lifecycle, Queries, Archives, Marks, Compare):
    def table(self) -> dict[str, Handler]:
        """Method name -> handler (subscribe and unsubscribe belong to the subscriptions)."""
        return {
            "hello": self.h_hello,
            "status": self.h_status,
            "list_runs": self.h_list_runs,
            "start_launch": self.h_start_launch,
            "start_attach": self.h_start_attach,
            "target_exited": self.h_target_exited,
            "wait": self.h_wait,
            "stop": self.h_stop,
            "select_run": self.h_select_run,
            "diagnostics": self.h_diagnostics,
            "dump": self.h_dump,
            "shutdown": self.h_shutdown,
            "top": self.h_top,
            "flamegraph": self.h_flamegraph,
            "threads": self.h_threads,
            "timeline": self.h_timeline,
            "save": self.h_save,
            "open": self.h_open,
            "annotate": self.h_annotate,
            "intervals": self.h_intervals,
            "wakers": self.h_wakers,
            "mark": self.h_mark,
            "stalls": self.h_stalls,
            "neighbors": self.h_neighbors,
            "samples": self.h_samples,
            "compare": self.h_compare,
        }
