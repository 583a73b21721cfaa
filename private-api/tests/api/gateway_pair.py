"""Two gateways on one PostgreSQL database and one Redis key prefix, as behind a load balancer:
what they share (request budgets, event-stream slots) must hold across both."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from databases import temporary_database
from gateway_process import Gateway, new_var_dir, start_gateway, stop_gateway
from redis_keys import REDIS_URL, temporary_redis_prefix


@contextmanager
def redis_gateway_pair(name: str, **overrides: str) -> Iterator[tuple[Gateway, Gateway]]:
    with ExitStack() as stack:
        var_dirs = [new_var_dir(f"{name}-a"), new_var_dir(f"{name}-b")]
        for var_dir in var_dirs:
            stack.callback(shutil.rmtree, var_dir, ignore_errors=True)
        database_url = stack.enter_context(temporary_database("postgresql", var_dirs[0]))
        prefix = stack.enter_context(temporary_redis_prefix(name))
        gateways = []
        for var_dir in var_dirs:
            gateways.append(start_gateway(var_dir, FMU_GATEWAY_DATABASE_URL=database_url,
                                          FMU_GATEWAY_REDIS_URL=REDIS_URL, FMU_GATEWAY_REDIS_KEY_PREFIX=prefix,
                                          **overrides))
            stack.callback(stop_gateway, gateways[-1])
        yield gateways[0], gateways[1]
