# Hopwire: what a user types. CMake does the building underneath.
#   make         install missing Debian packages, build (build/bin/)
#   make test    build, run unit tests under ASan+UBSan, then end-to-end tests
#   make demo    build and show a local network working
#   make bench   build and print the benchmark figures
#   make bench-vpn  build and print the VPN figures (root: namespaces)
#   make fuzz    build the libFuzzer targets and run each briefly

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 20

.PHONY: all deps build build-asan test demo bench bench-vpn fuzz clean

all: deps build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHW_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

test: build build-asan
	@scripts/test.sh

demo: build
	@scripts/demo.sh

bench: build
	@scripts/bench.sh

bench-vpn: build
	@if [ "$$(id -u)" -ne 0 ]; then \
	  echo "make bench-vpn: needs root (network namespaces, TUN devices," \
	       "nftables): sudo make bench-vpn"; exit 2; fi
	@/usr/bin/python3 bench/bench_vpn.py build/bin

fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DHW_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

clean:
	rm -rf build build-asan build-fuzz .fuzz
