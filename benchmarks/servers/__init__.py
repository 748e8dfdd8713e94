"""Baseline servers: the same workload as streamserver's ``production`` route, built three other ways."""
