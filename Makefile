# smsgate — see README.md. Every target works on a machine with only Go
# (and, for tests, a Redis server on 127.0.0.1:6379: `.ci/run` starts one).
GO        ?= go
PKGS      := ./...
FUZZTIME  ?= 5s
BENCHTIME ?= 2s

.PHONY: all build run test test-short test-faults bench bench-micro bench-e2e bench-cluster bench-kannel bench-crash bench-quick lint fuzz clean

all: lint test

build:
	$(GO) build -o bin/smsgate ./cmd/smsgate

## run: the daemon with the embedded store and an embedded SMSC simulator
run:
	$(GO) run ./cmd/smsgate -config smsgate.example.toml

## test: everything, race detector on (integration tests need Redis on 127.0.0.1:6379,
## and redis-server installed). One package at a time (-p 1): the rate and timing checks
## of the queue, SMPP and daemon tests measure real scheduling, and on 2 cores two
## packages' integration tests running at once starve each other. Includes the eleven
## fault scenarios of testharness/faults (~110 s; see test-faults).
test:
	$(GO) test -race -count=1 -p 1 -timeout 30m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

## test-faults: only the eleven fault scenarios (also part of make test), verbose: real
## binary, Redis restarts, SIGKILL, proxies, a misbehaving SMSC; ~110 s
test-faults:
	$(GO) test -race -count=1 -timeout 30m -v ./testharness/faults/...

## bench: hot-path micro-benchmarks, then the end-to-end runs; figures in docs/BENCHMARKS.md
bench: bench-micro bench-e2e bench-cluster

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

## bench-e2e: end-to-end load runs (real binary, redis-server with AOF, simulator process)
## with every status event and with final statuses only (one POST per message, like
## Kannel's DLR-only reference), the floor of the contract's HTTP traffic on this machine
## (-floor: a gateway doing only that, no Redis, no carrier; -floor-raw: the same with
## hand-written HTTP/1.1 instead of net/http; -floor-full: plus the least durable Redis
## writes and the SMPP traffic to the simulator), an open-loop latency run, and the Redis
## memory run (1,000,000 queued messages)
bench-e2e:
	$(GO) run ./cmd/smsgate-bench
	$(GO) run ./cmd/smsgate-bench -status-events delivered,undelivered,failed,expired
	$(GO) run ./cmd/smsgate-bench -floor
	$(GO) run ./cmd/smsgate-bench -floor-raw
	$(GO) run ./cmd/smsgate-bench -floor-full
	$(GO) run ./cmd/smsgate-bench -floor-full -floor-raw
	$(GO) run ./cmd/smsgate-bench -rate 1500 -n 20000
	$(GO) run ./cmd/smsgate-bench -queue-only 1000000

## bench-cluster: end-to-end runs with 1, 2 and 3 daemons on a 3-master Redis Cluster (~2 min)
bench-cluster:
	for d in 1 2 3; do $(GO) run ./cmd/smsgate-bench -quick -cluster -daemons $$d || exit 1; done

## bench-kannel: Kannel (bearerbox + smsbox with its file store; apt-get install kannel)
## and smsgate driven the same way on this machine, with every report and with final
## reports only; the simulator sends each receipt 1 s after its submit_sm_resp in all
## four runs (Kannel drops receipts that overtake their submit_sm_resp) (~2 min)
bench-kannel:
	$(GO) run ./cmd/smsgate-bench -kannel
	$(GO) run ./cmd/smsgate-bench -receipt-delay 1s
	$(GO) run ./cmd/smsgate-bench -kannel -status-events delivered,undelivered,failed,expired
	$(GO) run ./cmd/smsgate-bench -receipt-delay 1s -status-events delivered,undelivered,failed,expired

## bench-crash: SIGKILL the gateway 2 s into 5,000 messages at 1,000/s and restart it, then
## count per message what reached the SMSC and the webhook: smsgate, Kannel with its DLRs
## in memory, Kannel with its DLRs in redis-server (needs Kannel, as bench-kannel) (~4 min)
bench-crash:
	$(GO) run ./cmd/smsgate-bench -kill-after 2s -rate 1000 -n 5000
	$(GO) run ./cmd/smsgate-bench -kannel -kill-after 2s -rate 1000 -n 5000
	$(GO) run ./cmd/smsgate-bench -kannel -kannel-dlr-redis -kill-after 2s -rate 1000 -n 5000

## bench-quick: a ~30 s end-to-end run for development
bench-quick:
	$(GO) run ./cmd/smsgate-bench -quick

## lint: vet, formatting, and a tidy module
lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

## fuzz: a short run of every native fuzz test (minimising a new input is capped at 1 s:
## with the default 60 s, a short run can end "context deadline exceeded" mid-minimisation)
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
