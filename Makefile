# xdpguard — `make help` lists the targets.
# The BPF objects are generated and committed: `make build` needs only Go.

CLANG     ?= clang-19
STRIP     ?= llvm-strip-19
ARCH_INC  := /usr/include/$(shell uname -m)-linux-gnu
BPF_CFLAGS := -O2 -g -Wall -Werror -mcpu=v3 -I$(ARCH_INC)
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Debian versions must start with a digit: 0.0~git<commit date>.<hash> until a release is tagged.
DEB_VERSION ?= 0.0~git$(shell git log -1 --format=%cd.%h --date=format:%Y%m%d 2>/dev/null || echo 0)

# Debian packages: what generation needs, and what the tests and demo drive.
GEN_PKGS  := clang-19 llvm-19 libbpf-dev linux-libc-dev
TEST_PKGS := iproute2 nmap hping3 python3 curl iputils-ping prometheus nftables xdp-tools ethtool systemd util-linux fail2ban ipset time
# The kernel matrix boots other kernels under qemu (downloaded, never installed).
KERNEL_PKGS := qemu-system-x86 cpio

.PHONY: help build generate check-generated deps deps-gen test test-unit kernel-matrix deb vet fuzz bench demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/xdpguard
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/xdpguard ./cmd/xdpguard

# Every directory with a bpf2go line; its *_bpfel.{go,o} are committed.
BPF_GEN_DIRS := ./pkg/datapath ./pkg/datapath/internal/testclock ./pkg/datapath/internal/component ./test/bench

generate: deps-gen ## rebuild the BPF objects (*_bpfel.{go,o}) with Debian's clang
	BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP) BPF2GO_CFLAGS="$(BPF_CFLAGS)" $(GO) generate $(BPF_GEN_DIRS)

check-generated: generate ## fail if the committed BPF objects are not what the sources build
	@stale=$$(git status --porcelain -- '*_bpfel.go' '*_bpfel.o'); \
	[ -z "$$stale" ] || { echo "generated BPF objects are stale: run 'make generate' and commit"; echo "$$stale"; exit 1; }

deps-gen:
	@./scripts/apt-deps.sh $(GEN_PKGS)

deps: deps-gen ## install the Debian packages generation, tests and the demo need (root)
	@./scripts/apt-deps.sh $(TEST_PKGS) $(KERNEL_PKGS)

vet: ## go vet
	$(GO) vet ./...

test: deps ## all tests: unit, BPF_PROG_RUN, veth/netns integration, the kernel matrix (root; CI=true forbids skips)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	./test/kernels/run.sh

kernel-matrix: deps ## the verifier and BPF_PROG_RUN tests on Debian's 6.1 and 6.12 kernels under qemu (KERNEL_SERIES="6.1 6.12")
	./test/kernels/run.sh

test-unit: ## tests that need no root (privileged ones skip)
	$(GO) test -count=1 ./pkg/policy/... ./cmd/...

fuzz: ## run the fuzz targets for a while (FUZZTIME=60s)
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime $${FUZZTIME:-60s} ./pkg/policy
	$(GO) test -run XXX -fuzz FuzzDataPath -fuzztime $${FUZZTIME:-60s} -fuzzminimizetime 100x ./pkg/datapath

# The bench takes the machine's shared bench lock for each round and section
# itself (do not wrap `make bench` in flock with the same file).
BENCH_LOCK ?= /tmp/xdpguard-bench.lock

bench: build deps ## benchmarks: program cost, veth floods vs the floors, xdp-filter and nftables, real policies, control plane; writes docs/benchmarks.{md,png} (QUICK=1: a short run)
	$(GO) run ./test/bench -bin $(CURDIR)/bin/xdpguard -lock $(BENCH_LOCK) $(if $(QUICK),-quick)

demo: build deps ## a veth lab: a port scan and a SYN flood dropped, the metrics shown
	./scripts/demo.sh

deb: build ## the Debian package dist/xdpguard_<version>_amd64.deb (nfpm): binary, hardened unit, conffiles, man pages, completions
	rm -rf dist/man dist/completions dist/xdpguard_*.deb
	bin/xdpguard gen-docs --man dist/man --completions dist/completions
	gzip -9n dist/man/*.1
	XDPGUARD_VERSION=$(DEB_VERSION) $(GO) tool nfpm package --config deploy/debian/nfpm.yaml --packager deb --target dist/

clean: ## remove build output (never the committed BPF objects)
	rm -rf bin dist
