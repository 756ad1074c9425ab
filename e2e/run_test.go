//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/vm"
)

type runResult struct {
	Environment     string `json:"environment"`
	Command         string `json:"command"`
	ExecutionMode   string `json:"execution_mode"`
	Accelerator     string `json:"accelerator"`
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	DurationMs      int64  `json:"duration_ms"`
	TimedOut        bool   `json:"timed_out"`
	VMID            string `json:"vm_id"`
	Cleanup         struct {
		Deleted bool   `json:"deleted"`
		Reason  string `json:"reason"`
		VMID    string `json:"vm_id"`
	} `json:"cleanup"`
}

type errorPayload struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Hint    string `json:"hint"`
	} `json:"error"`
}

func TestRunGitVersion(t *testing.T) {
	r := pyro(t, nil, "run", "debian:12", "--", "git", "--version")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "git version 2.") {
		t.Errorf("stdout %q, want git's version", r.stdout)
	}
	for _, phase := range []string{"[run] phase=create environment=debian:12", "[run] phase=start vm_id=", "[run] phase=execute vm_id=", "[run] environment=debian:12 execution_mode=guest_serial"} {
		if !strings.Contains(r.stderr, phase) {
			t.Errorf("stderr lacks %q:\n%s", phase, r.stderr)
		}
	}
	if strings.Contains(r.stdout, "[run]") {
		t.Errorf("phase lines leaked to stdout:\n%s", r.stdout)
	}
}

// A pyro built without the embedded guest build (go install, go build)
// boots itself as the guest's init; the same command works either way.
func TestRunWithThePyroBinaryAsInit(t *testing.T) {
	r := pyro(t, []string{"PYRO_AGENT_BINARY=" + pyroBin}, "run", "debian:12", "--", "git", "--version")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "git version 2.") {
		t.Errorf("stdout %q, want git's version", r.stdout)
	}
}

func TestRunJSONResult(t *testing.T) {
	var res runResult
	r := pyroJSON(t, &res, nil, "run", "debian:12", "--json", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 {
		t.Errorf("pyro exit %d, want the guest's 3; stderr:\n%s", r.code, r.stderr)
	}
	if res.ExitCode != 3 || res.Stdout != "out\n" || res.Stderr != "err\n" {
		t.Errorf("result exit=%d stdout=%q stderr=%q", res.ExitCode, res.Stdout, res.Stderr)
	}
	if res.ExecutionMode != "guest_serial" || res.Environment != "debian:12" || res.TimedOut {
		t.Errorf("result %+v", res)
	}
	if res.Command != `sh -c 'echo out; echo err >&2; exit 3'` {
		t.Errorf("command %q", res.Command)
	}
	if !res.Cleanup.Deleted || res.Cleanup.VMID != res.VMID || res.VMID == "" || res.Cleanup.Reason != "post_exec_cleanup" {
		t.Errorf("cleanup %+v, vm_id %q", res.Cleanup, res.VMID)
	}
	if res.Accelerator != "tcg" && res.Accelerator != "kvm" {
		t.Errorf("accelerator %q", res.Accelerator)
	}
	if !strings.HasPrefix(r.stdout, "{\n  \"accelerator\"") {
		t.Errorf("JSON is not indented with sorted keys:\n%s", r.stdout)
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, code := range []int{0, 1, 42} {
		r := pyro(t, nil, "run", "debian:12", "--", "sh", "-c", fmt.Sprintf("exit %d", code))
		if r.code != code {
			t.Errorf("exit %d: pyro exited %d; stderr:\n%s", code, r.code, r.stderr)
		}
	}
	// A signal: the shell convention 128+n.
	r := pyro(t, nil, "run", "debian:12", "--", "sh", "-c", "kill -TERM $$")
	if r.code != 128+15 {
		t.Errorf("killed by SIGTERM: pyro exited %d, want 143", r.code)
	}
}

func TestRunWithoutStdin(t *testing.T) {
	// cat reads stdin: with none it must see EOF at once, not hang.
	var res runResult
	r := pyroJSON(t, &res, nil, "run", "debian:12", "--timeout-seconds", "20", "--json", "--", "sh", "-c", "cat; echo done")
	if r.code != 0 || res.Stdout != "done\n" || res.TimedOut {
		t.Errorf("exit %d timed_out=%v stdout %q; stderr:\n%s", r.code, res.TimedOut, res.Stdout, r.stderr)
	}
}

func TestRunTimeout(t *testing.T) {
	var res runResult
	r := pyroJSON(t, &res, nil, "run", "debian:12", "--timeout-seconds", "2", "--json", "--", "sh", "-c", "echo started; sleep 60")
	if r.code != 124 {
		t.Errorf("pyro exited %d, want 124; stderr:\n%s", r.code, r.stderr)
	}
	if !res.TimedOut || res.ExitCode != 124 || res.Stdout != "started\n" {
		t.Errorf("result timed_out=%v exit=%d stdout=%q", res.TimedOut, res.ExitCode, res.Stdout)
	}
	if r.dur > 40*time.Second {
		t.Errorf("a 2 s timeout took %s", r.dur)
	}
}

func TestRunLargeOutputIsTruncatedAndReported(t *testing.T) {
	var res runResult
	r := pyroJSON(t, &res, nil, "run", "debian:12", "--json", "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; echo tail >&2")
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if len(res.Stdout) != 1<<20 || !res.StdoutTruncated {
		t.Errorf("stdout kept %d bytes, truncated=%v; want 1 MiB and true", len(res.Stdout), res.StdoutTruncated)
	}
	if strings.Trim(res.Stdout, "a") != "" {
		t.Errorf("stdout holds something else than the command's bytes")
	}
	if res.Stderr != "tail\n" || res.StderrTruncated {
		t.Errorf("stderr %q truncated=%v", res.Stderr, res.StderrTruncated)
	}
	// Text mode says so too.
	r = pyro(t, nil, "run", "debian:12", "--", "sh", "-c", "head -c 2000000 /dev/zero")
	if len(r.stdout) != 1<<20 || !strings.Contains(r.stderr, "stdout truncated") {
		t.Errorf("text mode: %d bytes on stdout; stderr:\n%s", len(r.stdout), r.stderr)
	}
}

func TestRunBinaryOutput(t *testing.T) {
	var res runResult
	// Every byte value passes through unchanged.
	r := pyro(t, nil, "run", "debian:12", "--", "sh", "-c", "printf '\\000\\001\\377\\r\\n'")
	if r.code != 0 || r.stdout != "\x00\x01\xff\r\n" {
		t.Errorf("exit %d stdout %q", r.code, r.stdout)
	}
	_ = res
}

func TestRunBadInput(t *testing.T) {
	emptyCache := t.TempDir()
	noQEMU := t.TempDir()
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		code     int
		message  string
		hint     string
		jsonCode string
	}{
		{"unknown environment", nil, []string{"run", "debian:99", "--", "true"}, 125, "unknown environment", "pyro env list", "not_found"},
		{"not pulled", []string{"PYRO_ENV_CACHE=" + emptyCache}, []string{"run", "debian:12", "--", "true"}, 125, "not installed", "pyro env pull debian:12", "not_found"},
		{"command not found", nil, []string{"run", "debian:12", "--", "no-such-command"}, 125, `command "no-such-command" not found in the guest`, "", "not_found"},
		{"empty command", nil, []string{"run", "debian:12", "--"}, 2, "empty command", "pyro run debian:12 -- git --version", "invalid_argument"},
		{"tiny memory", nil, []string{"run", "debian:12", "--mem-mib", "1", "--", "true"}, 2, "invalid memory size", "--mem-mib", "invalid_argument"},
		{"huge memory", nil, []string{"run", "debian:12", "--mem-mib", "99999999", "--", "true"}, 2, "invalid memory size", "--mem-mib", "invalid_argument"},
		{"zero vcpus", nil, []string{"run", "debian:12", "--vcpu-count", "0", "--", "true"}, 2, "invalid vCPU count", "--vcpu-count", "invalid_argument"},
		{"absurd vcpus", nil, []string{"run", "debian:12", "--vcpu-count", "100000", "--", "true"}, 2, "invalid vCPU count", "--vcpu-count", "invalid_argument"},
		{"qemu missing", []string{"PATH=" + noQEMU}, []string{"run", "debian:12", "--", "true"}, 125, "qemu-system-x86_64 not found", "apt-get install qemu-system-x86", "unavailable"},
		{"bad accelerator", []string{"PYRO_ACCEL=warp"}, []string{"run", "debian:12", "--", "true"}, 2, "PYRO_ACCEL", "", "invalid_argument"},
		{"network not built yet", nil, []string{"run", "debian:12", "--network", "--", "true"}, 125, "guest networking is not supported yet", "without --network", "unavailable"},
		// A cold boot: a restored machine is ready well within a second.
		{"guest never ready", []string{"PYRO_BOOT_TIMEOUT_SECONDS=1", "PYRO_TEMPLATES=0"}, []string{"run", "debian:12", "--", "true"}, 125, "did not become ready within 1s", "pyro doctor", "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pyro(t, tc.env, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			var errLine string
			for _, l := range lines {
				if strings.HasPrefix(l, "pyro: ") {
					errLine = l
				}
			}
			if !strings.Contains(errLine, tc.message) {
				t.Errorf("error line %q lacks %q; stderr:\n%s", errLine, tc.message, r.stderr)
			}
			if tc.hint != "" && !strings.Contains(r.stderr, "hint: ") || !strings.Contains(r.stderr, tc.hint) {
				t.Errorf("stderr lacks hint %q:\n%s", tc.hint, r.stderr)
			}
			// The same failure in JSON.
			args := append([]string{tc.args[0], tc.args[1], "--json"}, tc.args[2:]...)
			var p errorPayload
			r = pyroJSON(t, &p, tc.env, args...)
			if r.code != tc.code || p.Error.Code != tc.jsonCode || !strings.Contains(p.Error.Message, tc.message) {
				t.Errorf("--json: exit %d, error %+v", r.code, p.Error)
			}
		})
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"run"},
		{"run", "debian:12", "git", "--version"},
		{"run", "debian:12", "--no-such-flag", "--", "true"},
		{"run", "debian:12", "extra", "--", "true"},
	} {
		r := pyro(t, nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "pyro: ") {
			t.Errorf("pyro %v: exit %d, stderr:\n%s", args, r.code, r.stderr)
		}
	}
}

func TestRunConcurrent(t *testing.T) {
	type out struct {
		r   result
		res runResult
	}
	results := make(chan out, 2)
	for i := 0; i < 2; i++ {
		go func(i int) {
			var res runResult
			cmd := []string{"run", "debian:12", "--json", "--", "sh", "-c", fmt.Sprintf("echo vm%d", i)}
			r := pyroJSONNoLeakCheck(t, &res, cmd...)
			results <- out{r, res}
		}(i)
	}
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		o := <-results
		if o.r.code != 0 {
			t.Errorf("exit %d; stderr:\n%s", o.r.code, o.r.stderr)
		}
		seen[o.res.Stdout] = true
		seen[o.res.VMID] = true
	}
	if !seen["vm0\n"] || !seen["vm1\n"] || len(seen) != 4 {
		t.Errorf("outputs and ids: %v", seen)
	}
	assertNoVMLeft(t)
}

func TestSIGKILLOfPyroLeavesNoVM(t *testing.T) {
	// phase=template: while the first run at a new size makes its
	// template; the next run at that size makes it again.
	newSize := strconv.Itoa(3000 + 8*rand.IntN(200))
	for _, phase := range []string{"phase=start", "phase=execute", "phase=template"} {
		t.Run(phase, func(t *testing.T) {
			args := []string{"run", "debian:12", "--", "sleep", "60"}
			if phase == "phase=template" {
				args = []string{"run", "debian:12", "--mem-mib", newSize, "--", "sleep", "60"}
				t.Cleanup(func() { removeNewTemplates(t, newSize) })
			}
			cmd, stderr := startPyro(t, nil, args...)
			waitFor(t, stderr, phase, 90*time.Second)
			qemu := childQEMU(t, cmd.Process.Pid)
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			deadline := time.Now().Add(5 * time.Second)
			for alive(qemu) {
				if time.Now().After(deadline) {
					t.Fatalf("QEMU %d survived pyro's SIGKILL", qemu)
				}
				time.Sleep(20 * time.Millisecond)
			}
			assertNoVMLeft(t)
			if phase == "phase=template" {
				var res runTimings
				r := pyroJSON(t, &res, nil, "run", "debian:12", "--json", "--mem-mib", newSize, "--", "true")
				if r.code != 0 || res.Timings.BootSource != "template" || !strings.Contains(r.stderr, "phase=template") {
					t.Errorf("after a kill while making the template: exit %d, boot source %q; stderr:\n%s", r.code, res.Timings.BootSource, r.stderr)
				}
			}
		})
	}
}

// removeNewTemplates removes the templates made by a run at memory size
// mem (none other uses it), and what attempts at them left.
func removeNewTemplates(t *testing.T, mem string) {
	templates := vm.TemplatesDir(env.DefaultCacheDir())
	entries, _ := os.ReadDir(templates)
	for _, e := range entries {
		p := filepath.Join(templates, e.Name())
		if b, err := os.ReadFile(filepath.Join(p, "hello.json")); err == nil && b != nil {
			if fi, err := os.Stat(filepath.Join(p, "memory")); err == nil && strconv.FormatInt(fi.Size()>>20, 10) == mem {
				os.RemoveAll(p)
				os.Remove(p + ".lock")
			}
		}
	}
}

func TestCtrlCStopsTheRun(t *testing.T) {
	cmd, stderr := startPyro(t, nil, "run", "debian:12", "--", "sleep", "60")
	waitFor(t, stderr, "phase=execute", 90*time.Second)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if err == nil || code != 130 {
		t.Errorf("exit %d after SIGINT, want 130; stderr:\n%s", code, stderr.String())
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("pyro took %s to stop after SIGINT", time.Since(start))
	}
	assertNoVMLeft(t)
}

func TestDemo(t *testing.T) {
	var res runResult
	r := pyroJSON(t, &res, nil, "demo")
	if r.code != 0 || !strings.HasPrefix(res.Stdout, "git version") || res.Command != "git --version" || res.Environment != "debian:12" {
		t.Errorf("exit %d result %+v", r.code, res)
	}
}

// pyroJSONNoLeakCheck is pyroJSON for tests that run several pyro at once,
// where a VM of a sibling may still run.
func pyroJSONNoLeakCheck(t *testing.T, v any, args ...string) result {
	r := runPyro(t, nil, args...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Errorf("pyro %v: stdout is not JSON (%v):\n%s", args, err, r.stdout)
	}
	return r
}

func TestHostCompatOnlyWhenAllowed(t *testing.T) {
	noQEMU := []string{"PATH=" + t.TempDir()}
	r := pyro(t, noQEMU, "run", "debian:12", "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "--allow-host-compat") {
		t.Errorf("without the flag: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	var res runResult
	r = pyroJSON(t, &res, noQEMU, "run", "debian:12", "--allow-host-compat", "--json", "--",
		"sh", "-c", "cat /etc/debian_version; echo $$; test -d /workspace && pwd")
	if r.code != 0 || res.ExecutionMode != "host_compat" {
		t.Fatalf("exit %d mode %q; stderr:\n%s", r.code, res.ExecutionMode, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	// The environment's root filesystem (Debian 12), its own PID namespace
	// (the shell is a low pid under the agent), and /workspace as cwd.
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "12.") || len(lines[1]) > 3 || lines[2] != "/workspace" {
		t.Errorf("stdout %q", res.Stdout)
	}
}

// runTimings is the part of a run's timings the template test reads.
type runTimings struct {
	DurationMs int64  `json:"duration_ms"`
	Stdout     string `json:"stdout"`
	Timings    struct {
		BootSource string `json:"boot_source"`
		GuestBoot  []any  `json:"guest_boot"`
	} `json:"timings"`
}

// A one-shot run restores its machine from a template made on first use;
// each restored machine has its own randomness and the host's clock; a
// broken template is dropped for a cold boot, and made again next time.
func TestRunRestoresFromTemplate(t *testing.T) {
	templates := vm.TemplatesDir(env.DefaultCacheDir())
	// A memory size no other test uses, so that this template is made
	// here and is this test's own.
	mem := strconv.Itoa(520 + 8*rand.IntN(200))
	before := map[string]bool{}
	entries, _ := os.ReadDir(templates)
	for _, e := range entries {
		before[e.Name()] = true
	}
	run := func(extraEnv ...string) (runTimings, result) {
		t.Helper()
		var res runTimings
		r := pyroJSON(t, &res, extraEnv, "run", "debian:12", "--json", "--mem-mib", mem, "--",
			"sh", "-c", "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' '; date +%s")
		if r.code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
		}
		return res, r
	}
	// The guest's clock, read by the command, against the host's around
	// the run: a restored machine that kept the template's clock would
	// be behind the run's start.
	checkClock := func(res runTimings, start time.Time) {
		t.Helper()
		f := strings.Fields(res.Stdout)
		if len(f) != 2 {
			t.Fatalf("stdout %q", res.Stdout)
		}
		guest, _ := strconv.ParseInt(f[1], 10, 64)
		if guest < start.Unix() || guest > time.Now().Unix()+1 {
			t.Errorf("the guest's clock read %d during a run from %d to %d", guest, start.Unix(), time.Now().Unix())
		}
	}

	// A first boot that runs out of time fails the run as a cold boot
	// would, and leaves nothing that stops the next run making the
	// template.
	slow := pyro(t, []string{"PYRO_BOOT_TIMEOUT_SECONDS=1"}, "run", "debian:12", "--mem-mib", mem, "--", "true")
	if slow.code != 125 || !strings.Contains(slow.stderr, "did not become ready") {
		t.Errorf("a template boot out of time: exit %d; stderr:\n%s", slow.code, slow.stderr)
	}
	entries, _ = os.ReadDir(templates)
	for _, e := range entries {
		if !before[e.Name()] && !strings.HasSuffix(e.Name(), ".lock") {
			t.Errorf("a boot that ran out of time left %s", e.Name())
		}
	}

	start := time.Now()
	first, r := run()
	if first.Timings.BootSource != "template" || !strings.Contains(r.stderr, "phase=template") {
		t.Fatalf("first run: boot source %q; stderr:\n%s", first.Timings.BootSource, r.stderr)
	}
	var dir string
	entries, _ = os.ReadDir(templates)
	for _, e := range entries {
		if e.IsDir() && !before[e.Name()] {
			dir = filepath.Join(templates, e.Name())
		}
	}
	if dir == "" {
		t.Fatalf("no new template in %s", templates)
	}
	t.Cleanup(func() { os.RemoveAll(dir); os.Remove(dir + ".lock") })
	for _, f := range []string{"memory", "state", "hello.json"} {
		if !fileExists(filepath.Join(dir, f)) {
			t.Errorf("template lacks %s", f)
		}
	}
	checkClock(first, start)

	time.Sleep(1100 * time.Millisecond) // the template's clock is now behind
	start = time.Now()
	second, r := run()
	if second.Timings.BootSource != "template" || strings.Contains(r.stderr, "phase=template") {
		t.Errorf("second run: boot source %q; stderr:\n%s", second.Timings.BootSource, r.stderr)
	}
	if len(second.Timings.GuestBoot) != 0 {
		t.Errorf("a restored run reports the template's boot steps as its own")
	}
	if second.DurationMs*2 > first.DurationMs {
		t.Errorf("a restored run took %d ms, the run that made the template %d ms", second.DurationMs, first.DurationMs)
	}
	if strings.Fields(first.Stdout)[0] == strings.Fields(second.Stdout)[0] {
		t.Errorf("two machines restored from one template read the same random bytes %s", strings.Fields(first.Stdout)[0])
	}
	checkClock(second, start)

	// A state cut short: the restore fails, the run boots cold, and the
	// template is gone.
	if err := os.Truncate(filepath.Join(dir, "state"), 1000); err != nil {
		t.Fatal(err)
	}
	broken, r := run()
	if broken.Timings.BootSource != "cold" || len(broken.Timings.GuestBoot) == 0 {
		t.Errorf("with a broken template: boot source %q; stderr:\n%s", broken.Timings.BootSource, r.stderr)
	}
	if dirExists(dir) {
		t.Errorf("the broken template %s is still there", dir)
	}
	if !strings.Contains(r.stderr, "did not restore") {
		t.Errorf("the run did not say why it booted cold; stderr:\n%s", r.stderr)
	}
	t.Cleanup(func() { os.Remove(dir + ".failed") })
	// Remembered: the next run boots cold without trying again...
	remembered, r := run()
	if remembered.Timings.BootSource != "cold" || strings.Contains(r.stderr, "phase=template") {
		t.Errorf("right after a broken template: boot source %q; stderr:\n%s", remembered.Timings.BootSource, r.stderr)
	}
	// ...until the memory of it expires (here: is removed).
	if err := os.Remove(dir + ".failed"); err != nil {
		t.Errorf("no failure marker: %v", err)
	}
	again, r := run()
	if again.Timings.BootSource != "template" || !strings.Contains(r.stderr, "phase=template") {
		t.Errorf("after a broken template: boot source %q; stderr:\n%s", again.Timings.BootSource, r.stderr)
	}

	cold, _ := run("PYRO_TEMPLATES=0")
	if cold.Timings.BootSource != "cold" {
		t.Errorf("PYRO_TEMPLATES=0: boot source %q", cold.Timings.BootSource)
	}
}

// Two first runs at one new size at once: one makes the template while
// the other boots cold; both run their command, and no VM is left.
func TestRunTemplateMadeOnceUnderConcurrency(t *testing.T) {
	mem := strconv.Itoa(2200 + 8*rand.IntN(200))
	templates := vm.TemplatesDir(env.DefaultCacheDir())
	before := map[string]bool{}
	entries, _ := os.ReadDir(templates)
	for _, e := range entries {
		before[e.Name()] = true
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(templates)
		for _, e := range entries {
			if !before[e.Name()] {
				os.RemoveAll(filepath.Join(templates, e.Name()))
			}
		}
	})
	type out struct {
		r   result
		res runTimings
	}
	results := make(chan out, 2)
	for i := 0; i < 2; i++ {
		go func(i int) {
			var res runTimings
			r := pyroJSONNoLeakCheck(t, &res, "run", "debian:12", "--json", "--mem-mib", mem, "--", "sh", "-c", fmt.Sprintf("echo vm%d", i))
			results <- out{r, res}
		}(i)
	}
	makers := 0
	for i := 0; i < 2; i++ {
		o := <-results
		if o.r.code != 0 || !strings.HasPrefix(o.res.Stdout, "vm") {
			t.Errorf("exit %d stdout %q; stderr:\n%s", o.r.code, o.res.Stdout, o.r.stderr)
		}
		if strings.Contains(o.r.stderr, "phase=template") {
			makers++
		}
	}
	if makers != 1 {
		t.Errorf("%d runs made the template, want 1", makers)
	}
	assertNoVMLeft(t)
}
