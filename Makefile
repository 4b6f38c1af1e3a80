# smsgate — see README.md. Every target works on a machine with only Go
# (and, for tests, a Redis server on 127.0.0.1:6379: `.ci/run` starts one).
GO        ?= go
PKGS      := ./...
FUZZTIME  ?= 5s
BENCHTIME ?= 2s

.PHONY: all build run test test-short bench bench-quick lint fuzz clean

all: lint test

build:
	$(GO) build -o bin/smsgate ./cmd/smsgate

## run: the daemon with the embedded store and an embedded SMSC simulator
run:
	$(GO) run ./cmd/smsgate -config smsgate.example.toml

## test: everything, race detector on (integration tests need Redis on 127.0.0.1:6379)
test:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

## bench: the hot-path benchmarks; figures go to docs/BENCHMARKS.md
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

bench-quick:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 200ms $(PKGS)

## lint: vet, formatting, and a tidy module
lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

## fuzz: a short run of every native fuzz test
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
