"""A worker's first broker write: the limit definitions its App declares, where the broker has
none, so a job naming a declared limit is never reserved as if the limit were undefined (a limit
without a definition runs its jobs unlimited). The broker's live value stays the one enforced:
``only_new`` never overwrites what an operator set (``taskit limit set``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio

from taskit._outage import Outage
from taskit.broker.base import Broker
from taskit.errors import BrokerAuthenticationError, ConfigurationError, TaskitError
from taskit.limits import LimitSpec

__all__ = ["declare_limits"]

log = logging.getLogger(__name__)


async def declare_limits(broker: Broker, specs: Mapping[str, LimitSpec]) -> None:
    """Write ``specs`` with ``set_limits(..., only_new=True)``; nothing at all when there are
    none. A broker that is down is waited out (once-per-outage log, capped backoff) until the
    write lands or the caller is cancelled. ``ConfigurationError`` if the broker cannot store
    limits (it would run every job unlimited: better not to start)."""
    if not specs:
        return
    outage = Outage("writing the declared limits", log)
    while True:
        try:
            await broker.set_limits(dict(specs), only_new=True)
        except NotImplementedError:
            raise ConfigurationError(
                f"the App declares limits ({', '.join(sorted(specs))}) but its broker "
                f"{type(broker).__name__} does not enforce limits"
            ) from None
        except (BrokerAuthenticationError, ConfigurationError):
            raise
        except (TaskitError, OSError) as exc:
            await anyio.sleep(outage.failed(exc))
            continue
        outage.recovered()
        return
