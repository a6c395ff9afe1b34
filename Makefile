# Convenience targets; the scripts are the source of truth.
.PHONY: ci test demo setup bench
ci test:
	scripts/test
demo:
	scripts/demo
setup:
	scripts/setup
bench:
	cargo bench --workspace --bench engine
