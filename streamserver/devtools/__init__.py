"""Tools for developing against streamserver without a real model: the fake upstream."""
