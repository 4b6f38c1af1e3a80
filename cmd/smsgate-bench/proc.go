package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat: 100 on
// every Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo).
const clockTicks = 100

// cpuTimes are a process's CPU times from /proc/PID/stat.
type cpuTimes struct {
	User, System           time.Duration // utime, stime
	ChildUser, ChildSystem time.Duration // cutime, cstime (waited-for children, e.g. Redis' AOF rewrite)
}

// Total is the process's own CPU time plus that of its reaped children.
func (c cpuTimes) Total() time.Duration {
	return c.User + c.System + c.ChildUser + c.ChildSystem
}

// Sub returns the CPU used between an earlier reading and c.
func (c cpuTimes) Sub(earlier cpuTimes) cpuTimes {
	return cpuTimes{
		User: c.User - earlier.User, System: c.System - earlier.System,
		ChildUser: c.ChildUser - earlier.ChildUser, ChildSystem: c.ChildSystem - earlier.ChildSystem,
	}
}

// parseStat reads utime, stime, cutime and cstime from the text of
// /proc/PID/stat. The command name (field 2) may contain spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(s string) (cpuTimes, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return cpuTimes{}, errors.New("proc stat: no ')' after the command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14.
	const utime = 14 - 3
	if len(f) < utime+4 {
		return cpuTimes{}, fmt.Errorf("proc stat: %d fields after the command name, want at least %d", len(f), utime+4)
	}
	var v [4]time.Duration
	for k := range v {
		n, err := strconv.ParseInt(f[utime+k], 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("proc stat: field %d: %w", utime+3+k, err)
		}
		v[k] = time.Duration(n) * time.Second / clockTicks
	}
	return cpuTimes{User: v[0], System: v[1], ChildUser: v[2], ChildSystem: v[3]}, nil
}

// readCPU reads the CPU times of process pid.
func readCPU(pid int) (cpuTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read cpu of %d: %w", pid, err)
	}
	return parseStat(string(b))
}

// parseStatusKB returns the value in bytes of a "Key:   123 kB" line of
// /proc/PID/status (VmHWM, VmRSS…).
func parseStatusKB(s, key string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != key {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("proc status: %s: unexpected value %q", key, rest)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status: %s: %w", key, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("proc status: no %s line", key)
}

// readHWM returns the peak resident set size (VmHWM) of process pid in bytes.
func readHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	return parseStatusKB(string(b), "VmHWM")
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// cpuModel returns the "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if name, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// child is a process this command started; stop ends it.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set when done is closed
}

// startChild starts bin with args, its stderr (and stdout unless the caller
// takes it with stdout != nil) appended to logPath. The child gets SIGKILL
// if this process dies first.
func startChild(name, logPath string, stdout *io.ReadCloser, bin string, args ...string) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	if stdout != nil {
		if *stdout, err = cmd.StdoutPipe(); err != nil {
			_ = logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	} else {
		cmd.Stdout = logf
	}
	// Own process group: a Ctrl-C reaches only this command, which then
	// stops the children in order. Pdeathsig covers a crash of this command.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		_ = logf.Close()
		close(c.done)
	}()
	return c, nil
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitFor polls check every 20 ms until it returns nil, the child exits,
// or timeout passes.
func waitFor(ctx context.Context, c *child, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if c != nil && c.exited() {
			return fmt.Errorf("%s exited before %s: %v", c.name, what, c.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %v: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
