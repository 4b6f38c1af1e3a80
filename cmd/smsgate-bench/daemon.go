package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/smsgate/smsgate/app"
)

// daemonCommand is the hidden sub-command that runs the daemon (the same
// app.New/Start/Stop as `smsgate -config`) inside this binary with
// runtime/pprof, because smsgate serves no pprof endpoint. SIGUSR1 starts
// the CPU profile and block/mutex sampling and writes allocs-, block- and
// mutex-start.pb.gz; SIGUSR2 stops them and writes the -end.pb.gz
// counterparts (compare with go tool pprof -base).
const daemonCommand = "daemon"

func runProfiledDaemon(args []string) error {
	fs := flag.NewFlagSet(daemonCommand, flag.ContinueOnError)
	path := fs.String("config", "", "configuration file")
	dir := fs.String("profile-dir", "", "directory for the profiles")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *dir == "" {
		return errors.New("-config and -profile-dir are required")
	}
	a, err := app.New(app.Options{ConfigPath: *path, LogOutput: os.Stderr})
	if err != nil {
		return err
	}
	a.Start()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	var cpu *os.File
	var errs []error
	for sig := range sigs {
		switch sig {
		case syscall.SIGUSR1:
			if cpu != nil {
				continue
			}
			runtime.SetBlockProfileRate(blockRate)
			runtime.SetMutexProfileFraction(100)
			errs = append(errs, writeProfile("allocs", filepath.Join(*dir, "allocs-start.pb.gz")),
				writeProfile("block", filepath.Join(*dir, "block-start.pb.gz")),
				writeProfile("mutex", filepath.Join(*dir, "mutex-start.pb.gz")))
			f, err := os.Create(filepath.Join(*dir, "cpu.pb.gz"))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				errs = append(errs, err, f.Close())
				continue
			}
			cpu = f
		case syscall.SIGUSR2:
			if cpu == nil {
				continue
			}
			pprof.StopCPUProfile()
			errs = append(errs, cpu.Close(),
				writeProfile("block", filepath.Join(*dir, "block-end.pb.gz")),
				writeProfile("mutex", filepath.Join(*dir, "mutex-end.pb.gz")),
				writeProfile("allocs", filepath.Join(*dir, "allocs-end.pb.gz")))
			runtime.SetBlockProfileRate(0)
			runtime.SetMutexProfileFraction(0)
			cpu = nil
		default:
			if cpu != nil {
				pprof.StopCPUProfile()
				errs = append(errs, cpu.Close())
			}
			errs = append(errs, a.Stop())
			return errors.Join(errs...)
		}
	}
	return nil
}

// blockRate samples goroutine blocking events of about 20µs and more.
const blockRate = 20000

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s profile: %w", name, err)
	}
	return f.Close()
}
