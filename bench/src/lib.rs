//! Benchmarks for wsgi-gateway live in benches/ and compare.sh.
