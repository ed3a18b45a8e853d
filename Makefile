# livemig - the two commands a newcomer types: `make demo` and `make check`.
# Meson + Ninja do the build; this file only sets up and dispatches.

BUILD    ?= build
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD    := build-asan
MESONOPT := -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug -Doptimization=1
else
MESONOPT := -Dbuildtype=debugoptimized
endif

.PHONY: all deps deps-test build check demo bench docs fuzz clean

all: build

deps:
	@./scripts/install-deps

deps-test:
	@./scripts/install-deps --test

$(BUILD)/build.ninja: | deps
	meson setup $(BUILD) $(MESONOPT)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

check: build deps-test
	@./scripts/run-tests $(BUILD)

demo: build
	@./scripts/demo $(BUILD)

bench: build deps-test
	@./bench/run $(BUILD)

docs: build
	ninja -C $(BUILD) docs

# Coverage-guided fuzzing (clang + libFuzzer, its own build dir):
# every harness of tests/fuzz (or those in FUZZ_ONLY) for FUZZ_S seconds.
FUZZ_S ?= 60
FUZZ_ONLY ?=
fuzz: deps
	@./scripts/fuzz build-fuzz $(FUZZ_S) "$(FUZZ_ONLY)"

clean:
	rm -rf build build-asan build-fuzz
