//go:build e2e

// Package e2e runs the pyro binary against real VMs. It needs root (for a
// local environment build), QEMU and the Debian mirror; `make e2e` sets it
// up. A missing prerequisite fails the run with what to do, never skips.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var pyroBin string

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup failed: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup() error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("qemu-system-x86_64 not found: run ./scripts/install-host-deps.sh as root")
	}
	pyroBin = os.Getenv("PYRO_E2E_BINARY")
	if pyroBin == "" {
		dir, err := os.MkdirTemp("", "pyro-e2e-bin-")
		if err != nil {
			return err
		}
		pyroBin = filepath.Join(dir, "pyro")
		build := exec.Command("go", "build", "-tags", "netgo,osusergo", "-o", pyroBin, "../cmd/pyro")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building pyro: %v\n%s", err, out)
		}
	}
	// The environment every test boots; a no-op when it is installed.
	pull := exec.Command(pyroBin, "env", "pull", "debian:12")
	pull.Stdout, pull.Stderr = os.Stderr, os.Stderr
	if err := pull.Run(); err != nil {
		return fmt.Errorf("pyro env pull debian:12: %v (it needs root and the Debian mirror)", err)
	}
	return nil
}

type result struct {
	stdout, stderr string
	code           int
	dur            time.Duration
}

// pyro runs the binary with args and extra environment variables, with a
// private state directory, and checks afterwards that no VM is left.
func pyro(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := runPyro(t, env, args...)
	assertNoVMLeft(t)
	return r
}

// runPyro runs the binary; safe to call from several goroutines.
func runPyro(t *testing.T, env []string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pyroBin, args...)
	cmd.Env = append(baseEnv(t), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), dur: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Errorf("pyro %v: %v", args, err)
		r.code = -1
	}
	return r
}

func baseEnv(t *testing.T) []string {
	env := os.Environ()
	return append(env, "PYRO_HOME="+t.TempDir())
}

// pyroJSON runs pyro with --json appended and decodes stdout into v.
func pyroJSON(t *testing.T, v any, env []string, args ...string) result {
	t.Helper()
	r := pyro(t, env, args...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("pyro %v: stdout is not JSON (%v):\n%s\nstderr:\n%s", args, err, r.stdout, r.stderr)
	}
	return r
}

// qemuProcesses lists the pids of running QEMU processes pyro started
// (their -name starts with "pyro-").
func qemuProcesses() []int {
	return processesWhere("cmdline", func(args []string) bool {
		if len(args) == 0 || !strings.HasSuffix(args[0], "qemu-system-x86_64") {
			return false
		}
		for i, a := range args {
			if a == "-name" && i+1 < len(args) && strings.HasPrefix(args[i+1], "pyro-") {
				return true
			}
		}
		return false
	})
}

// processesWhere lists the processes whose /proc/PID/file, split at NUL
// bytes (cmdline, environ), satisfies match.
func processesWhere(file string, match func([]string) bool) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, file))
		if err != nil || !match(strings.Split(string(b), "\x00")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		pids = append(pids, pid)
	}
	return pids
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is gone for our purposes (its parent has not reaped it yet).
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// assertNoVMLeft fails when a QEMU process started by pyro still runs. The
// tests run one at a time, so any such process is a leak.
func assertNoVMLeft(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var live []int
		for _, pid := range qemuProcesses() {
			if alive(pid) {
				live = append(live, pid)
			}
		}
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range live {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("QEMU processes left running: %v", live)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startPyro starts pyro in the background and returns it with a buffer
// collecting its stderr.
func startPyro(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(pyroBin, args...)
	cmd.Env = append(baseEnv(t), env...)
	stderr := &syncBuffer{}
	cmd.Stdout = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, stderr
}

// waitFor waits until buf contains s.
func waitFor(t *testing.T, buf *syncBuffer, s string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%q did not appear within %s; output so far:\n%s", s, limit, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childQEMU returns the pid of the QEMU process whose parent is pid.
func childQEMU(t *testing.T, parent int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pid := findChildQEMU(parent); pid != 0 {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no QEMU child of pid %d", parent)
	return 0
}

func findChildQEMU(parent int) int {
	for _, pid := range qemuProcesses() {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(parent) {
			return pid
		}
	}
	return 0
}
